"""Cost of a frame without detections: ``ByteTracker.predict`` and ``IntervalTracker.step`` with optical flow.

- ``predict``: a tracker holding N confirmed tracks (synthetic walkers, all tracked), one ``predict()`` per frame,
  re-primed by an ``update`` every few frames so the table stays the same size;
- ``flow``: ``FlowPropagator.propagate`` and the whole ``IntervalTracker.step`` (grey conversion, downscale,
  flow, camera motion, Kalman correction) on consecutive PETS09-S2L1 frames (768x576) with M tracks, OpenCV on
  one thread (``cv2.setNumThreads(1)``).

Each is timed ``--repeats`` times over ``--calls`` calls; the table gives the median and the best repeat in ms
per call, as wall time and as this thread's CPU time (``time.thread_time``: on a shared machine the wall time
also counts the time other processes held the core). Run with ``uptime`` next to it.

    .venv/bin/python benchmarks/interval_speed.py [--tracks 50] [--flow-tracks 20] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from int8track.tracker import ByteTracker
from int8track.tracker.propagation import FlowPropagator, IntervalTracker, PropagationConfig

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path

PETS_FRAMES = SHARED_DATA / "MOT15" / "train" / "PETS09-S2L1" / "img1"


def walkers(count: int, t: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """``count`` well-separated 30x80 boxes moving 2 px per frame, score 0.9 (every one matches every frame)."""
    columns = int(np.ceil(np.sqrt(count)))
    index = np.arange(count)
    x = 10.0 + (index % columns) * 60 + 2.0 * t
    y = 10.0 + (index // columns) * 100
    return np.column_stack((x, y, x + 30, y + 80, np.full(count, 0.9)))


def time_calls(call: Callable[[], object], calls: int, repeats: int,
               between: Callable[[int], None] | None = None) -> dict[str, float]:
    """ms per call (median and best of ``repeats``), wall and thread CPU; ``between(i)`` runs untimed before
    call ``i``."""
    wall, cpu = [], []
    for _ in range(repeats):
        wall_ns = cpu_ns = 0
        for i in range(calls):
            if between is not None:
                between(i)
            w, c = time.perf_counter_ns(), time.thread_time_ns()
            call()
            cpu_ns += time.thread_time_ns() - c
            wall_ns += time.perf_counter_ns() - w
        wall.append(wall_ns / calls / 1e6)
        cpu.append(cpu_ns / calls / 1e6)
    return {"wall_median_ms": float(np.median(wall)), "wall_best_ms": float(min(wall)),
            "cpu_median_ms": float(np.median(cpu)), "cpu_best_ms": float(min(cpu))}


def predict_speed(tracks: int, calls: int, repeats: int) -> dict[str, float]:
    """``predict()`` with ``tracks`` confirmed tracks; an untimed ``update`` before every 4th call."""
    tracker = ByteTracker(frame_rate=30)
    frame = [0]
    for _ in range(5):
        tracker.update(walkers(tracks, frame[0]))
        frame[0] += 1

    def between(i: int) -> None:
        if i % 4 == 0:
            tracker.update(walkers(tracks, frame[0]))
        frame[0] += 1

    return time_calls(tracker.predict, calls, repeats, between)


def flow_speed(tracks: int, calls: int, repeats: int, config: PropagationConfig) -> dict[str, dict[str, float]]:
    """``propagate`` alone and the whole ``step`` on PETS09 frames 1 and 2 with ``tracks`` boxes."""
    first = cv2.imread(str(require_path(PETS_FRAMES / "000001.jpg", "PETS09-S2L1 frame")))
    second = cv2.imread(str(require_path(PETS_FRAMES / "000002.jpg", "PETS09-S2L1 frame")))
    height, width = first.shape[:2]
    rng = np.random.default_rng(0)
    corner = np.column_stack((rng.uniform(0, width - 40, tracks), rng.uniform(0, height - 90, tracks)))
    boxes = np.hstack((corner, corner + [30, 80]))
    propagator = FlowPropagator(config)
    previous = propagator.prepare(first)
    results = {"propagate": time_calls(lambda: propagator.propagate(previous, propagator.prepare(second), boxes),
                                       calls, repeats)}
    stepper = IntervalTracker(ByteTracker(frame_rate=7), propagator)
    detections = np.column_stack((boxes, np.full(tracks, 0.9)))

    def between(i: int) -> None:  # a detection frame before every step, so each step sees all the tracks
        stepper.update(first, detections)

    for _ in range(2):  # confirm the tracks
        stepper.update(first, detections)
    results["step"] = time_calls(lambda: stepper.step(second), calls, repeats, between)
    return results


def format_table(rows: dict[str, dict[str, float]]) -> str:
    header = f"{'what':<40}{'wall median':>12}{'wall best':>11}{'cpu median':>12}{'cpu best':>10}  (ms/call)"
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        lines.append(f"{name:<40}{r['wall_median_ms']:>12.4f}{r['wall_best_ms']:>11.4f}{r['cpu_median_ms']:>12.4f}"
                     f"{r['cpu_best_ms']:>10.4f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=50, help="confirmed tracks for predict()")
    parser.add_argument("--flow-tracks", type=int, default=20, help="tracks for the flow step")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    rows = {f"predict(), {args.tracks} tracks": predict_speed(args.tracks, args.calls, args.repeats)}
    for camera_motion in (True, False):
        config = PropagationConfig(camera_motion=camera_motion)
        label = "with camera motion" if camera_motion else "no camera motion"
        for name, r in flow_speed(args.flow_tracks, args.calls, args.repeats, config).items():
            rows[f"{name}, {args.flow_tracks} tracks, {label}"] = r
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; OpenCV threads 1")
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"load_average": load, "rows": rows}, indent=1) + "\n")
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
