"""Per-frame speed of ``tracker.ByteTracker`` on synthetic crowds (optionally vs the official ByteTrack).

Crowds of 10..400 simultaneous people walk randomly in a 1920x1080 frame (fixed seed).
People hidden behind nearer people get low scores or are missed, some are missed at
random, and false positives appear. Every update is timed with perf_counter_ns; the table
shows the median and p95 ms per frame and the share of each stage of ours. With
``--repeats R`` each tracker runs the sequence R times and every frame keeps its fastest
time, which damps interference from other processes on a shared machine.

``--official-root DIR`` (a ByteTrack checkout containing ``yolox/tracker/``) also times the
official tracker on the same frames and checks that both output the same tracks.

    .venv/bin/python benchmarks/tracker_speed.py --json results/tracker_speed.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from time import perf_counter_ns
from types import SimpleNamespace

import numpy as np
from tqdm import tqdm

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import require_path
from int8track.tracker import ByteTracker, TrackerConfig

FRAME_W, FRAME_H = 1920.0, 1080.0
STAGES = ("predict", "iou", "assignment", "bookkeeping")
#: The official tracker's settings (track_thresh 0.5, buffer 30, match 0.8), reproduced exactly.
OFFICIAL = TrackerConfig.from_track_thresh(0.5, iou_inclusive=True, id_mode="official")


def synthetic_crowd(people: int, frames: int, seed: int) -> list[np.ndarray]:
    """Detections ``(K, 5) x1, y1, x2, y2, score`` per frame, highest score first."""
    rng = np.random.default_rng(seed)
    height = rng.uniform(60, 250, people)
    width = 0.4 * height
    centre = np.column_stack((rng.uniform(0, FRAME_W, people), rng.uniform(0, FRAME_H, people)))
    velocity = rng.normal(0, 2.0, (people, 2))
    base_score = rng.uniform(0.8, 0.98, people)
    out = []
    for _ in range(frames):
        velocity = 0.95 * velocity + rng.normal(0, 0.5, (people, 2))
        centre += velocity
        bounce = (centre < 0) | (centre > (FRAME_W, FRAME_H))
        velocity[bounce] *= -1
        centre = np.clip(centre, 0, (FRAME_W, FRAME_H))
        boxes = np.column_stack((centre - np.column_stack((width, height)) / 2,
                                 centre + np.column_stack((width, height)) / 2))
        occlusion = _occluded_fraction(boxes)
        score = base_score * (1 - occlusion) + rng.normal(0, 0.05, people)
        seen = (occlusion < 0.8) & (rng.random(people) > 0.05)
        noisy = boxes + rng.normal(0, 1, boxes.shape) * 0.02 * height[:, None]
        dets = np.column_stack((noisy, np.clip(score, 0.05, 1.0)))[seen]
        false = rng.poisson(0.05 * people)
        fp_centre = rng.uniform((0, 0), (FRAME_W, FRAME_H), (false, 2))
        fp_size = rng.uniform(40, 200, (false, 1)) * (0.4, 1.0)
        fp = np.column_stack((fp_centre - fp_size / 2, fp_centre + fp_size / 2, rng.uniform(0.1, 0.7, false)))
        dets = np.concatenate((dets, fp))
        out.append(dets[np.argsort(-dets[:, 4], kind="stable")])
    return out


def _occluded_fraction(boxes: np.ndarray) -> np.ndarray:
    """Largest fraction of each box covered by a single nearer box (nearer = lower bottom edge)."""
    inter_w = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    inter_h = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    inter = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    nearer = boxes[None, :, 3] > boxes[:, None, 3]
    return np.where(nearer, inter / area[:, None], 0).max(axis=1)


def time_ours(frames: list[np.ndarray]) -> tuple[np.ndarray, dict[str, int], list[np.ndarray]]:
    """Per-frame ns, total ns per stage and the outputs of ByteTracker in official settings."""
    tracker = ByteTracker(OFFICIAL)
    times = np.empty(len(frames), dtype=np.int64)
    stages = dict.fromkeys(STAGES, 0)
    outputs = []
    for i, dets in enumerate(frames):
        start = perf_counter_ns()
        rows = tracker.update(dets)
        times[i] = perf_counter_ns() - start
        for stage in STAGES:
            stages[stage] += tracker.last_stage_ns[stage]
        outputs.append(rows)
    return times, stages, outputs


def load_official(root: Path):
    """The official ``BYTETracker`` class and ``BaseTrack`` (for its global id counter) from a checkout."""
    require_path(root / "yolox" / "tracker" / "byte_tracker.py", "official ByteTrack tracker")
    sys.path.insert(0, str(root))
    from yolox.tracker.basetrack import BaseTrack
    from yolox.tracker.byte_tracker import BYTETracker
    return BYTETracker, BaseTrack


def time_official(frames: list[np.ndarray], official) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-frame ns and outputs (x1, y1, x2, y2, id, score) of the official tracker."""
    tracker_class, base_track = official
    base_track._count = 0
    args = SimpleNamespace(track_thresh=OFFICIAL.track_high_thresh, track_buffer=OFFICIAL.track_buffer,
                           match_thresh=OFFICIAL.match_thresh, mot20=False)
    tracker = tracker_class(args, frame_rate=OFFICIAL.frame_rate)
    size = (FRAME_H, FRAME_W)
    times = np.empty(len(frames), dtype=np.int64)
    outputs = []
    for i, dets in enumerate(frames):
        dets = dets.copy()  # the official update rescales boxes in place
        start = perf_counter_ns()
        tracks = tracker.update(dets, size, size)
        times[i] = perf_counter_ns() - start
        outputs.append(np.array([[*t.tlbr, t.track_id, t.score] for t in tracks]).reshape(-1, 6))
    return times, outputs


