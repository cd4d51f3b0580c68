"""MOT17 benchmark: ByteTrack accuracy (MOTChallenge protocol) and per-frame speed on the train sequences.

``--detections public`` feeds each sequence's ``det/det.txt`` (the public FRCNN detections) to
``tracker.ByteTracker`` (settings: ``apps.tracker_options``, as the ``track`` program) frame by frame,
at the sequence's frame rate from seqinfo.ini, writes one MOTChallenge
results file per sequence, scores it with ``apps.evaluation`` and prints a table per sequence plus an overall
row (all sequences' events pooled, as motmetrics' ``generate_overall``; not a mean of MOTAs).

    .venv/bin/python benchmarks/mot17.py --data ../shared/data/MOT17/train --detections public \\
        --json runs/mot17/public.json

``--detections detector`` runs a detector on every sequence that has images instead (default data: PETS09-S2L1
and the MOT17-05 mini sequence), fp32 and int8 side by side; that mode is ``benchmarks/e2e.py`` and takes its
options (``--model``/``--weights``, ``--precisions``, ``--calib-frames``, ``--threads``, ``--video``, ...):

    .venv/bin/python benchmarks/mot17.py --detections detector --json runs/e2e/report.json

``--interpolate N`` (public detections) also fills each track's gaps of up to N frames in the results files
(``tracker.interpolation``, ``--interpolation linear|gsi``), scores those too and prints both tables and the
per-sequence change:

    .venv/bin/python benchmarks/mot17.py --interpolate 20 [--interpolation gsi]

``run_sequence`` tracks one sequence's public detections (``apps.pipeline.update_tracker`` stages);
``build_report`` keeps every stage's statistics in the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from int8track.apps.cli.tracker_options import (
    DEFAULT_TRACK_THRESH,
    add_tracker_arguments,
    tracker_argv,
    tracker_config_from_args,
)
from int8track.apps.evaluation.metrics import OVERALL, MotMetrics, evaluate_sequence, evaluate_sequence_hota, summarize
from int8track.apps.io.mot_results import MotResultWriter, interpolate_file
from int8track.apps.io.motchallenge import MotSequence, find_sequences
from int8track.apps.pipeline.profiler import StageProfiler, TimingReport
from int8track.apps.pipeline.progress import Progress
from int8track.apps.pipeline.stages import TRACKER_STAGES, update_tracker
from int8track.tracker import ByteTracker, TrackerConfig
from int8track.tracker.interpolation import METHODS, InterpolationConfig

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import e2e
from benchmarks.common import PROJECT_ROOT, SHARED_DATA, require_path
from benchmarks.e2e import BENCHMARK_TRACK_THRESH

DETECTION_SOURCES = ("public", "detector")
DEFAULT_PUBLIC_DATA = SHARED_DATA / "MOT17" / "train"


@dataclass
class SequenceRun:
    """Outcome of tracking one sequence: its results file and the per-frame stage times."""

    sequence: MotSequence
    results_path: Path
    timing: TimingReport


def benchmark_sequences(data_root: Path) -> list[MotSequence]:
    """Sequences under ``data_root`` that have ground truth and public detections."""
    sequences = [s for s in find_sequences(data_root) if s.gt_path.is_file()]
    missing = [s.name for s in sequences if not s.det_path.is_file()]
    if missing:
        raise FileNotFoundError(f"no det/det.txt (public detections) for {', '.join(missing)} under {data_root}")
    if not sequences:
        raise FileNotFoundError(f"no sequence with gt/gt.txt under {data_root}")
    return sequences


def run_sequence(sequence: MotSequence, tracker_config: TrackerConfig, results_path: Path) -> SequenceRun:
    """Track one sequence's public detections with a fresh ByteTracker, write its results file, time every
    tracker stage of every frame."""
    tracker = ByteTracker(tracker_config, frame_rate=sequence.frame_rate)
    profiler = StageProfiler()
    with MotResultWriter(results_path) as writer, \
            Progress(sequence.length, sequence.name, stream=sys.stderr) as progress:
        for frame_id, dets in enumerate(sequence.detections(), start=1):
            profiler.begin_frame()
            writer.write(frame_id, update_tracker(tracker, dets, profiler))
            profiler.end_frame()
            progress.update()
    return SequenceRun(sequence, results_path, profiler.report({"sequence": sequence.name}))


def format_change_table(before: dict[str, MotMetrics], after: dict[str, MotMetrics]) -> str:
    """Per sequence: MOTA, IDF1, HOTA without and with interpolation and the change (points), plus their mean."""
    header = (f"{'sequence':<16}{'MOTA':>7}{'+interp':>8}{'change':>8}{'IDF1':>7}{'+interp':>8}{'change':>8}"
              f"{'HOTA':>7}{'+interp':>8}{'change':>8}")
    lines = [header, "-" * len(header)]
    names = [name for name in before if name != OVERALL]
    deltas = []
    for name in [*names, OVERALL]:
        values = []
        for key in ("mota", "idf1", "hota"):
            old, new = 100 * getattr(before[name], key), 100 * getattr(after[name], key)
            values += [old, new, new - old]
        if name != OVERALL:
            deltas.append(values)
        lines.append(f"{name:<16}" + "".join(f"{v:>7.1f}{w:>8.1f}{d:>+8.2f}" for v, w, d in
                                             zip(values[::3], values[1::3], values[2::3])))
    mean = np.mean(deltas, axis=0)
    lines.append(f"{'mean of seqs':<16}" + "".join(f"{v:>7.1f}{w:>8.1f}{d:>+8.2f}" for v, w, d in
                                                   zip(mean[::3], mean[1::3], mean[2::3])))
    return "\n".join(lines)


def _timing_row(timing: TimingReport) -> dict:
    """Median/mean/p95 ms per frame of the tracker (its stages summed), of every stage, and of the whole frame."""
    tracker_stages = [stage for stage in timing.stages if stage in TRACKER_STAGES]
    tracker_ms = np.sum([timing.samples_ns[s] for s in tracker_stages], axis=0) / 1e6
    return {"tracker_ms": {"median": float(np.median(tracker_ms)), "mean": float(tracker_ms.mean()),
                           "p95": float(np.percentile(tracker_ms, 95))},
            "stages": [row.as_row() for row in timing.summary()]}


def _pooled(timings: list[TimingReport]) -> TimingReport:
    stages = list(dict.fromkeys(stage for timing in timings for stage in timing.stages))
    samples = {stage: np.concatenate([t.samples_ns.get(stage, np.zeros(t.num_frames, np.int64)) for t in timings])
               for stage in stages}
    return TimingReport(stages, samples)


def build_report(runs: list[SequenceRun], summary: dict[str, MotMetrics], settings: dict) -> dict:
    """JSON-ready report: settings, one row per sequence and the overall row (times pooled over all frames)."""
    def row(metrics: MotMetrics, timing: TimingReport) -> dict:
        return {"frames": timing.num_frames, "metrics": metrics.to_dict(), **_timing_row(timing)}

    sequences = {run.sequence.name: {**row(summary[run.sequence.name], run.timing),
                                     "results_file": str(run.results_path)} for run in runs}
    return {"settings": settings, "sequences": sequences,
            "overall": row(summary[OVERALL], _pooled([run.timing for run in runs]))}


def format_table(report: dict) -> str:
    """Fixed-width table: accuracy (ratios in %) and the tracker's median/mean ms per frame."""
    header = (f"{'sequence':<16}{'frames':>7}{'HOTA':>7}{'DetA':>7}{'AssA':>7}{'MOTA':>7}{'IDF1':>7}{'IDSW':>6}"
              f"{'FP':>7}{'FN':>8}"
              f"{'tracker ms median':>19}{'mean':>7}")
    lines = [header, "-" * len(header)]
    for name, row in [*report["sequences"].items(), (OVERALL, report["overall"])]:
        m, ms = row["metrics"], row["tracker_ms"]
        lines.append(f"{name:<16}{row['frames']:>7}{100 * m['hota']:>7.1f}{100 * m['deta']:>7.1f}"
                     f"{100 * m['assa']:>7.1f}{100 * m['mota']:>7.1f}{100 * m['idf1']:>7.1f}"
                     f"{m['num_switches']:>6}{m['num_false_positives']:>7}{m['num_misses']:>8}"
                     f"{ms['median']:>19.3f}{ms['mean']:>7.3f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="ByteTrack on MOT17 train: HOTA/MOTA/IDF1/IDSW and ms per frame.")
    parser.add_argument("--data", type=Path, help=f"folder of MOT sequences, or one sequence (default: "
                                                  f"{DEFAULT_PUBLIC_DATA} for public detections)")
    parser.add_argument("--detections", choices=DETECTION_SOURCES, default="public",
                        help="detection source: 'public' = each sequence's det/det.txt; 'detector' = run a "
                             "detector on img1/ in fp32 and int8 (benchmarks/e2e.py; its options pass through)")
    add_tracker_arguments(parser, track_thresh_default=(
        f"{DEFAULT_TRACK_THRESH} for public detections, {BENCHMARK_TRACK_THRESH} with a detector"))
    parser.add_argument("--interpolate", type=_positive_int, metavar="N",
                        help="public detections: also score the results with each track's gaps of up to N frames "
                             "filled (tracker.interpolation), and print the change")
    parser.add_argument("--interpolation", choices=METHODS, default="linear",
                        help="gap filling for --interpolate: linear, or gsi (then Gaussian-smoothed)")
    parser.add_argument("--interpolation-max-error", type=_max_error, default=InterpolationConfig.max_error,
                        metavar="E|none", help="fill only gaps whose straight line is expected within E box sizes "
                                               f"of the track (default {InterpolationConfig.max_error}); 'none' fills "
                                               "every gap up to N (blind)")
    parser.add_argument("--interpolation-max-overlap", type=_max_error, default=InterpolationConfig.max_overlap,
                        metavar="IOU|none", help="leave out filled boxes overlapping another track's box on their "
                                                 f"frame by this IoU (default {InterpolationConfig.max_overlap}); "
                                                 "'none' keeps them")
    parser.add_argument("--interpolation-tau", type=_max_error, default=InterpolationConfig.tau, metavar="FRAMES",
                        help=f"gsi smoothing length (default {InterpolationConfig.tau})")
    parser.add_argument("--out-dir", type=Path, help="where results files go (default: runs/mot17/<detections>)")
    parser.add_argument("--json", type=Path, help="write the report as JSON to this path")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not an integer >= 1")
    return value


def _max_error(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'none'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number > 0")
    return value


def run_detector_mode(args: argparse.Namespace, passthrough: list[str]) -> int:
    """``--detections detector``: the end-to-end fp32/int8 benchmark (benchmarks/e2e.py) on sequences with images."""
    out_dir = args.out_dir or PROJECT_ROOT / "runs" / "mot17" / args.detections
    e2e_argv = ["--output-dir", str(out_dir), *tracker_argv(args), *passthrough]
    if args.data is not None:
        e2e_argv += ["--data", str(args.data)]
    status = e2e.main(e2e_argv)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text((out_dir / "e2e.json").read_text())
        print(f"report: {args.json}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    if args.detections == "detector":
        if args.interpolate is not None:
            parser.error("--interpolate is for --detections public")
        return run_detector_mode(args, passthrough)
    if passthrough:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    data_root = require_path(args.data or DEFAULT_PUBLIC_DATA, "MOT17 data folder")
    out_dir = args.out_dir or PROJECT_ROOT / "runs" / "mot17" / args.detections
    try:
        tracker_config = tracker_config_from_args(args)
        runs = [run_sequence(sequence, tracker_config, out_dir / f"{sequence.name}.txt")
                for sequence in benchmark_sequences(data_root)]
        summary = summarize({run.sequence.name: evaluate_sequence(run.sequence, run.results_path) for run in runs},
                            {run.sequence.name: evaluate_sequence_hota(run.sequence, run.results_path) for run in runs})
    except (FileNotFoundError, ValueError) as error:  # bad or missing data files: the message names them
        sys.exit(f"error: {error}")
    report = build_report(runs, summary, {"data": str(data_root), "detections": args.detections,
                                          "tracker": asdict(tracker_config), "results_dir": str(out_dir)})
    print(format_table(report))
    print(f"results files: {out_dir}")
    if args.interpolate is not None:
        config = InterpolationConfig(method=args.interpolation, max_gap=args.interpolate,
                                     max_error=args.interpolation_max_error,
                                     max_overlap=args.interpolation_max_overlap, tau=args.interpolation_tau)
        interpolated_dir = out_dir / (f"interpolated-{config.method}-{config.max_gap}-{config.max_error}-"
                                      f"{config.max_overlap}-{config.tau}")
        paths = {run.sequence.name: interpolated_dir / run.results_path.name for run in runs}
        for run in runs:
            interpolate_file(run.results_path, paths[run.sequence.name], config)
        filled = summarize({run.sequence.name: evaluate_sequence(run.sequence, paths[run.sequence.name])
                            for run in runs},
                           {run.sequence.name: evaluate_sequence_hota(run.sequence, paths[run.sequence.name])
                            for run in runs})
        report["interpolated"] = {"settings": asdict(config), "results_dir": str(interpolated_dir),
                                  "sequences": {name: metrics.to_dict() for name, metrics in filled.items()}}
        print(f"\ninterpolated ({config.method}, gaps up to {config.max_gap} frames, max error {config.max_error}, "
              f"max overlap {config.max_overlap}): {interpolated_dir}")
        print(format_change_table(summary, filled))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
