"""CLEAR-MOT and identity metrics (MOTA, IDF1, ID switches, ...) with motmetrics, and HOTA/DetA/AssA
(``apps.hota``), under the MOTChallenge protocol.

The protocol is TrackEval's ``MotChallenge2DBox`` preprocessing (the official MOTChallenge evaluation), per frame:

1. every tracker box is matched to every gt box of the frame (all classes, also consider=0 rows) by Hungarian
   assignment on IoU, pairs below IoU 0.5 not allowed; tracker boxes matched to a distractor class
   (2 person_on_vehicle, 7 static_person, 8 distractor, 12 reflection; MOT20 also 6 non_mot_vehicle) are dropped;
2. only gt rows with consider flag != 0 and class 1 (pedestrian) are scored;
3. MOT15 ground truth has no classes, so neither step applies to it: only its consider flag is used.

The remaining boxes are scored by motmetrics with distance 1 - IoU and a match threshold of IoU >= 0.5.

Known difference from TrackEval: motmetrics keeps a gt-tracker association alive across frames where the object
was unmatched, TrackEval only from the previous frame. That can pick different (equally many) matches, which
changes MOTP (mean IoU) by up to ~1 point; MOTA, IDF1, IDSW, FP and FN agree on the real sequences we checked.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import motmetrics as mm  # noqa: E402  (after the compat shim)
import numpy as np
from scipy.optimize import linear_sum_assignment

from int8track.apps.evaluation import motmetrics_compat as _motmetrics_compat  # noqa: F401  (restores np.asfarray for motmetrics under NumPy 2)
from int8track.apps.evaluation.hota import HotaCounts, hota_counts
from int8track.apps.io.motchallenge import MotAnnotations, MotSequence, find_sequences, read_results

IOU_THRESHOLD = 0.5
PEDESTRIAN = 1
VALID_GT_CLASSES = range(1, 14)  # MOTChallenge classes 1 pedestrian .. 13 crowd
DISTRACTOR_CLASSES = (2, 7, 8, 12)  # person_on_vehicle, static_person, distractor, reflection
MOT20_EXTRA_DISTRACTORS = (6,)  # non_mot_vehicle
BENCHMARKS = ("MOT15", "MOT16", "MOT17", "MOT20")
OVERALL = "OVERALL"
_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class MotMetrics:
    """MOTChallenge metrics of one sequence (or all combined). Ratios are fractions in [0, 1] (MOTA can be < 0).

    ``motp`` is the mean IoU of matched pairs (MOTChallenge/TrackEval convention; motmetrics reports 1 - this).
    """

    mota: float
    idf1: float
    motp: float
    idp: float
    idr: float
    precision: float
    recall: float
    num_switches: int
    num_false_positives: int
    num_misses: int
    num_fragmentations: int
    num_objects: int  # gt boxes scored
    num_predictions: int  # tracker boxes scored (after distractor removal)
    num_unique_objects: int  # gt ids
    mostly_tracked: int
    partially_tracked: int
    mostly_lost: int
    hota: float = float("nan")  # HOTA, DetA, AssA (apps.hota); NaN when not computed
    deta: float = float("nan")
    assa: float = float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


_HOTA_NAMES = ("hota", "deta", "assa")
_MOTMETRICS_NAMES = [f.name for f in fields(MotMetrics) if f.name not in _HOTA_NAMES]


def protocol_for(gt: MotAnnotations, sequence_name: str = "") -> str:
    """The benchmark whose rules apply: MOT15 when the gt has no classes, MOT20 by name, else MOT17 (= MOT16)."""
    if gt.classes is None:
        return "MOT15"
    return "MOT20" if sequence_name.upper().startswith("MOT20") else "MOT17"


def _distractor_classes(benchmark: str) -> tuple[int, ...]:
    return DISTRACTOR_CLASSES + (MOT20_EXTRA_DISTRACTORS if benchmark == "MOT20" else ())


def _hyps_on_distractors(iou: np.ndarray, gt_classes: np.ndarray, distractors: tuple[int, ...]) -> np.ndarray:
    """Indices of tracker boxes that the IoU>=0.5 Hungarian matching pairs with a distractor-class gt box."""
    scores = np.where(iou < IOU_THRESHOLD - _EPS, 0.0, iou)
    rows, cols = linear_sum_assignment(-scores)
    matched = scores[rows, cols] > _EPS
    rows, cols = rows[matched], cols[matched]
    return cols[np.isin(gt_classes[rows], distractors)]


def _check_gt_classes(gt: MotAnnotations, classes: np.ndarray) -> None:
    invalid = np.setdiff1d(np.unique(classes), np.asarray(VALID_GT_CLASSES))
    if len(invalid):
        raise ValueError(f"{gt.path}: invalid MOTChallenge gt classes {invalid.tolist()} (valid: 1..13); "
                         "use benchmark='MOT15' to score such files without class-based preprocessing")


def scored_frames(gt: MotAnnotations, results: MotAnnotations, num_frames: int,
                  benchmark: str = "MOT17") -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame, what the MOTChallenge protocol scores: ``(frame, gt ids, tracker ids, IoU matrix)``.

    ``benchmark`` is one of MOT15/MOT16/MOT17/MOT20 (see the module docstring; MOT15 skips class preprocessing).
    Frames 1..``num_frames`` are scored; results on other frames are a ValueError, as in TrackEval.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")
    use_classes = benchmark != "MOT15"
    classes = np.empty(0, dtype=np.int64)  # gt's class column, where the benchmark uses it
    if use_classes:
        if gt.classes is None:
            raise ValueError(f"{gt.path}: gt has no class column (MOT15 layout); evaluate it with benchmark='MOT15'")
        classes = gt.classes
        _check_gt_classes(gt, classes)
    outside = results.frames[(results.frames < 1) | (results.frames > num_frames)]
    if len(outside):
        raise ValueError(f"{results.path}: results on frame {outside[0]} outside the sequence's "
                         f"frames 1..{num_frames}")
    distractors = _distractor_classes(benchmark)
    scored_gt = gt.consider & (classes == PEDESTRIAN) if use_classes else gt.consider
    gt_rows, hyp_rows = gt.rows_by_frame(), results.rows_by_frame()
    no_rows = np.empty(0, dtype=np.int64)

    for frame in range(1, num_frames + 1):
        g, h = gt_rows.get(frame, no_rows), hyp_rows.get(frame, no_rows)
        distance = np.full((len(g), len(h)), np.nan)
        if len(g) and len(h):
            distance = mm.distances.iou_matrix(gt.boxes[g], results.boxes[h], max_iou=1.0)  # 1 - IoU
            if use_classes:
                on_distractor = _hyps_on_distractors(1.0 - distance, classes[g], distractors)
                h = np.delete(h, on_distractor)
                distance = np.delete(distance, on_distractor, axis=1)
        keep = scored_gt[g]
        yield frame, gt.ids[g[keep]], results.ids[h], 1.0 - distance[keep]


def accumulate(gt: MotAnnotations, results: MotAnnotations, num_frames: int,
               benchmark: str = "MOT17") -> mm.MOTAccumulator:
    """Frame-by-frame motmetrics accumulator of ``results`` against ``gt`` under the MOTChallenge protocol
    (:func:`scored_frames`)."""
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame, gt_ids, hyp_ids, iou in scored_frames(gt, results, num_frames, benchmark):
        distance = 1.0 - iou
        distance[distance > 1.0 - IOU_THRESHOLD + _EPS] = np.nan
        accumulator.update(gt_ids, hyp_ids, distance, frameid=frame)
    return accumulator


def hota_of(gt: MotAnnotations, results: MotAnnotations, num_frames: int, benchmark: str = "MOT17") -> HotaCounts:
    """HOTA counts (``apps.hota``) of ``results`` against ``gt`` under the same protocol as :func:`accumulate`."""
    return hota_counts((g, h, iou) for _, g, h, iou in scored_frames(gt, results, num_frames, benchmark))


def evaluate_sequence(sequence: MotSequence, results_path: str | Path,
                      benchmark: str | None = None) -> mm.MOTAccumulator:
    """Accumulator for a results file on ``sequence`` (its gt/gt.txt); ``benchmark`` None = :func:`protocol_for`."""
    gt = sequence.ground_truth()
    return accumulate(gt, read_results(results_path), sequence.length,
                      benchmark or protocol_for(gt, sequence.name))


def evaluate_sequence_hota(sequence: MotSequence, results_path: str | Path,
                           benchmark: str | None = None) -> HotaCounts:
    """HOTA counts for a results file on ``sequence``, as :func:`evaluate_sequence`."""
    gt = sequence.ground_truth()
    return hota_of(gt, read_results(results_path), sequence.length, benchmark or protocol_for(gt, sequence.name))


def summarize(accumulators: Mapping[str, mm.MOTAccumulator],
              hota: Mapping[str, HotaCounts] | None = None) -> dict[str, MotMetrics]:
    """Metrics per sequence plus ``"OVERALL"``: all sequences' events combined (not a mean of per-sequence values).

    ``hota`` (same keys as ``accumulators``) fills the HOTA, DetA and AssA fields; without it they are NaN.
    """
    if not accumulators:
        raise ValueError("no sequences to summarize")
    table = mm.metrics.create().compute_many(list(accumulators.values()), names=list(accumulators),
                                             metrics=_MOTMETRICS_NAMES, generate_overall=True)
    hota_by_name = dict(hota or {})
    if hota_by_name:
        hota_by_name[OVERALL] = HotaCounts.combine([hota_by_name[name] for name in accumulators])
    summary = {}
    for name, row in table.iterrows():
        values: dict = {field.name: float(row[field.name]) if field.type == "float" else int(row[field.name])
                        for field in fields(MotMetrics) if field.name in _MOTMETRICS_NAMES}
        values["motp"] = 1.0 - values["motp"]  # motmetrics' MOTP is the mean distance 1 - IoU
        counts = hota_by_name.get(str(name))
        if counts is not None:
            values.update(hota=counts.hota, deta=counts.deta, assa=counts.ass_a)
        summary[str(name)] = MotMetrics(**values)
    return summary


def evaluate_results_dir(data_root: str | Path, results_dir: str | Path,
                         benchmark: str | None = None) -> dict[str, MotMetrics]:
    """Score ``results_dir/<sequence name>.txt`` for every sequence with gt under ``data_root`` (TrackEval layout)."""
    results_dir = Path(results_dir)
    accumulators, hota = {}, {}
    for sequence in find_sequences(data_root):
        if not sequence.gt_path.is_file():
            continue
        results_path = results_dir / f"{sequence.name}.txt"
        if not results_path.is_file():
            raise FileNotFoundError(f"no results for sequence {sequence.name}: {results_path}")
        accumulators[sequence.name] = evaluate_sequence(sequence, results_path, benchmark)
        hota[sequence.name] = evaluate_sequence_hota(sequence, results_path, benchmark)
    if not accumulators:
        raise FileNotFoundError(f"no sequence with gt/gt.txt under {data_root}")
    return summarize(accumulators, hota)


def format_metrics_table(summary: Mapping[str, MotMetrics]) -> str:
    """Fixed-width text table of the headline metrics, one row per sequence (percentages for ratios)."""
    header = (f"{'sequence':<20}{'HOTA':>7}{'DetA':>7}{'AssA':>7}{'MOTA':>7}{'IDF1':>7}{'MOTP':>7}{'IDSW':>7}"
              f"{'FP':>8}{'FN':>8}{'Rcll':>7}{'Prcn':>7}")
    lines = [header, "-" * len(header)]
    for name, m in summary.items():
        lines.append(f"{name:<20}{100 * m.hota:7.1f}{100 * m.deta:7.1f}{100 * m.assa:7.1f}"
                     f"{100 * m.mota:7.1f}{100 * m.idf1:7.1f}{100 * m.motp:7.1f}{m.num_switches:7d}"
                     f"{m.num_false_positives:8d}{m.num_misses:8d}{100 * m.recall:7.1f}{100 * m.precision:7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate MOTChallenge results files under the MOTChallenge "
                                                 "protocol (motmetrics).")
    parser.add_argument("--data", required=True, help="sequence folder or folder of sequences with gt/gt.txt")
    parser.add_argument("--results", required=True, help="folder with <sequence name>.txt results files")
    parser.add_argument("--benchmark", choices=BENCHMARKS, help="protocol (default: from the gt layout/name)")
    parser.add_argument("--json", type=Path, help="also write the metrics as JSON to this path")
    args = parser.parse_args(argv)
    try:
        summary = evaluate_results_dir(args.data, args.results, args.benchmark)
    except (FileNotFoundError, ValueError) as error:  # the message names the file and the problem
        parser.exit(1, f"error: {error}\n")
    print(format_metrics_table(summary))
    if args.json:
        args.json.write_text(json.dumps({name: m.to_dict() for name, m in summary.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
