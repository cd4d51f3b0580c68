"""Where do interpolated boxes land? The evidence behind ``tracker.interpolation``'s gate.

Tracks each MOT17 sequence's public detections (``benchmarks/mot17.py``'s ``run_sequence``), fills every gap of
up to ``--max-gap`` frames blindly (straight lines, no gate), and scores each filled box against the considered
pedestrians of the ground truth that no tracker box already covers on that frame (IoU >= 0.5): a *hit* there is
a miss turned into a match (+1 for MOTA), anything else a false positive (-1). Prints, per sequence, the share
of filled boxes that hit, that duplicate a person a tracker box already covers, that land beside a person
(best IoU with any gt box 0.2-0.5) or on no one (< 0.2);
then, pooled over the sequences, the hit rate and net MOTA events by the gap's ``bridge_error``, by box height and
by the lower of the two end rows' scores.

    .venv/bin/python benchmarks/interpolation_gaps.py [--data ../shared/data/MOT17/train] [--max-gap 20]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from int8track.apps.cli.tracker_options import tracker_config_from_args
from int8track.apps.io.motchallenge import RESULT_MIN_COLUMNS, read_mot_table
from int8track.tracker.interpolation import BOX, FRAME, ID, InterpolationConfig, bridge_error, fill_gaps
from int8track.tracker.iou import iou_matrix

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import require_path
from benchmarks.mot17 import DEFAULT_PUBLIC_DATA, benchmark_sequences, run_sequence

PEDESTRIAN = 1
SCORE = 6  # column of MOT results
ERROR_BINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, np.inf)
HEIGHT_BINS = (0.0, 50.0, 80.0, 120.0, 200.0, np.inf)
SCORE_BINS = (0.0, 0.3, 0.5, 0.7, 0.9, np.inf)


def _xyxy(boxes: np.ndarray) -> np.ndarray:
    return np.column_stack((boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]))


def filled_boxes(rows: np.ndarray, max_gap: int, window: int) -> np.ndarray:
    """Blindly filled rows, each with its gap's ``bridge_error`` and lower end score appended as last columns."""
    table = rows[np.lexsort((rows[:, FRAME], rows[:, ID]))]
    out = []
    for track in np.split(table, np.flatnonzero(np.diff(table[:, ID])) + 1):
        missing = np.diff(track[:, FRAME]) - 1
        centres = track[:, 2:4] + track[:, 4:6] / 2
        for gap in np.flatnonzero((missing >= 1) & (missing <= max_gap)):
            error = bridge_error(track[:, FRAME], centres, track[:, 4:6], int(gap), window)
            new = fill_gaps(track[gap:gap + 2], np.array([True]))[1:-1]
            end_score = min(track[gap, SCORE], track[gap + 1, SCORE])
            out.append(np.column_stack((new, np.full(len(new), error), np.full(len(new), end_score))))
    return np.concatenate(out) if out else np.empty((0, rows.shape[1] + 2))


def score_filled(filled: np.ndarray, rows: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per filled box: best IoU with a gt box no tracker box covers (the MOTA gain test), and with any gt box."""
    free_iou, any_iou = np.zeros(len(filled)), np.zeros(len(filled))
    for frame in np.unique(filled[:, FRAME]):
        mine = np.flatnonzero(filled[:, FRAME] == frame)
        truth = _xyxy(gt[gt[:, 0] == frame, 2:6])
        if len(truth) == 0:
            continue
        tracker = _xyxy(rows[rows[:, FRAME] == frame, BOX])
        covered = (iou_matrix(truth, tracker).max(1) >= 0.5) if len(tracker) else np.zeros(len(truth), bool)
        iou = iou_matrix(_xyxy(filled[mine, BOX]), truth)
        any_iou[mine] = iou.max(1)
        if (~covered).any():
            free_iou[mine] = iou[:, ~covered].max(1)
    return free_iou, any_iou


def binned(label: str, values: np.ndarray, hits: np.ndarray, bins: tuple[float, ...]) -> list[str]:
    lines = [f"{label:<14}{'boxes':>7}{'hit %':>7}{'net':>7}"]
    for low, high in zip(bins[:-1], bins[1:]):
        inside = (values >= low) & (values < high)
        if inside.any():
            count, hit = int(inside.sum()), int(hits[inside].sum())
            lines.append(f"{f'[{low:g}, {high:g})':<14}{count:>7}{100 * hit / count:>7.0f}{2 * hit - count:>+7}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_PUBLIC_DATA,
                        help="MOT sequences with gt and det (MOT17 layout, or MOT15 such as PETS09-S2L1)")
    parser.add_argument("--max-gap", type=int, default=20)
    args = parser.parse_args(argv)
    if args.max_gap < 1:
        parser.error("--max-gap must be >= 1")
    window = InterpolationConfig().window
    tracker_config = tracker_config_from_args(argparse.Namespace(track_thresh=None, track_buffer=None,
                                                                 match_thresh=None))
    errors, heights, scores, hits = [], [], [], []
    print(f"{'sequence':<16}{'filled':>7}{'hit %':>7}{'dup %':>7}{'beside %':>9}{'no one %':>9}{'net':>7}")
    with tempfile.TemporaryDirectory() as folder:
        for sequence in benchmark_sequences(require_path(args.data, "MOT17 data folder")):
            run = run_sequence(sequence, tracker_config, Path(folder) / f"{sequence.name}.txt")
            rows = read_mot_table(run.results_path, RESULT_MIN_COLUMNS)
            truth = sequence.ground_truth()
            scored = truth.consider & (truth.classes == PEDESTRIAN if truth.classes is not None else True)
            gt = np.column_stack((truth.frames, truth.ids, truth.boxes))[scored]  # MOT15 gt has no classes
            filled = filled_boxes(rows, args.max_gap, window)
            free_iou, any_iou = score_filled(filled, rows, gt)
            hit = free_iou >= 0.5
            duplicate = ~hit & (any_iou >= 0.5)
            beside = (any_iou >= 0.2) & (any_iou < 0.5)
            shares = [100 * np.count_nonzero(kind) / max(len(filled), 1)
                      for kind in (hit, duplicate, beside, any_iou < 0.2)]
            print(f"{sequence.name:<16}{len(filled):>7}{shares[0]:>7.0f}{shares[1]:>7.0f}{shares[2]:>9.0f}"
                  f"{shares[3]:>9.0f}{2 * int(hit.sum()) - len(filled):>+7}")
            errors.append(filled[:, -2])
            scores.append(filled[:, -1])
            heights.append(filled[:, BOX][:, 3])
            hits.append(hit)
    all_hits = np.concatenate(hits)
    print("\n" + "\n".join(binned("bridge_error", np.concatenate(errors), all_hits, ERROR_BINS)))
    print("\n" + "\n".join(binned("box height px", np.concatenate(heights), all_hits, HEIGHT_BINS)))
    print("\n" + "\n".join(binned("end score", np.concatenate(scores), all_hits, SCORE_BINS)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
