"""Detector input size against speed and tracking accuracy: native, fitted (the ``track`` default), 640x640 and
two smaller fitted-aspect sizes, for each model on each sequence.

Per model, sequence and input size:

* inference ms (ONNX Runtime, 1 and 2 intra-op threads): every (size, threads) session runs the same real frames
  in one interleaved loop (the order rotates every round), so the drift of a shared CPU hits all alike and the
  ratios between sizes are fair; medians are reported;
* the ``track`` pipeline over the sequence (``apps.pipeline.run_tracking``: read-ahead, preprocess, infer,
  postprocess, ByteTrack with the ``track`` defaults, no video), at ``--track-threads``: its end-to-end fps,
  person AP50 of the detections the tracker received, and MOTA / IDF1 of the tracks (``apps.evaluation``).

Writes ``input_size.json``, ``input_size.csv`` and ``input_size_mota_vs_ms.png`` (MOTA against inference ms at
1 thread) into ``--output-dir``, prints a table, and checks the targets: fitted >= 1.3x faster inference than
native on PETS09-S2L1 with MOTA >= native - 1.0, and which sizes stay within that MOTA band.

    .venv/bin/python benchmarks/input_size.py                 # all frames (vtest.avi: 795)
    .venv/bin/python benchmarks/input_size.py --quick         # a smoke test: 12 frames, 3 timing rounds
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from int8track.apps.cli.tracker_options import DEFAULT_TRACK_THRESH
from int8track.apps.evaluation.metrics import accumulate, protocol_for, summarize
from int8track.apps.io.motchallenge import MotSequence, load_sequence, read_results
from int8track.apps.io.sources import open_source
from int8track.apps.pipeline.run import OutputFilter, run_tracking
from int8track.detectors import Detector, InputSizeChoice, load_detector, resolve_input_size
from int8track.detectors.evaluation import average_precision, boxes_by_frame
from int8track.frames import FALLBACK_FRAME_RATE
from int8track.tracker import ByteTracker, TrackerConfig

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path  # noqa: E402

MODELS = {
    "bytetrack_nano_mot17": "weights/bytetrack_nano_mot17.onnx",
    "yolox_nano": "weights/yolox_nano.onnx",
    "yolov5n": "weights/yolov5n.pt",
}
#: name -> (what ``track`` reads, the MOT sequence folder holding its gt)
SEQUENCES = {
    "PETS09-S2L1": ("videos/vtest.avi", "MOT15/train/PETS09-S2L1"),
    "MOT17-05-mini": ("MOT17-mini/train/MOT17-05-FRCNN", "MOT17-mini/train/MOT17-05-FRCNN"),
}
SIZES = ("native", "fitted", "640x640", "640", "512")
PERSON = 0
MOTA_BAND = 1.0  # MOTA points below native still counted as "the same accuracy"
SPEEDUP_TARGET = 1.3
DEFAULT_OUTPUT = Path("runs") / "benchmarks" / "input_size"


@dataclass
class SizeRun:
    """One model on one sequence at one input size."""

    model: str
    sequence: str
    labels: list[str]  # the --imgsz values giving this size (e.g. native and 640x640 for yolov5n)
    input_size: list[int]
    reason: str
    infer_ms_1t: float
    infer_ms_2t: float
    e2e_fps: float
    frames: int
    ap50: float
    mota: float
    idf1: float

    @property
    def label(self) -> str:
        return "=".join(self.labels)


def read_frames(location: Path, limit: int | None) -> list[np.ndarray]:
    """The first ``limit`` frames (all when None) of a video or image folder, through the pipeline's reader."""
    source = open_source(str(location))
    frames: list[np.ndarray] = []
    try:
        while limit is None or len(frames) < limit:
            frame = source.read()
            if frame is None:
                break
            frames.append(frame)
    finally:
        source.close()
    if not frames:
        raise ValueError(f"{location}: no frames read")
    return frames


def unique_sizes(spec, frame_shape: tuple[int, ...], choices: Sequence[str]) -> dict[tuple[int, int], list[str]]:
    """(h, w) -> the choices giving it, in first-seen order (yolov5n's native size is 640x640)."""
    sizes: dict[tuple[int, int], list[str]] = {}
    for text in choices:
        size, _ = resolve_input_size(spec, InputSizeChoice.parse(text), frame_shape)
        sizes.setdefault(size, []).append(text)
    return sizes


