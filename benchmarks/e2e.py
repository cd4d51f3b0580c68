"""End-to-end benchmark: detector + ByteTrack over MOT sequences with images, fp32 and int8 side by side.

For every sequence under ``--data`` that has ``img1/``, each precision runs the same pipeline as the ``track``
program (read-ahead, preprocess, infer, postprocess, tracker, draw, write) with the same tracker settings and
the sequence's own frame rate, writes MOTChallenge results, and is scored with ``apps.evaluation`` (MOTA, IDF1,
ID switches, FP, FN). Prints a table and writes ``e2e.json``, ``e2e_metrics.csv``, per-run timing reports and a
stacked-bar plot per sequence into ``--output-dir``.

The defaults follow the reference numbers the project compares against (official ByteTrack nano via ONNX
Runtime on PETS09-S2L1: 84.4 MOTA / 81.5 IDF1 with ``track_thresh`` 0.6); ``--threads 1`` pins inference and
OpenCV to one core for the real-time check (PETS09-S2L1 is a 7 fps source).

``run_sequence`` and ``run_benchmark`` are importable (``benchmarks/mot17.py --detector`` uses them).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2

from int8track.apps.cli.tracker_options import add_tracker_arguments, tracker_config_from_args
from int8track.apps.evaluation.metrics import MotMetrics, evaluate_sequence, summarize
from int8track.apps.io.motchallenge import MotSequence, find_sequences
from int8track.apps.io.sources import open_source
from int8track.apps.models.cache import Int8ModelCache, resolve_weights, source_fingerprint
from int8track.apps.pipeline.profiler import TimingReport, plot_reports
from int8track.apps.pipeline.run import OutputFilter, run_tracking
from int8track.quant.config import DEFAULT_NUM_FRAMES, QuantConfig, held_out_count
from int8track.tracker import ByteTracker, TrackerConfig

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path

DEFAULT_DATA = (SHARED_DATA / "MOT15" / "train" / "PETS09-S2L1",
                SHARED_DATA / "MOT17-mini" / "train" / "MOT17-05-FRCNN")
DEFAULT_WEIGHTS = SHARED_DATA / "weights" / "bytetrack_nano_mot17.onnx"
#: The reference run's tracker threshold on PETS09-S2L1 (see the module docstring).
BENCHMARK_TRACK_THRESH = 0.6
PRECISIONS = ("fp32", "int8")
TRACKER_SHARE_TARGET = 0.02


@dataclass
class SequenceRun:
    """One sequence run at one precision."""

    sequence: str
    precision: str
    frames: int
    report: TimingReport
    metrics: MotMetrics | None  # None when the sequence has no ground truth
    results_path: Path

    @property
    def tracker_share(self) -> float:
        """Fraction of the frame's total work spent in the tracker stages."""
        rows = {row.stage: row for row in self.report.summary()}
        return sum(rows[s].share for s in rows if s.startswith("track_"))

    def to_dict(self) -> dict:
        return {
            "sequence": self.sequence,
            "precision": self.precision,
            "frames": self.frames,
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "tracker_share": self.tracker_share,
            "timing": [row.as_row() for row in self.report.summary()],
            "info": self.report.info,
            "results": str(self.results_path),
        }


def run_sequence(
    sequence: MotSequence,
    detector,
    tracker_config: TrackerConfig,
    results_dir: Path,
    *,
    precision: str = "fp32",
    output_filter: OutputFilter | None = None,
    classes: Sequence[int] | None = (0,),
    video: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
) -> SequenceRun:
    """Track one sequence with ``detector``, write ``results_dir/<name>.txt`` and score it against its gt."""
    results_dir.mkdir(parents=True, exist_ok=True)
    source = open_source(sequence.root)
    tracker = ByteTracker(tracker_config, frame_rate=sequence.frame_rate)
    result = run_tracking(
        source, detector, tracker,
        classes=classes,
        output_filter=output_filter or OutputFilter(),
        results_path=results_dir / f"{sequence.name}.txt",
        video_path=results_dir / f"{sequence.name}.mp4" if video else None,
        max_frames=max_frames,
        progress=progress,
        info={"sequence": sequence.name, "precision": precision, "model": detector.spec.name},
    )
    if result.error is not None:
        raise result.error
    metrics = None
    if sequence.gt_path.is_file() and max_frames is None:
        metrics = summarize({sequence.name: evaluate_sequence(sequence, result.results_path)})[sequence.name]
    return SequenceRun(sequence.name, precision, result.frames, result.report, metrics, result.results_path)


