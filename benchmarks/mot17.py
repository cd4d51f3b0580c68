"""MOT17 benchmark: ByteTrack accuracy (MOTChallenge protocol) and per-frame speed on the train sequences.

``--detections public`` feeds each sequence's ``det/det.txt`` (the public FRCNN detections) to
``tracker.ByteTracker`` frame by frame, at the sequence's frame rate from seqinfo.ini, writes one MOTChallenge
results file per sequence, scores it with ``apps.evaluation`` and prints a table per sequence plus an overall
row (all sequences' events pooled, as motmetrics' ``generate_overall``; not a mean of MOTAs).

    .venv/bin/python benchmarks/mot17.py --data ../shared/data/MOT17/train --detections public \\
        --json runs/mot17/public.json

The pieces are separate so that other detection sources can plug in: ``detection_frames`` yields
``(frame_id, detections)``, ``run_sequence`` tracks any such stream and times named stages per frame,
``build_report`` and ``format_table`` work on every stage found in the timings.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from apps.evaluation import OVERALL, MotMetrics, evaluate_sequence, summarize
from apps.motchallenge import MotResultWriter, MotSequence, find_sequences
from benchmarks.common import PROJECT_ROOT, SHARED_DATA, require_path
from tracker import ByteTracker

DETECTION_SOURCES = ("public",)


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTracker options exposed on the command line (defaults = the ByteTracker API defaults).

    ``track_thresh`` follows the official ByteTrack meaning: high-score threshold T, new tracks need T + 0.1.
    """

    track_thresh: float = 0.5
    match_thresh: float = 0.8
    track_buffer: int = 30

    def create(self, frame_rate: float) -> ByteTracker:
        return ByteTracker(frame_rate=frame_rate, track_high_thresh=self.track_thresh,
                           new_track_thresh=self.track_thresh + 0.1, match_thresh=self.match_thresh,
                           track_buffer=self.track_buffer)


@dataclass
class SequenceRun:
    """Outcome of tracking one sequence: its results file and per-frame times (ns) of each timed stage."""

    sequence: MotSequence
    results_path: Path
    stage_ns: dict[str, np.ndarray] = field(default_factory=dict)


def benchmark_sequences(data_root: Path, detections: str) -> list[MotSequence]:
    """Sequences under ``data_root`` that have ground truth (and public detections in ``public`` mode)."""
    sequences = [s for s in find_sequences(data_root) if s.gt_path.is_file()]
    if detections == "public":
        missing = [s.name for s in sequences if not s.det_path.is_file()]
        if missing:
            raise FileNotFoundError(f"no det/det.txt (public detections) for {', '.join(missing)} under {data_root}")
    if not sequences:
        raise FileNotFoundError(f"no sequence with gt/gt.txt under {data_root}")
    return sequences