def interleaved_infer_ms(detectors: dict[tuple, Detector], blobs: dict[tuple[int, int], list[np.ndarray]],
                         rounds: int, warmup: int = 2) -> dict[tuple, float]:
    """Median ms of ``infer`` per detector; key = (size, threads). One call of each per round, order rotated."""
    keys = list(detectors)
    for key in keys:
        for blob in blobs[key[0]][:warmup]:
            detectors[key].infer(blob)
    samples: dict[tuple, list[float]] = {key: [] for key in keys}
    for round_index in range(rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            frames = blobs[key[0]]
            blob = frames[round_index % len(frames)]
            start = time.perf_counter()
            detectors[key].infer(blob)
            samples[key].append((time.perf_counter() - start) * 1e3)
    return {key: float(np.median(values)) for key, values in samples.items()}


class RecordingDetector:
    """A detector that keeps what it hands to the tracker (for AP50 of the same run)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.spec = detector.spec
        self.detections: list[np.ndarray] = []

    def preprocess(self, frame: np.ndarray):
        return self.detector.preprocess(frame)

    def infer(self, blob: np.ndarray) -> np.ndarray:
        return self.detector.infer(blob)

    def postprocess(self, raw: np.ndarray, meta) -> np.ndarray:
        boxes = self.detector.postprocess(raw, meta)
        self.detections.append(boxes)
        return boxes


def person_gt(sequence: MotSequence, frames: int) -> list[np.ndarray]:
    """Per-frame gt boxes scored by MOTChallenge (consider flag; pedestrians where the gt has classes)."""
    gt = sequence.ground_truth()
    keep = gt.consider if gt.classes is None else gt.consider & (gt.classes == 1)
    return boxes_by_frame(gt.frames[keep], gt.boxes[keep], frames)


@dataclass(frozen=True)
class TrackScores:
    e2e_fps: float
    frames: int
    ap50: float
    mota: float  # percent
    idf1: float  # percent


def track_and_score(detector: Detector, source: Path, sequence: MotSequence, results: Path,
                    max_frames: int | None) -> TrackScores:
    """One ``track`` run (defaults, no video): end-to-end fps, AP50 of its detections, MOTA and IDF1."""
    recorder = RecordingDetector(detector)
    opened = open_source(str(source))
    tracker = ByteTracker(TrackerConfig.from_track_thresh(DEFAULT_TRACK_THRESH),
                          frame_rate=opened.info.fps or FALLBACK_FRAME_RATE)
    run = run_tracking(opened, recorder, tracker, output_filter=OutputFilter(), results_path=results,
                       max_frames=max_frames, progress=False)
    if run.error is not None:
        raise run.error
    gt = sequence.ground_truth()
    scored = summarize({sequence.name: accumulate(gt, read_results(results), run.frames,
                                                  protocol_for(gt, sequence.name))})[sequence.name]
    ap = average_precision(recorder.detections, person_gt(sequence, run.frames), np.array([0.5]))
    return TrackScores(float(run.report.info["end_to_end_fps"]), run.frames, float(ap[0]), scored.mota * 100,
                       scored.idf1 * 100)


def run_model(name: str, sequence_name: str, args: argparse.Namespace) -> list[SizeRun]:
    """Every input size of one model on one sequence: the interleaved timing, then one tracking run per size."""
    source_rel, gt_rel = SEQUENCES[sequence_name]
    source = require_path(SHARED_DATA / source_rel, f"{sequence_name} source")
    sequence = load_sequence(require_path(SHARED_DATA / gt_rel, f"{sequence_name} ground truth"))
    weights = require_path(SHARED_DATA / MODELS[name], f"{name} weights")
    base = {threads: load_detector(weights, backend="onnxruntime", num_threads=threads, classes=[PERSON])
            for threads in (1, 2, args.track_threads)}
    frames = read_frames(source, args.timing_frames)
    sizes = unique_sizes(base[1].spec, frames[0].shape, args.sizes)
    detectors = {(size, threads): base[threads].with_input_size(size) for size in sizes for threads in (1, 2)}
    blobs = {size: [detectors[(size, 1)].preprocess(f)[0] for f in frames] for size in sizes}
    print(f"{name} on {sequence_name}: timing {len(detectors)} sessions x {args.rounds} rounds", file=sys.stderr)
    infer_ms = interleaved_infer_ms(detectors, blobs, args.rounds)
    runs = []
    for size, labels in sizes.items():
        reason = resolve_input_size(base[1].spec, InputSizeChoice.parse(labels[0]), frames[0].shape)[1]
        results = args.output_dir / "results" / name / f"{size[0]}x{size[1]}" / f"{sequence_name}.txt"
        results.parent.mkdir(parents=True, exist_ok=True)
        scores = track_and_score(base[args.track_threads].with_input_size(size), source, sequence, results,
                                 args.max_frames)
        runs.append(SizeRun(name, sequence_name, labels, list(size), reason, infer_ms[(size, 1)],
                            infer_ms[(size, 2)], **asdict(scores)))
        print(format_row(runs[-1]), file=sys.stderr)
    return runs


HEADER = (f"{'model':<22}{'sequence':<15}{'imgsz':<16}{'input':>10}{'ms 1t':>8}{'ms 2t':>8}{'x nat':>7}"
          f"{'e2e fps':>9}{'AP50':>7}{'MOTA':>7}{'IDF1':>7}")


def format_row(run: SizeRun, native: SizeRun | None = None) -> str:
    speedup = f"{native.infer_ms_1t / run.infer_ms_1t:.2f}" if native is not None else "-"
    return (f"{run.model:<22}{run.sequence:<15}{run.label:<16}{'{}x{}'.format(*run.input_size):>10}"
            f"{run.infer_ms_1t:>8.2f}{run.infer_ms_2t:>8.2f}{speedup:>7}{run.e2e_fps:>9.1f}{run.ap50:>7.3f}"
            f"{run.mota:>7.1f}{run.idf1:>7.1f}")


def native_of(runs: list[SizeRun], run: SizeRun) -> SizeRun:
    return next(r for r in runs if r.model == run.model and r.sequence == run.sequence and "native" in r.labels)


def summary_lines(runs: list[SizeRun]) -> list[str]:
    """The table, then the targets: fitted vs native speed and MOTA, and the sizes within the MOTA band."""
    lines = [HEADER] + [format_row(r, native_of(runs, r)) for r in runs]
    lines.append(f"within the band (MOTA >= native - {MOTA_BAND}):")
    for run in runs:
        native = native_of(runs, run)
        if run is native:
            continue
        within = run.mota >= native.mota - MOTA_BAND
        lines.append(f"  {run.model} {run.sequence} {run.label} ({'{}x{}'.format(*run.input_size)}): "
                     f"{native.infer_ms_1t / run.infer_ms_1t:.2f}x (1t) {native.infer_ms_2t / run.infer_ms_2t:.2f}x "
                     f"(2t), MOTA {run.mota - native.mota:+.1f} -> {'within' if within else 'OUTSIDE'}")
    for run in runs:
        if run.model == "bytetrack_nano_mot17" and run.sequence == "PETS09-S2L1" and "fitted" in run.labels:
            native = native_of(runs, run)
            speedup = native.infer_ms_1t / run.infer_ms_1t
            ok = speedup >= SPEEDUP_TARGET and run.mota >= native.mota - MOTA_BAND
            lines.append(f"target (ByteTrack nano, PETS09-S2L1, fitted vs native): {speedup:.2f}x inference at "
                         f"1 thread (>= {SPEEDUP_TARGET}), MOTA {run.mota:.1f} vs {native.mota:.1f} "
                         f"(>= native - {MOTA_BAND}): {'MET' if ok else 'NOT MET'}")
    return lines


def plot(runs: list[SizeRun], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    groups = sorted({(r.model, r.sequence) for r in runs})
    for model, sequence in groups:
        members = sorted((r for r in runs if (r.model, r.sequence) == (model, sequence)), key=lambda r: r.infer_ms_1t)
        ax.plot([r.infer_ms_1t for r in members], [r.mota for r in members], marker="o", label=f"{model} / {sequence}")
        for r in members:
            ax.annotate("{}x{}".format(*r.input_size), (r.infer_ms_1t, r.mota), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("inference ms per frame (ONNX Runtime, 1 thread)")
    ax.set_ylabel("MOTA (%)")
    ax.set_title("MOTA against inference time by detector input size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(runs: list[SizeRun], args: argparse.Namespace) -> list[Path]:
    out = args.output_dir
    rows = [{**asdict(r), "label": r.label} for r in runs]
    meta = {"quick": args.quick, "max_frames": args.max_frames, "timing_frames": args.timing_frames,
            "rounds": args.rounds, "track_threads": args.track_threads, "precision": "fp32",
            "note": "timings from one interleaved loop per model and sequence; the machine may be shared"}
    json_path = out / "input_size.json"
    json_path.write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n")
    csv_path = out / "input_size.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return [json_path, csv_path, plot(runs, out / "input_size_mota_vs_ms.png")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--sequences", nargs="+", choices=list(SEQUENCES), default=list(SEQUENCES))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="--imgsz values (default %(default)s)")
    parser.add_argument("--max-frames", type=int, help="frames tracked per run (default all)")
    parser.add_argument("--timing-frames", type=int, default=16, help="distinct frames the timing loop cycles")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved timing rounds")
    parser.add_argument("--track-threads", type=int, default=2, help="inference threads of the tracking runs")
    parser.add_argument("--quick", action="store_true", help="smoke test: 12 frames, 3 timing frames, 3 rounds")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.max_frames, args.timing_frames, args.rounds = args.max_frames or 12, 3, 3
    if "native" not in args.sizes:
        args.sizes = ["native", *args.sizes]  # every ratio is against native
    cv2.setNumThreads(args.track_threads)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    runs = [run for sequence in args.sequences for model in args.models for run in run_model(model, sequence, args)]
    print("\n".join(summary_lines(runs)))
    for path in write_outputs(runs, args):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