def int8_detector(detector, weights: Path, sequences: list[MotSequence], calib_frames: int,
                  num_threads: int | None) -> tuple[object, Path, bool]:
    """The int8 version of ``detector``, calibrated on frames spread evenly over the sequences (cached)."""
    from int8track.quant.calibration import load_frames

    per_sequence = max(1, calib_frames // len(sequences))

    def frames() -> list:
        return [f for s in sequences for f in load_frames(s.root, num=per_sequence)]

    calibration = {"frames": calib_frames, "sources": [source_fingerprint(s.root) for s in sequences]}
    config = QuantConfig(num_frames=None, held_out_frames=held_out_count(calib_frames))  # as `track --int8`
    cached = Int8ModelCache().get(detector, weights, frames, config, calibration, num_threads=num_threads)
    return cached.detector, cached.path, cached.reused


def run_benchmark(
    sequences: list[MotSequence],
    detectors: dict[str, object],
    tracker_config: TrackerConfig,
    output_dir: Path,
    **run_options,
) -> list[SequenceRun]:
    """Every sequence at every precision (``detectors`` maps precision name -> detector), one after another."""
    runs = []
    for sequence in sequences:
        for precision, detector in detectors.items():
            runs.append(run_sequence(sequence, detector, tracker_config, output_dir / precision, precision=precision,
                                     **run_options))
    return runs


def format_runs_table(runs: list[SequenceRun]) -> str:
    """Metrics and speed, one row per sequence and precision."""
    header = (f"{'sequence':<18}{'prec':<6}{'MOTA':>7}{'IDF1':>7}{'IDSW':>6}{'FP':>7}{'FN':>7}"
              f"{'infer ms':>10}{'frame ms':>10}{'e2e fps':>9}{'tracker':>9}{'kept up':>9}")
    lines = [header, "-" * len(header)]
    for run in runs:
        m = run.metrics
        scores = (f"{100 * m.mota:7.1f}{100 * m.idf1:7.1f}{m.num_switches:6d}{m.num_false_positives:7d}"
                  f"{m.num_misses:7d}" if m else f"{'-':>7}{'-':>7}{'-':>6}{'-':>7}{'-':>7}")
        total = run.report.summary()[-1]
        info = run.report.info
        lines.append(f"{run.sequence:<18}{run.precision:<6}{scores}{run.report.mean_ms('infer'):10.1f}"
                     f"{total.mean_ms:10.1f}{info['end_to_end_fps']:9.1f}{100 * run.tracker_share:8.2f}%"
                     f"{str(info.get('kept_up', '-')):>9}")
    return "\n".join(lines)


def write_outputs(runs: list[SequenceRun], output_dir: Path, meta: dict) -> list[Path]:
    """JSON of everything, a metrics CSV, per-run timing reports and one fp32-vs-int8 plot per sequence."""
    written = [output_dir / "e2e.json", output_dir / "e2e_metrics.csv"]
    written[0].write_text(json.dumps({"meta": meta, "runs": [r.to_dict() for r in runs]}, indent=1))
    with written[1].open("w") as handle:
        handle.write("sequence,precision,frames,mota,idf1,id_switches,fp,fn,end_to_end_fps,tracker_share\n")
        for r in runs:
            m = r.metrics
            metrics = (f"{m.mota:.4f},{m.idf1:.4f},{m.num_switches},{m.num_false_positives},{m.num_misses}"
                       if m else ",,,,")
            handle.write(f"{r.sequence},{r.precision},{r.frames},{metrics},"
                         f"{r.report.info['end_to_end_fps']:.3f},{r.tracker_share:.5f}\n")
    for run in runs:
        written.append(run.report.save_json(output_dir / run.precision / f"{run.sequence}_timing.json"))
    for name in dict.fromkeys(r.sequence for r in runs):
        reports = {r.precision: r.report for r in runs if r.sequence == name}
        written.append(plot_reports(reports, output_dir / f"{name}_timing.png", title=f"{name}: time per frame"))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=list(DEFAULT_DATA),
                        help="MOT sequence folders or roots holding them (sequences without img1/ are skipped)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", help="zoo name instead of the default weights file")
    model.add_argument("--weights", type=Path, help=f"weights file (default {DEFAULT_WEIGHTS})")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated: fp32,int8")
    parser.add_argument("--calib-frames", type=int, default=DEFAULT_NUM_FRAMES,
                        help="int8 calibration frames over all sequences (half held out for the floor)")
    add_tracker_arguments(parser, track_thresh_default=BENCHMARK_TRACK_THRESH)
    parser.add_argument("--threads", type=int, default=1, help="inference and OpenCV threads (default 1)")
    parser.add_argument("--video", action="store_true", help="also draw and write annotated videos")
    parser.add_argument("--max-frames", type=int, help="only the first N frames of each sequence (no metrics)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs") / "e2e")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from int8track.detectors import load_detector

    cv2.setNumThreads(args.threads)
    sequences = [s for root in args.data for s in find_sequences(require_path(root, "MOT data")) if s.has_images]
    if not sequences:
        sys.exit(f"error: no MOT sequence with img1/ under {', '.join(map(str, args.data))}")
    try:
        weights = (resolve_weights(args.model, None) if args.model
                   else resolve_weights("", args.weights or DEFAULT_WEIGHTS))
    except FileNotFoundError as exc:
        sys.exit(f"error: {exc}")
    fp32 = load_detector(str(weights), backend="onnxruntime", num_threads=args.threads)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        sys.exit(f"error: unknown precision(s) {unknown}; choose from {PRECISIONS}")
    detectors = {}
    try:
        tracker_config = tracker_config_from_args(args, track_thresh=BENCHMARK_TRACK_THRESH)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    meta: dict = {"weights": str(weights), "threads": args.threads, "tracker": asdict(tracker_config)}
    for precision in precisions:
        if precision == "fp32":
            detectors["fp32"] = fp32
        else:
            detectors["int8"], path, reused = int8_detector(fp32, weights, sequences, args.calib_frames, args.threads)
            print(f"{'reusing cached' if reused else 'calibrated'} int8 model {path}")
            meta["int8_model"] = str(path)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    runs = run_benchmark(sequences, detectors, tracker_config, args.output_dir, video=args.video,
                         max_frames=args.max_frames)
    print(format_runs_table(runs))
    for run in runs:
        print(run.report.format_table(f"\n{run.sequence} ({run.precision})"))
    _print_targets(runs)
    for path in write_outputs(runs, args.output_dir, meta):
        print(f"wrote {path}")
    return 0


def _print_targets(runs: list[SequenceRun]) -> None:
    """The project's targets next to what this run measured."""
    by_key = {(r.sequence, r.precision): r for r in runs}
    for (name, precision), run in by_key.items():
        print(f"{name} {precision}: tracker {100 * run.tracker_share:.2f}% of frame time "
              f"(target < {100 * TRACKER_SHARE_TARGET:.0f}%), {run.report.info['end_to_end_fps']:.1f} fps "
              f"vs source {run.report.info['source_fps']:g} fps")
        fp32 = by_key.get((name, "fp32"))
        if precision == "int8" and fp32 and fp32.metrics and run.metrics:
            print(f"{name}: int8 MOTA - fp32 MOTA = {100 * (run.metrics.mota - fp32.metrics.mota):+.2f} "
                  "(target within 0.3)")


if __name__ == "__main__":
    raise SystemExit(main())