def detection_frames(sequence: MotSequence, detections: str) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame_id, (N,5) x1,y1,x2,y2,score)`` for frames 1..length from the chosen detection source."""
    if detections != "public":
        raise ValueError(f"unknown detection source {detections!r}; expected one of {DETECTION_SOURCES}")
    yield from enumerate(sequence.detections(), start=1)


def run_sequence(sequence: MotSequence, frames: Iterable[tuple[int, np.ndarray]], settings: TrackerSettings,
                 results_path: Path) -> SequenceRun:
    """Track ``frames`` with a fresh ByteTracker, write the results file, time every ``update`` call."""
    tracker = settings.create(sequence.frame_rate)
    tracker_ns = np.zeros(sequence.length, dtype=np.int64)
    with MotResultWriter(results_path) as writer, \
            tqdm(total=sequence.length, desc=sequence.name, unit="frame", file=sys.stderr) as progress:
        for frame_id, dets in frames:
            start = perf_counter_ns()
            tracks = tracker.update(dets)
            tracker_ns[frame_id - 1] = perf_counter_ns() - start
            writer.write(frame_id, tracks)
            progress.update()
    return SequenceRun(sequence, results_path, {"tracker": tracker_ns})


def _timing_ms(ns: np.ndarray) -> dict[str, float]:
    ms = ns / 1e6
    return {"median": float(np.median(ms)), "mean": float(ms.mean()), "p95": float(np.percentile(ms, 95)),
            "max": float(ms.max())}


def _row(metrics: MotMetrics, frames: int, stage_ns: dict[str, np.ndarray]) -> dict:
    return {"frames": frames, "metrics": metrics.to_dict(),
            "ms_per_frame": {stage: _timing_ms(ns) for stage, ns in stage_ns.items()}}


def build_report(runs: list[SequenceRun], summary: dict[str, MotMetrics], settings: dict) -> dict:
    """JSON-ready report: settings, one row per sequence and the overall row (times pooled over all frames)."""
    stages = runs[0].stage_ns.keys()
    pooled = {stage: np.concatenate([run.stage_ns[stage] for run in runs]) for stage in stages}
    sequences = {run.sequence.name: {**_row(summary[run.sequence.name], run.sequence.length, run.stage_ns),
                                     "results_file": str(run.results_path)} for run in runs}
    return {"settings": settings, "sequences": sequences,
            OVERALL.lower(): _row(summary[OVERALL], sum(run.sequence.length for run in runs), pooled)}


def format_table(report: dict) -> str:
    """Fixed-width table: accuracy (ratios in %) and median/mean ms per frame of each timed stage."""
    stages = list(report[OVERALL.lower()]["ms_per_frame"])
    header = (f"{'sequence':<16}{'frames':>7}{'MOTA':>7}{'IDF1':>7}{'IDSW':>6}{'FP':>7}{'FN':>8}"
              + "".join(f"{stage + ' ms med/mean':>24}" for stage in stages))
    rows = [*report["sequences"].items(), (OVERALL, report[OVERALL.lower()])]
    lines = [header, "-" * len(header)]
    for name, row in rows:
        m = row["metrics"]
        timing = "".join(f"{row['ms_per_frame'][s]['median']:>15.3f} /{row['ms_per_frame'][s]['mean']:>7.3f}"
                         for s in stages)
        lines.append(f"{name:<16}{row['frames']:>7}{100 * m['mota']:>7.1f}{100 * m['idf1']:>7.1f}"
                     f"{m['num_switches']:>6}{m['num_false_positives']:>7}{m['num_misses']:>8}{timing}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    defaults = TrackerSettings()
    parser = argparse.ArgumentParser(description="ByteTrack on MOT17 train: MOTA/IDF1/IDSW and ms per frame.")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "MOT17" / "train",
                        help="folder of MOT17 sequences, or one sequence (default: %(default)s)")
    parser.add_argument("--detections", choices=DETECTION_SOURCES, default="public",
                        help="detection source: 'public' = each sequence's det/det.txt")
    parser.add_argument("--track-thresh", type=float, default=defaults.track_thresh,
                        help="high-score threshold; new tracks need it + 0.1 (default: %(default)s)")
    parser.add_argument("--match-thresh", type=float, default=defaults.match_thresh,
                        help="first-stage IoU-distance match threshold (default: %(default)s)")
    parser.add_argument("--track-buffer", type=int, default=defaults.track_buffer,
                        help="frames (at 30 fps) a lost track is kept (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, help="where results files go (default: runs/mot17/<detections>)")
    parser.add_argument("--json", type=Path, help="write the report as JSON to this path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data_root = require_path(args.data, "MOT17 data folder")
    out_dir = args.out_dir or PROJECT_ROOT / "runs" / "mot17" / args.detections
    settings = TrackerSettings(args.track_thresh, args.match_thresh, args.track_buffer)

    runs = []
    for sequence in benchmark_sequences(data_root, args.detections):
        frames = detection_frames(sequence, args.detections)
        runs.append(run_sequence(sequence, frames, settings, out_dir / f"{sequence.name}.txt"))
    summary = summarize({run.sequence.name: evaluate_sequence(run.sequence, run.results_path) for run in runs})
    report = build_report(runs, summary, {"data": str(data_root), "detections": args.detections,
                                          "tracker": vars(settings), "results_dir": str(out_dir)})
    print(format_table(report))
    print(f"results files: {out_dir}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
