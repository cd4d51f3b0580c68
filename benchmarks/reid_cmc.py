"""Appearance re-identification and camera motion compensation: accuracy and tracker cost per frame.

Runs ByteTrack four ways on each sequence: the tracker alone, ``+cmc`` (``tracker.cmc.CmcTracker``), ``+reid``
(``tracker.reid.ReidTracker`` with OSNet x0.25, MSMT17 weights: research use only) and ``+reid+cmc``, and prints
MOTA, IDF1, ID switches and the milliseconds per frame of the tracking step (tracker + CMC + ReID; decoding and
the detector are left out) for each, as wall time, as the thread's CPU time (less sensitive to other jobs on a
shared machine; ONNX Runtime runs the embedder on the calling thread with one intra-op thread) and for the CMC
and ReID stages alone (wall):

- ``pets09``: PETS09-S2L1, 795 frames, static camera;
- ``pets09-pan``: the same frames seen through a 640x480 window that slides back and forth (``PAN_STEP`` pixels a
  frame across, ``PAN_STEP_Y`` down), a panning camera with known motion; gt shifted into the window and clipped,
  boxes less than ``MIN_VISIBLE`` inside it left out;
- ``mot17-05``: the 48-frame MOT17-05 mini sequence (moving camera).

The detector (``bytetrack_nano_mot17.onnx``, fp32, ONNX Runtime, native input size) runs once per frame and its
detections are cached under ``runs/reid_cmc/`` (``--refresh-detections`` runs it again). One thread for OpenCV
and the embedder, as the tracker would get in the pipeline:

    .venv/bin/python benchmarks/reid_cmc.py [--sequences pets09 pets09-pan mot17-05] [--track-buffer 30]
    .venv/bin/python benchmarks/reid_cmc.py --cmc-speed     # CMC alone on 1920x1080 frames, one core
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from int8track.apps.evaluation.metrics import accumulate, protocol_for, summarize
from int8track.apps.io.motchallenge import MotAnnotations, load_sequence
from int8track.tracker import ByteTracker, TrackerConfig
from int8track.tracker.appearance import OnnxEmbedder
from int8track.tracker.cmc import DEFAULT_CMC_CONFIG, CameraMotionCompensator, CmcTracker
from int8track.tracker.reid import ReidConfig, ReidTracker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import PROJECT_ROOT, SHARED_DATA, require_path
from benchmarks.e2e import BENCHMARK_TRACK_THRESH

PETS09 = SHARED_DATA / "MOT15" / "train" / "PETS09-S2L1"
MOT17_05 = SHARED_DATA / "MOT17-mini" / "train" / "MOT17-05-FRCNN"
DETECTOR = SHARED_DATA / "weights" / "bytetrack_nano_mot17.onnx"
REID_WEIGHTS = SHARED_DATA / "weights" / "osnet_x0_25_msmt17.onnx"
CACHE = PROJECT_ROOT / "runs" / "reid_cmc"
PAN_WINDOW = (640, 480)  # width, height
PAN_STEP, PAN_STEP_Y = 7, 3  # pixels per frame
MIN_VISIBLE = 0.5  # share of a gt box inside the window for it to count
MODES = ("tracker", "+cmc", "+reid", "+reid+cmc")
SEQUENCES = ("pets09", "pets09-pan", "mot17-05")


@dataclass(frozen=True)
class Clip:
    """One benchmark sequence: frames (loaded lazily), gt, frame rate and the name of its detection cache."""

    name: str
    frame_rate: float
    length: int
    frames: Callable[[], Iterator[np.ndarray]]
    gt: MotAnnotations


@dataclass(frozen=True)
class ModeResult:
    sequence: str
    mode: str
    mota: float
    idf1: float
    switches: int
    ms_per_frame: float
    cpu_ms_per_frame: float
    cmc_ms: float
    reid_ms: float
    crops_per_frame: float
    refound: int


def bounce(frame_index: int, step: int, span: int) -> int:
    """Offset of a window moving ``step`` pixels a frame back and forth over ``span`` pixels (triangle wave)."""
    if span <= 0:
        return 0
    position = (frame_index * step) % (2 * span)
    return position if position <= span else 2 * span - position


def pan_offsets(length: int, image_size: tuple[int, int]) -> np.ndarray:
    """(length, 2) x, y window offsets of the panning clip, frame 1 first."""
    span_x, span_y = image_size[0] - PAN_WINDOW[0], image_size[1] - PAN_WINDOW[1]
    return np.array([(bounce(i, PAN_STEP, span_x), bounce(i, PAN_STEP_Y, span_y)) for i in range(length)])


def panned_gt(gt: MotAnnotations, offsets: np.ndarray) -> MotAnnotations:
    """``gt`` moved into the sliding window and clipped to it; boxes mostly outside are left out."""
    shift = offsets[gt.frames - 1]
    x1, y1 = gt.boxes[:, 0] - shift[:, 0], gt.boxes[:, 1] - shift[:, 1]
    x2, y2 = x1 + gt.boxes[:, 2], y1 + gt.boxes[:, 3]
    cx1, cy1 = np.clip(x1, 0, PAN_WINDOW[0]), np.clip(y1, 0, PAN_WINDOW[1])
    cx2, cy2 = np.clip(x2, 0, PAN_WINDOW[0]), np.clip(y2, 0, PAN_WINDOW[1])
    visible = (cx2 - cx1) * (cy2 - cy1) / np.maximum(gt.boxes[:, 2] * gt.boxes[:, 3], 1e-9)
    keep = visible >= MIN_VISIBLE
    boxes = np.stack((cx1, cy1, cx2 - cx1, cy2 - cy1), axis=1)[keep]
    return dataclasses.replace(gt, frames=gt.frames[keep], ids=gt.ids[keep], boxes=boxes,
                               scores=gt.scores[keep],
                               classes=None if gt.classes is None else gt.classes[keep],
                               visibility=None if gt.visibility is None else gt.visibility[keep])


def load_clips(names: list[str]) -> list[Clip]:
    clips = []
    for name in names:
        root = PETS09 if name.startswith("pets09") else MOT17_05
        sequence = load_sequence(require_path(root, f"sequence {name}"))
        paths = sequence.image_paths()
        gt = sequence.ground_truth()
        if name == "pets09-pan":
            offsets = pan_offsets(len(paths), (sequence.width or 768, sequence.height or 576))

            def frames(paths: list[Path] = paths, offsets: np.ndarray = offsets) -> Iterator[np.ndarray]:
                for path, (x, y) in zip(paths, offsets):
                    image = cv2.imread(str(path))
                    yield np.ascontiguousarray(image[y:y + PAN_WINDOW[1], x:x + PAN_WINDOW[0]])

            gt = panned_gt(gt, offsets)
        else:
            def frames(paths: list[Path] = paths) -> Iterator[np.ndarray]:
                for path in paths:
                    yield cv2.imread(str(path))
        clips.append(Clip(name, sequence.frame_rate, len(paths), frames, gt))
    return clips


def cached_detections(clip: Clip, refresh: bool) -> list[np.ndarray]:
    """The detector's (N, 6) detections of every frame, from ``runs/reid_cmc/<name>_dets.npz`` when cached."""
    path = CACHE / f"{clip.name}_dets.npz"
    if path.is_file() and not refresh:
        with np.load(path) as data:
            return [data[f"f{i}"] for i in range(clip.length)]
    from int8track import load_detector

    detector = load_detector(str(require_path(DETECTOR, "detector weights")), backend="onnxruntime", num_threads=2)
    detections = []
    for index, frame in enumerate(clip.frames()):
        detections.append(np.asarray(detector(frame), dtype=np.float64))
        if index % 100 == 0:
            print(f"{clip.name}: detected frame {index + 1}/{clip.length}", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{f"f{i}": d for i, d in enumerate(detections)})
    return detections