def same_tracks(ours: list[np.ndarray], official: list[np.ndarray]) -> bool:
    """Same ids, boxes (1e-4) and scores on every frame."""
    for mine, theirs in zip(ours, official):
        if mine.shape[0] != theirs.shape[0]:
            return False
        mine = mine[np.argsort(mine[:, 4])]
        theirs = theirs[np.argsort(theirs[:, 4])]
        if not (np.array_equal(mine[:, 4], theirs[:, 4]) and np.allclose(mine[:, :4], theirs[:, :4], atol=1e-4, rtol=0)
                and np.array_equal(mine[:, 5], theirs[:, 5])):
            return False
    return True


def ms(ns: np.ndarray, q: float) -> float:
    return float(np.percentile(ns, q) / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crowds", type=int, nargs="+", default=[10, 50, 100, 200, 400])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per tracker; each frame keeps its fastest")
    parser.add_argument("--official-root", type=Path, help="ByteTrack checkout with yolox/tracker/ to compare with")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    official = load_official(args.official_root) if args.official_root else None

    results = []
    for people in tqdm(args.crowds, desc="crowds", unit="crowd"):
        frames = synthetic_crowd(people, args.frames, args.seed + people)
        ours_runs, official_runs = [], []
        for _ in range(args.repeats):  # alternate the two trackers so load changes hit both alike
            ours_runs.append(time_ours(frames))
            if official:
                official_runs.append(time_official(frames, official))
        ours_ns = np.min([run[0] for run in ours_runs], axis=0)
        stage_ns, ours_out = ours_runs[0][1], ours_runs[0][2]
        total_stage = sum(stage_ns.values())
        row = {
            "people": people,
            "frames": len(frames),
            "repeats": args.repeats,
            "dets_per_frame": float(np.mean([len(f) for f in frames])),
            "ours_median_ms": ms(ours_ns, 50),
            "ours_p95_ms": ms(ours_ns, 95),
            "stage_share": {s: stage_ns[s] / total_stage for s in STAGES},
        }
        if official:
            official_ns = np.min([run[0] for run in official_runs], axis=0)
            official_out = official_runs[0][1]
            row.update(official_median_ms=ms(official_ns, 50), official_p95_ms=ms(official_ns, 95),
                       speedup_median=ms(official_ns, 50) / ms(ours_ns, 50),
                       identical_output=same_tracks([o[:, :6] for o in ours_out], official_out))
        results.append(row)

    header = f"{'people':>6} {'dets':>6} {'median ms':>10} {'p95 ms':>8} " + " ".join(f"{s:>11}" for s in STAGES)
    if official:
        header += f" {'official med':>12} {'official p95':>12} {'speedup':>8} {'identical':>9}"
    print(header)
    for r in results:
        line = (f"{r['people']:>6} {r['dets_per_frame']:>6.1f} {r['ours_median_ms']:>10.3f} {r['ours_p95_ms']:>8.3f} "
                + " ".join(f"{r['stage_share'][s]:>10.0%} " for s in STAGES))
        if official:
            line += (f" {r['official_median_ms']:>12.3f} {r['official_p95_ms']:>12.3f} {r['speedup_median']:>7.1f}x"
                     f" {str(r['identical_output']):>9}")
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
