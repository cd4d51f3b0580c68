"""Detect every K-th frame: tracking accuracy against detector calls, with and without image propagation.

The detector runs on frames 1, 1 + K, 1 + 2K, ... only; every frame gets tracks (``tracker.propagation.
IntervalTracker``: ``update`` on detection frames, ``step`` in between) and every frame is scored under the
MOTChallenge protocol (``apps.evaluation``: MOTA, IDF1, HOTA, ID switches). Modes:

- ``kalman``: the frames between detections get the Kalman prediction (``ByteTracker.predict``); no image is read.
- ``flow``: they get optical-flow boxes (``FlowPropagator``), which also correct the tracker's states.
- ``redraw``: ``flow``, then the results file as ``track --detect-every K --interpolate 20`` leaves it: the boxes
  between detector calls redrawn from the tracked boxes on both sides (``tracker.interpolation``; offline, since
  a box then depends on the next detector call).

Two workloads:

- ``--public``: the tracker alone on the MOT17 public FRCNN detections of the seven train sequences (``kalman``
  only: there are no images), settings as ``benchmarks/mot17.py --detections public``;
- ``--detector``: PETS09-S2L1 (7 fps) and the MOT17-05 mini sequence through the ByteTrack nano detector (ONNX
  Runtime, fp32), both modes, tracker settings as ``benchmarks/e2e.py``. Each sequence's per-frame detections are
  computed once and cached under ``--cache-dir`` (keyed by the weights file), so only the first run pays for
  the detector.
- ``--variants vtest-fitted,PETS09-pan``: sequences of ``benchmarks/identity_data.py`` (vtest.avi at 10 fps; a
  panning 640x480 window over PETS09), their cached detector outputs, the images re-made from the source; both
  modes, settings as ``--detector``.

    .venv/bin/python benchmarks/detect_interval.py --json runs/detect_interval/report.json

prints one table per workload (``dMOTA``/``dIDF1``: against K=1 of the same sequence) and writes the JSON report
and ``mota_vs_calls.png`` (MOTA against detector calls per second) next to it (``--out-dir``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from int8track.apps.cli.tracker_options import DEFAULT_TRACK_THRESH
from int8track.apps.evaluation.metrics import OVERALL, MotMetrics, evaluate_sequence, evaluate_sequence_hota, summarize
from int8track.apps.io.mot_results import MotResultWriter, interpolate_file
from int8track.apps.io.motchallenge import MotSequence, find_sequences, load_sequence
from int8track.apps.pipeline.run import OutputFilter
from int8track.tracker import ByteTracker, TrackerConfig
from int8track.tracker.interpolation import InterpolationConfig
from int8track.tracker.propagation import FlowPropagator, IntervalTracker, PropagationConfig
from int8track.tracker.schedule import DetectionSchedule, DetectionScheduler

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import PROJECT_ROOT, require_path
from benchmarks.e2e import BENCHMARK_TRACK_THRESH, DEFAULT_DATA, DEFAULT_WEIGHTS
from benchmarks.identity_data import CACHE_ROOT as VARIANTS_ROOT
from benchmarks.identity_data import VARIANTS, build_variant
from benchmarks.mot17 import DEFAULT_PUBLIC_DATA, benchmark_sequences

#: 0 stands for ``auto`` (``tracker.schedule``: a time cap, sooner when the flow loses the boxes) in this script.
AUTO_INTERVAL = 0
INTERVALS = (1, 2, 3, 4, 6, AUTO_INTERVAL)
MODES = ("kalman", "flow", "redraw")
#: ``redraw``: the interpolation ``track --interpolate 20`` runs (the CLI's default config otherwise).
REDRAW = InterpolationConfig(max_gap=20)
LINE_STYLES = {"kalman": "--", "flow": "-", "redraw": ":"}


@dataclass(frozen=True)
class IntervalTracking:
    """What ``track_with_interval`` did: detector calls, the median ms of a frame between them (NaN when none),
    and the (frame, track id) of the rows no detection placed ((N, 2), as ``RunResult.propagated``)."""

    calls: int
    step_ms: float
    propagated: np.ndarray


@dataclass(frozen=True)
class IntervalRun:
    """One sequence tracked with the detector every ``interval`` frames in one ``mode``."""

    workload: str  # "public" or "detector"
    sequence: str
    mode: str
    interval: int
    frames: int
    frame_rate: float
    detector_calls: int
    metrics: MotMetrics
    step_ms: float  # median ms of a frame without detections (``IntervalTracker.step``), NaN when there are none
    results_path: Path

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.interval < 0 or self.frames < 1:
            raise ValueError(f"interval must be >= 0 (0: auto) and frames >= 1, got {self.interval} and {self.frames}")

    @property
    def label(self) -> str:
        return "auto" if self.interval == AUTO_INTERVAL else str(self.interval)

    @property
    def calls_per_frame(self) -> float:
        return self.detector_calls / self.frames

    @property
    def calls_per_second(self) -> float:
        return self.calls_per_frame * self.frame_rate

    def as_row(self) -> dict:
        return {"workload": self.workload, "sequence": self.sequence, "mode": self.mode, "interval": self.interval,
                "frames": self.frames, "schedule": self.label,
                "frame_rate": self.frame_rate, "detector_calls": self.detector_calls,
                "calls_per_frame": self.calls_per_frame, "calls_per_second": self.calls_per_second,
                "step_ms": self.step_ms, "results_file": str(self.results_path), "metrics": self.metrics.to_dict()}


def track_with_interval(sequence: MotSequence, detections: Sequence[np.ndarray], interval: int,
                        tracker_config: TrackerConfig, results_path: Path, propagator: FlowPropagator | None = None,
                        output_filter: OutputFilter | None = None, clip_to_frame: bool = False,
                        frames: Iterable[np.ndarray] | None = None, phase: int = 0) -> IntervalTracking:
    """Track ``sequence`` with ``detections[f]`` given on every ``interval``-th frame (the first included; 0: when
    ``auto`` asks, as ``track --detect-every auto`` on a file), write tracks for every frame; returns (detector
    calls, median ms per step frame). With ``propagator`` the images are read and the frames between go through
    ``FlowPropagator``. ``clip_to_frame`` clips the boxes between detector calls, as ``track`` does (its detector
    clips its own boxes; the public detections are not clipped, and neither is their gt). ``frames``: the images
    in order, for sequences without image files (``benchmarks.identity_data`` variants); default: read them.
    ``phase`` (fixed intervals): the detector frames after the first are ``phase``, ``phase + interval``, ... (0:
    every ``interval``-th frame from the first, as ``track`` does); which frames go without a detection moves the
    score, so the loss of an interval is best read over its phases."""
    if interval < 0:
        raise ValueError(f"interval must be >= 0 (0: auto), got {interval}")
    if phase and not 0 < phase < max(interval, 1):
        raise ValueError(f"phase must be in 0..{max(interval, 1) - 1} for interval {interval}, got {phase}")
    schedule = DetectionSchedule(every=interval or None, flow=propagator is not None)
    scheduler = DetectionScheduler(schedule, sequence.frame_rate)
    if len(detections) != sequence.length:
        raise ValueError(f"{sequence.name}: {len(detections)} frames of detections for {sequence.length} frames")
    stepper = IntervalTracker(ByteTracker(tracker_config, frame_rate=sequence.frame_rate), propagator,
                              clip_to_frame=clip_to_frame)
    blank = np.zeros((sequence.height or 1, sequence.width or 1, 3), np.uint8)  # only its size is read
    if propagator is None:
        images: Iterator[np.ndarray] = itertools.repeat(blank)
    elif frames is not None:
        images = iter(frames)
    else:
        images = (cv2.imread(str(path)) for path in sequence.image_paths())
    calls, step_ns, propagated = 0, [], []
    with MotResultWriter(results_path) as writer:
        for index, dets in enumerate(detections):
            frame = next(images)
            detect = scheduler.due(stepper.last_report) if not phase else index == 0 or (index - phase) % interval == 0
            scheduler.record(detect, 0.0)
            if detect:
                tracks = stepper.update(frame, dets)
                calls += 1
            else:
                start = time.perf_counter_ns()
                tracks = stepper.step(frame)
                step_ns.append(time.perf_counter_ns() - start)
            shown = output_filter(tracks) if output_filter is not None else tracks
            writer.write(index + 1, shown)
            if (guessed := shown[:, 7] < 0).any():
                propagated.append(np.column_stack((np.full(guessed.sum(), index + 1), shown[guessed, 4])))
    return IntervalTracking(calls, float(np.median(step_ns) / 1e6) if step_ns else float("nan"),
                            np.concatenate(propagated).astype(np.int64) if propagated else np.empty((0, 2), np.int64))


def score(sequence: MotSequence, results_path: Path) -> tuple[object, object]:
    """motmetrics accumulator and HOTA counts of a results file (``apps.evaluation``)."""
    return evaluate_sequence(sequence, results_path), evaluate_sequence_hota(sequence, results_path)


def run_workload(workload: str, sequences: list[MotSequence], detections: dict[str, list[np.ndarray]],
                 modes: Sequence[str], intervals: Sequence[int], tracker_config: TrackerConfig, out_dir: Path,
                 output_filter: OutputFilter | None = None, propagation: PropagationConfig | None = None,
                 frames: Callable[[MotSequence], Iterable[np.ndarray]] | None = None, phase: int = 0,
                 ) -> tuple[list[IntervalRun], dict[tuple[str, int], MotMetrics]]:
    """Every sequence x mode x interval; K=1 runs once for ``kalman`` and ``flow`` (no frame is stepped, so they
    are the same run) and once for ``redraw`` (interpolated as its other K are: the like-for-like baseline).
    Also returns the metrics of all sequences pooled per (mode, interval)."""
    runs: list[IntervalRun] = []
    pooled: dict[tuple[str, int], MotMetrics] = {}
    scores: dict[tuple[str, int], dict[str, tuple]] = {}
    plain_k1 = next((m for m in modes if m != "redraw"), None)  # the mode whose K=1 run stands for both
    for mode in modes:
        for interval in intervals:
            if interval == 1 and mode not in ("redraw", plain_k1):
                continue
            for sequence in sequences:
                path = out_dir / f"{mode}_k{interval}" / f"{sequence.name}.txt"
                propagator = FlowPropagator(propagation) if mode != "kalman" else None
                tracking = track_with_interval(sequence, detections[sequence.name], interval, tracker_config,
                                               path, propagator, output_filter, clip_to_frame=workload != "public",
                                               frames=frames(sequence) if frames and propagator else None,
                                               phase=phase % interval if interval > 1 else 0)
                if mode == "redraw":
                    interpolate_file(path, path, REDRAW, tracking.propagated)
                calls, step_ms = tracking.calls, tracking.step_ms
                accumulator, hota = score(sequence, path)
                scores.setdefault((mode, interval), {})[sequence.name] = (accumulator, hota)
                metrics = summarize({sequence.name: accumulator}, {sequence.name: hota})[sequence.name]
                runs.append(IntervalRun(workload, sequence.name, mode, interval, sequence.length,
                                        sequence.frame_rate, calls, metrics, step_ms, path))
                print(f"  {sequence.name} {mode} K={interval}: MOTA {100 * metrics.mota:.1f} "
                      f"IDF1 {100 * metrics.idf1:.1f}", file=sys.stderr)
            if len(sequences) > 1:
                per_seq = scores[(mode, interval)]
                pooled[(mode, interval)] = summarize({n: s[0] for n, s in per_seq.items()},
                                                     {n: s[1] for n, s in per_seq.items()})[OVERALL]
    return runs, pooled


def detector_detections(sequence: MotSequence, weights: Path, threads: int, cache_dir: Path) -> list[np.ndarray]:
    """Per-frame (N, 6) detections of ``sequence`` by the person detector, from the cache when present."""
    stat = weights.stat()
    cache = cache_dir / f"{sequence.name}_{weights.stem}_{stat.st_size}_{int(stat.st_mtime)}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            frames = [stored[f"f{i}"] for i in range(sequence.length)]
        return frames
    from int8track.detectors import load_detector

    detector = load_detector(str(weights), backend="onnxruntime", num_threads=threads, classes=[0])
    frames = []
    start = time.perf_counter()
    for index, path in enumerate(sequence.image_paths()):
        frames.append(np.asarray(detector(cv2.imread(str(path))), dtype=np.float64))
        if index % 100 == 99:
            print(f"  {sequence.name}: detected {index + 1}/{sequence.length} frames "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **{f"f{i}": f for i, f in enumerate(frames)})
    return frames


def format_table(title: str, runs: list[IntervalRun], pooled: dict[tuple[str, int], MotMetrics]) -> str:
    """One row per sequence x mode x K, deltas against K=1 of the same sequence (``redraw``: its own K=1); then
    the pooled rows."""
    header = (f"{'sequence':<16}{'mode':<8}{'K':>5}{'det/frame':>10}{'det/s':>7}{'MOTA':>7}{'dMOTA':>7}{'IDF1':>7}"
              f"{'dIDF1':>7}{'HOTA':>7}{'IDSW':>6}{'FP':>7}{'FN':>8}{'step ms':>9}")
    lines = [title, header, "-" * len(header)]
    base = {(r.sequence, r.mode == "redraw"): r.metrics for r in runs if r.interval == 1}
    for run in sorted(runs, key=lambda r: (r.sequence, r.interval != 1, r.mode, r.interval)):
        m, b = run.metrics, base.get((run.sequence, run.mode == "redraw"))
        d_mota = 100 * (m.mota - b.mota) if b else float("nan")
        d_idf1 = 100 * (m.idf1 - b.idf1) if b else float("nan")
        lines.append(f"{run.sequence:<16}{run.mode:<8}{run.label:>5}{run.calls_per_frame:>10.3f}"
                     f"{run.calls_per_second:>7.2f}{100 * m.mota:>7.1f}{d_mota:>+7.1f}{100 * m.idf1:>7.1f}"
                     f"{d_idf1:>+7.1f}{100 * m.hota:>7.1f}{m.num_switches:>6}{m.num_false_positives:>7}"
                     f"{m.num_misses:>8}{run.step_ms:>9.3f}")
    if pooled:
        base_pooled = next((m for (_, k), m in pooled.items() if k == 1), None)
        for (mode, interval), m in sorted(pooled.items(), key=lambda kv: (kv[0][1] != 1, kv[0])):
            d_mota = 100 * (m.mota - base_pooled.mota) if base_pooled else float("nan")
            d_idf1 = 100 * (m.idf1 - base_pooled.idf1) if base_pooled else float("nan")
            label = "auto" if interval == AUTO_INTERVAL else str(interval)
            lines.append(f"{OVERALL:<16}{mode:<8}{label:>5}{'':>10}{'':>7}{100 * m.mota:>7.1f}{d_mota:>+7.1f}"
                         f"{100 * m.idf1:>7.1f}{d_idf1:>+7.1f}{100 * m.hota:>7.1f}{m.num_switches:>6}"
                         f"{m.num_false_positives:>7}{m.num_misses:>8}")
    return "\n".join(lines)


def plot(runs: list[IntervalRun], path: Path) -> Path:
    """MOTA against detector calls per second: one panel per workload, one line per sequence and mode (solid:
    flow, dashed: Kalman, dotted: redraw; K=1 starts every line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({r.workload for r in runs}, reverse=True)  # public first
    fig, axes = plt.subplots(1, len(workloads), figsize=(7 * len(workloads), 5.5), squeeze=False)
    base = {(r.workload, r.sequence, r.mode == "redraw"): r for r in runs if r.interval == 1}
    sequences = sorted({(r.workload, r.sequence) for r in runs})
    for ax, workload in zip(axes[0], workloads):
        colours = iter(plt.get_cmap("tab10").colors)
        for key in (k for k in sequences if k[0] == workload):
            colour = next(colours)
            for mode in MODES:
                start = base.get((*key, mode == "redraw"))
                line = sorted([r for r in runs if (r.workload, r.sequence) == key and r.mode == mode
                               and r.interval > 1] + ([start] if start else []), key=lambda r: r.calls_per_second)
                for auto in (r for r in runs if (r.workload, r.sequence) == key and r.mode == mode
                             and r.interval == AUTO_INTERVAL):
                    ax.plot([auto.calls_per_second], [100 * auto.metrics.mota], marker="*", markersize=14,
                            color=colour, linestyle="none", label=f"{key[1]} {mode} auto")
                if len(line) < 2:
                    continue
                ax.plot([r.calls_per_second for r in line], [100 * r.metrics.mota for r in line], marker="o",
                        color=colour, linestyle=LINE_STYLES[mode], label=f"{key[1]} {mode}")
        ax.set_xscale("log")
        ax.set_xlabel("detector calls per second (log)")
        ax.set_ylabel("MOTA (%)")
        ax.set_title(f"{workload} detections: detector every K-th frame")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _intervals(text: str) -> tuple[int, ...]:
    try:
        values = tuple(AUTO_INTERVAL if v.strip() == "auto" else int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"intervals must be integers >= 1 or 'auto', got {text!r}")
    return tuple(sorted(set(values) | {1}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", type=_intervals, default=INTERVALS,
                        help="comma-separated K, or auto (1 is always run)")
    parser.add_argument("--public-data", type=Path, default=DEFAULT_PUBLIC_DATA, help="MOT17 train folder")
    parser.add_argument("--detector-data", type=Path, nargs="+", default=list(DEFAULT_DATA),
                        help="sequences with images for the detector workload")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--threads", type=int, default=1, help="inference and OpenCV threads")
    parser.add_argument("--skip-public", action="store_true")
    parser.add_argument("--skip-detector", action="store_true")
    parser.add_argument("--modes", default=",".join(MODES), help="detector workload modes: kalman,flow")
    parser.add_argument("--variants", default="",
                        help="also these benchmarks/identity_data.py sequences (cached detector outputs), e.g. "
                             "vtest-fitted,PETS09-pan")
    parser.add_argument("--variants-root", type=Path, default=VARIANTS_ROOT,
                        help="where identity_data.py keeps them (built there when missing)")
    parser.add_argument("--cache-dir", type=Path, default=PROJECT_ROOT / "runs" / "detect_interval" / "detections")
    parser.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "runs" / "detect_interval")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--phase", type=int, default=0,
                        help="detector frames after the first at phase, phase + K, ... (taken modulo each K; 0: "
                             "frames 1, 1 + K, ... as track runs it); which frames go without a detection moves "
                             "the score")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cv2.setNumThreads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        sys.exit(f"error: unknown mode(s) {sorted(set(modes) - set(MODES))}; choose from {MODES}")
    report: dict = {"intervals": list(args.intervals), "phase": args.phase, "workloads": {}}
    all_runs: list[IntervalRun] = []
    tables = []
    if not args.skip_public:
        sequences = benchmark_sequences(require_path(args.public_data, "MOT17 data folder"))
        config = TrackerConfig.from_track_thresh(DEFAULT_TRACK_THRESH)
        detections = {s.name: s.detections() for s in sequences}
        runs, pooled = run_workload("public", sequences, detections, ["kalman"], args.intervals, config,
                                    args.out_dir / "public", phase=args.phase)
        tables.append(format_table("MOT17 public detections, tracker only (Kalman prediction between)", runs, pooled))
        report["workloads"]["public"] = {"tracker": asdict(config), "runs": [r.as_row() for r in runs],
                                         "overall": {f"{m}_k{k}": v.to_dict() for (m, k), v in pooled.items()}}
        all_runs += runs
    if not args.skip_detector:
        sequences = [s for root in args.detector_data for s in find_sequences(require_path(root, "sequence"))
                     if s.has_images and s.gt_path.is_file()]
        weights = require_path(args.weights, "detector weights")
        config = TrackerConfig.from_track_thresh(BENCHMARK_TRACK_THRESH)
        detections = {s.name: detector_detections(s, weights, args.threads, args.cache_dir) for s in sequences}
        runs, _ = run_workload("detector", sequences, detections, modes, args.intervals, config,
                               args.out_dir / "detector", output_filter=OutputFilter(), phase=args.phase)
        tables.append(format_table("Detector (ByteTrack nano fp32, ONNX Runtime): PETS09-S2L1 and MOT17-05 mini",
                                   runs, {}))
        report["workloads"]["detector"] = {"tracker": asdict(config), "weights": str(weights),
                                           "propagation": asdict(PropagationConfig()),
                                           "runs": [r.as_row() for r in runs]}
        all_runs += runs
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if variants:
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            sys.exit(f"error: unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
        sequences = [load_sequence(build_variant(VARIANTS[v], args.threads, args.variants_root)) for v in variants]
        config = TrackerConfig.from_track_thresh(BENCHMARK_TRACK_THRESH)
        runs, _ = run_workload("variants", sequences, {s.name: s.detections() for s in sequences}, modes,
                               args.intervals, config, args.out_dir / "variants", output_filter=OutputFilter(),
                               frames=lambda sequence: VARIANTS[sequence.name].frames(), phase=args.phase)
        tables.append(format_table("identity_data variants (cached detector outputs, images re-made)", runs, {}))
        report["workloads"]["variants"] = {"tracker": asdict(config), "runs": [r.as_row() for r in runs]}
        all_runs += runs
    print("\n\n".join(tables))
    if all_runs:
        png = plot(all_runs, args.out_dir / "mota_vs_calls.png")
        print(f"plot: {png}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