def run_mode(clip: Clip, detections: list[np.ndarray], mode: str, config: TrackerConfig,
             reid_config: ReidConfig) -> ModeResult:
    tracker = ByteTracker(config, frame_rate=clip.frame_rate)
    cmc = DEFAULT_CMC_CONFIG if "cmc" in mode else None
    runner: ByteTracker | CmcTracker | ReidTracker = tracker
    if "reid" in mode:
        runner = ReidTracker(tracker, OnnxEmbedder(REID_WEIGHTS, num_threads=1), reid_config, camera_motion=cmc)
    elif cmc is not None:
        runner = CmcTracker(tracker, cmc)
    rows, elapsed, cpu = [], 0, 0
    stages = {"cmc": 0, "reid": 0}
    for frame_id, (frame, dets) in enumerate(zip(clip.frames(), detections), start=1):
        start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
        output = runner.update(dets, frame)
        elapsed += time.perf_counter_ns() - start
        cpu += time.thread_time_ns() - cpu_start
        if runner is not tracker:
            stage_ns = runner.last_stage_ns
            for name in stages:
                stages[name] += stage_ns.get(name, 0)
        for x1, y1, x2, y2, track_id, *_ in output:
            rows.append((frame_id, track_id, x1, y1, x2 - x1, y2 - y1))
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)
    results = MotAnnotations(path=Path(f"{clip.name}-{mode}"), frames=table[:, 0].astype(np.int64),
                             ids=table[:, 1].astype(np.int64), boxes=table[:, 2:6], scores=np.ones(len(table)),
                             classes=None, visibility=None)
    accumulator = accumulate(clip.gt, results, clip.length, protocol_for(clip.gt, clip.name))
    metrics = summarize({clip.name: accumulator})[clip.name]
    crops = runner.crops_embedded if isinstance(runner, ReidTracker) else 0
    refound = runner.refound_total if isinstance(runner, ReidTracker) else 0
    per_frame = 1e6 * clip.length  # nanoseconds to milliseconds per frame
    return ModeResult(clip.name, mode, metrics.mota, metrics.idf1, metrics.num_switches, elapsed / per_frame,
                      cpu / per_frame, stages["cmc"] / per_frame, stages["reid"] / per_frame, crops / clip.length,
                      refound)


def format_table(results: list[ModeResult]) -> str:
    lines = ["| sequence | mode | MOTA | IDF1 | ID sw | ms/frame | CPU ms/frame | cmc ms | reid ms | crops/frame "
             "| re-found |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.sequence} | {r.mode} | {100 * r.mota:.1f} | {100 * r.idf1:.1f} | {r.switches} | "
                     f"{r.ms_per_frame:.2f} | {r.cpu_ms_per_frame:.2f} | {r.cmc_ms:.2f} | {r.reid_ms:.2f} | "
                     f"{r.crops_per_frame:.2f} | {r.refound} |")
    return "\n".join(lines)


def cmc_speed(repeats: int) -> str:
    """Milliseconds per frame of ``CameraMotionCompensator.estimate`` on PETS09 frames upscaled to 1920x1080."""
    paths = load_sequence(require_path(PETS09, "PETS09-S2L1")).image_paths()[:60]
    frames = [cv2.resize(cv2.imread(str(p)), (1920, 1080)) for p in paths]
    lines = []
    for downscale in (2, 4):
        config = dataclasses.replace(DEFAULT_CMC_CONFIG, downscale=downscale)
        times, cpu_times = [], []
        for _ in range(repeats):
            compensator = CameraMotionCompensator(config)
            compensator.estimate(frames[0])
            start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
            for frame in frames[1:]:
                compensator.estimate(frame)
            times.append((time.perf_counter_ns() - start) / 1e6 / (len(frames) - 1))
            cpu_times.append((time.thread_time_ns() - cpu_start) / 1e6 / (len(frames) - 1))
        lines.append(f"CMC 1920x1080, downscale {downscale}, levels {config.levels}: wall "
                     + ", ".join(f"{t:.2f}" for t in times) + " ms/frame; CPU "
                     + ", ".join(f"{t:.2f}" for t in cpu_times) + " ms/frame")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", nargs="+", choices=SEQUENCES, default=list(SEQUENCES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--track-buffer", type=int, default=60, help="ByteTrack track_buffer (frames at 30 fps)")
    parser.add_argument("--min-similarity", type=float, default=ReidConfig.min_similarity)
    parser.add_argument("--refresh-every", type=int, default=ReidConfig.refresh_every)
    parser.add_argument("--gate", type=float, default=ReidConfig.gate)
    parser.add_argument("--gate-growth", type=float, default=ReidConfig.gate_growth)
    parser.add_argument("--refresh-detections", action="store_true", help="run the detector again")
    parser.add_argument("--cmc-speed", action="store_true", help="time CMC alone at 1920x1080 and exit")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.cmc_speed:
        print(cmc_speed(args.repeats))
        return 0
    config = TrackerConfig.from_track_thresh(BENCHMARK_TRACK_THRESH).replace(track_buffer=args.track_buffer)
    reid_config = ReidConfig(min_similarity=args.min_similarity, refresh_every=args.refresh_every, gate=args.gate,
                             gate_growth=args.gate_growth)
    results = []
    for clip in load_clips(args.sequences):
        detections = cached_detections(clip, args.refresh_detections)
        for mode in args.modes:
            results.append(run_mode(clip, detections, mode, config, reid_config))
            print(format_table(results[-1:]).splitlines()[-1], file=sys.stderr)
    print(f"track_thresh {BENCHMARK_TRACK_THRESH}, track_buffer {args.track_buffer}, {reid_config}")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
