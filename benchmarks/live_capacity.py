"""How many real-time cameras one machine serves with every frame tracked, detector on every frame vs auto.

Each camera is vtest.avi (its first ``--frames`` frames; default all 795) delivered in real time at ``--fps`` (a
paced source marked live: the reader drops the oldest frame when the pipeline falls behind, as with a real camera).
``N`` cameras run at once, one thread each, split between ``--workers`` processes as ``track SRC... --workers``
splits them (default: the fleet's, one worker per core, at most one per stream; ``--threads`` divided between them).
The streams of one worker share its detector (ONNX Runtime) as a fleet worker does: one call at a time, the stream
whose detection is most overdue first (``apps.fleet.sharing``). ``--workers 1`` runs them all in this process (one
session with all the threads: the layout of the runs before 2026-12-08). A camera counts as served when at most 1%
of its frames were dropped and its MOTA (PETS09-S2L1 gt, the same frames) is at most ``--max-loss`` below the
every-frame detector run offline (no frame dropped); ``--rule mean`` asks that of the cameras' mean MOTA instead (a
camera's MOTA on a short clip moves with which of its frames went without a detector call, so the worst of N cameras
falls with N even where the mean holds). The largest N with every camera served is the machine's capacity; 100
cameras need ceil(100 / capacity) machines. ``--costs`` adds the load-independent side: unpaced runs with the
detector every K-th frame, their MOTA and CPU time per frame.

    python benchmarks/live_capacity.py [--max-streams 12] [--frames N] [--json runs/live_capacity/report.json]

Each (mode, N) takes ``frames / fps`` seconds; a busy machine gives a pessimistic capacity (load is printed).
Short clips are noisy: on vtest.avi the MOTA of the detector every other frame against every frame moves from
-1.4 (first 200 frames) to -0.1 (300) and -0.7 (400), and the cameras' spread at one load is 1.7 points on 400
frames against 1.2-1.4 on all 795 (benchmarks/README.md), so the default is the whole video.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Empty
from typing import Any

import cv2
import numpy as np

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import require_path, write_json_and_csv  # noqa: E402
from benchmarks.int8_front_door import DEFAULT_SEQUENCE, DEFAULT_VIDEO, DEFAULT_WEIGHTS, score  # noqa: E402
from int8track.apps.fleet.config import FleetConfig  # noqa: E402
from int8track.apps.fleet.pool import partition  # noqa: E402
from int8track.apps.fleet.sharing import DeadlineGate, shared_by_deadline  # noqa: E402
from int8track.apps.io.sources import FrameSource, SourceInfo, open_source  # noqa: E402
from int8track.apps.models.input_fit import PeekedSource  # noqa: E402
from int8track.apps.models.request import ModelRequest, prepare_detector  # noqa: E402
from int8track.apps.pipeline.run import run_tracking  # noqa: E402
from int8track.frames import video_frames  # noqa: E402
from int8track.tracker import ByteTracker  # noqa: E402
from int8track.tracker.schedule import DetectionSchedule  # noqa: E402

MODES = {"every frame": DetectionSchedule(), "auto": DetectionSchedule.parse("auto")}
COLUMNS = ["mode", "streams", "workers", "threads_per_worker", "served", "min_MOTA", "mean_MOTA", "max_drop_pct",
           "mean_detector_calls_per_frame", "load", "load_after"]


class PacedSource(FrameSource):
    """Decoded frames released at ``fps`` from the first read on, as a camera delivers them (live)."""

    def __init__(self, frames: list[np.ndarray], fps: float, name: str) -> None:
        self._frames, self._period, self._next = frames, 1.0 / fps, 0
        self._start: float | None = None
        self.info = SourceInfo(name, "camera", name, fps, None, True)

    def read(self) -> np.ndarray | None:
        if self._next >= len(self._frames):
            return None
        if self._start is None:
            self._start = time.perf_counter()
        wait = self._start + self._next * self._period - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self._next += 1
        return self._frames[self._next - 1]

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class WorkerGroup:
    """The cameras one worker process serves (their numbers) and how."""

    cameras: tuple[int, ...]
    video: Path
    frames: int | None  # the first this many of the video (None: all)
    weights: Path
    threads: int
    fps: float
    schedule: DetectionSchedule
    out: Path


def load_detector_for(video: Path, weights: Path, threads: int):
    """The detector as ``track`` prepares it for ``video`` (fitted input size), with ``threads`` threads."""
    with open_source(str(video)) as opened:
        return prepare_detector(ModelRequest(weights=weights, threads=threads), PeekedSource(opened)).detector


def serve_group(group: WorkerGroup, ready: Any, start: Any, results: Any) -> None:
    """A worker process: load the detector, report ready, wait for the common start, serve the group's cameras
    (one thread each, sharing the detector by deadline) and put ``(camera, row)`` pairs on ``results``. A failure
    is put on the queue it would have answered, as a one-line message (the driver raises it)."""
    where = f"worker for cameras {list(group.cameras)}"
    try:
        cv2.setNumThreads(group.threads)  # as apps.fleet.worker.serve_streams
        frames = video_frames(group.video, num=group.frames, step=1)
        detector = load_detector_for(group.video, group.weights, group.threads)
    except Exception as exc:  # noqa: BLE001 - the driver reports it instead of waiting forever
        ready.put(f"{where}: {exc}")
        return
    ready.put(None)
    start.wait()
    try:
        rows = run_streams(group.cameras, frames, group.fps, detector, group.schedule, group.out)
    except Exception as exc:  # noqa: BLE001 - as above
        results.put(f"{where}: {type(exc).__name__}: {exc}")
        return
    results.put(list(zip(group.cameras, rows)))


def collect(queue: Any, processes: list[Any]) -> list[Any]:
    """One item per process from ``queue``; RuntimeError when a process died without putting its item (killed, or
    crashed in the interpreter), instead of waiting for it forever."""
    items: list[Any] = []
    while len(items) < len(processes):
        try:
            items.append(queue.get(timeout=1.0))
        except Empty:
            dead = [p.exitcode for p in processes if p.exitcode is not None and p.exitcode != 0]
            if dead:
                raise RuntimeError(f"a worker process exited with code {dead[0]} before it answered") from None
    return items


def run_workers(groups: list[WorkerGroup]) -> list[dict]:
    """Each group in its own spawned process (as the fleet's pool), all started together once every one has
    loaded its detector; the streams' rows in camera order."""
    context = multiprocessing.get_context("spawn")
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=serve_group, args=(group, ready, start, results)) for group in groups]
    for process in processes:
        process.start()
    try:
        errors = [error for error in collect(ready, processes) if error]
        if errors:
            raise RuntimeError("; ".join(errors))
        start.set()
        answers = collect(results, processes)
        errors = [answer for answer in answers if isinstance(answer, str)]
        if errors:
            raise RuntimeError("; ".join(errors))
        rows = dict(pair for answer in answers for pair in answer)
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return [rows[camera] for camera in sorted(rows)]


def run_streams(cameras: Sequence[int], frames: list[np.ndarray], fps: float, detector,
                schedule: DetectionSchedule, out: Path) -> list[dict]:
    """The paced ``cameras`` tracked at once in this process; per camera its results file, drops and detector
    calls."""
    results: list[dict] = [{} for _ in cameras]
    gate = DeadlineGate() if len(cameras) > 1 else None  # as apps.fleet.worker.serve_streams shares it

    def serve(offset: int) -> None:
        index = cameras[offset]
        source = PacedSource(frames, fps, f"cam{index}")
        tracker = ByteTracker(frame_rate=fps)
        path = out / f"cam{index}.txt"
        stream_detector = detector if gate is None else shared_by_deadline(detector, gate)
        run = run_tracking(source, stream_detector, tracker, results_path=path, progress=False, schedule=schedule)
        info = run.report.info
        results[offset] = {"results": path, "frames": run.frames, "dropped": run.dropped,
                           "detector_calls": info["detector_calls"]}

    threads = [threading.Thread(target=serve, args=(offset,)) for offset in range(len(cameras))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def offline_costs(frames: list[np.ndarray], fps: float, detector, sequence: Path, work: Path,
                  intervals: tuple[int, ...] = (1, 2, 3)) -> list[dict]:
    """The same frames unpaced with the detector on every K-th frame: MOTA (deterministic) and the process's CPU
    time per frame (all threads: ONNX Runtime's too), which bounds the streams a machine can serve whatever else
    runs on it: ``cores / (fps * CPU per frame)``. CPU time still grows somewhat under load (caches, and ONNX
    Runtime's threads spin while they wait), so this bound is optimistic only where the machine is quiet."""
    rows = []
    cores = os.cpu_count() or 1
    for every in intervals:
        source = PacedSource(frames, 1e9, f"offline_k{every}")
        source.info = replace(source.info, is_live=False, frame_count=len(frames))
        path = work / f"offline_k{every}.txt"
        cpu, wall = time.process_time(), time.perf_counter()
        run_tracking(source, detector, ByteTracker(frame_rate=fps), results_path=path, progress=False,
                     schedule=DetectionSchedule(every=every))
        cpu_ms = 1000 * (time.process_time() - cpu) / len(frames)
        wall_ms = 1000 * (time.perf_counter() - wall) / len(frames)
        rows.append({"every": every, "MOTA": score(path, sequence, len(frames))["MOTA"], "cpu_ms_per_frame": cpu_ms,
                     "wall_ms_per_frame": wall_ms, "streams_by_cpu": cores * 1000 / (fps * cpu_ms),
                     "load": os.getloadavg()[0]})
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
              file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--sequence", type=Path, default=DEFAULT_SEQUENCE)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--frames", type=int, help="the video's first N frames (default: all)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="inference threads of all the workers together (default: one per core)")
    parser.add_argument("--workers", type=int, help="worker processes (default: the fleet's, one per core, at "
                        "most one per stream); 1: every stream in this process")
    parser.add_argument("--max-streams", type=int, default=12)
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {', '.join(MODES)}")
    parser.add_argument("--first-streams", type=int, default=1, help="start each mode at this many streams")
    parser.add_argument("--max-loss", type=float, default=1.0, help="MOTA points a served camera may lose")
    parser.add_argument("--rule", choices=("worst", "mean"), default="worst",
                        help="--max-loss holds for every camera (default) or for the cameras' mean MOTA")
    parser.add_argument("--costs", action="store_true", help="also K=1,2,3 unpaced: MOTA and CPU per frame")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    frames = video_frames(require_path(args.video, "video"), num=args.frames, step=1)
    weights = require_path(args.weights, "weights")
    detector = load_detector_for(args.video, weights, args.threads)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        offline = PacedSource(frames, 1e9, "offline")  # no pacing: every frame, the reference
        offline.info = replace(offline.info, is_live=False, frame_count=len(frames))
        run_tracking(offline, detector, ByteTracker(frame_rate=args.fps), results_path=work / "offline.txt",
                     progress=False)
        reference = score(work / "offline.txt", args.sequence, len(frames))["MOTA"]
        print(f"offline every-frame MOTA on {len(frames)} frames: {reference:.1f}", file=sys.stderr)
        costs = offline_costs(frames, args.fps, detector, args.sequence, work) if args.costs else []
        capacity = {}
        for mode, schedule in MODES.items():
            if mode not in args.modes.split(","):
                continue
            for count in range(args.first_streams, args.max_streams + 1):
                out = work / f"{mode.replace(' ', '_')}_{count}"
                out.mkdir()
                load = os.getloadavg()[0]  # the 1-minute average before the run; load_after below
                fleet = FleetConfig(workers=args.workers, threads=args.threads)
                workers, threads = fleet.num_workers(count), fleet.threads_per_worker(count)
                groups = partition(list(range(count)), workers)  # as the fleet's pool shares out its streams
                if len(groups) == 1:
                    streams = run_streams(groups[0], frames, args.fps, detector, schedule, out)
                else:
                    streams = run_workers([WorkerGroup(tuple(cameras), args.video, args.frames, weights, threads,
                                                       args.fps, schedule, out) for cameras in groups])
                motas = [score(s["results"], args.sequence, len(frames))["MOTA"] for s in streams]
                drops = [100 * s["dropped"] / len(frames) for s in streams]
                judged = min(motas) if args.rule == "worst" else float(np.mean(motas))
                served = all(d <= 1.0 for d in drops) and judged >= reference - args.max_loss
                calls = [s["detector_calls"] / max(1, s["frames"]) for s in streams]
                row = {"mode": mode, "streams": count, "workers": workers, "threads_per_worker": threads,
                       "served": served, "min_MOTA": min(motas), "mean_MOTA": float(np.mean(motas)),
                       "max_drop_pct": max(drops), "mean_detector_calls_per_frame": float(np.mean(calls)),
                       "load": load, "load_after": os.getloadavg()[0],
                       # each camera's own: a clip's MOTA moves with which frames went without a detector call
                       "stream_MOTA": [round(m, 2) for m in motas],
                       "stream_calls_per_frame": [round(c, 2) for c in calls]}
                rows.append(row)
                print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      file=sys.stderr, flush=True)
                if not served:
                    break
                capacity[mode] = count
    print(f"{'mode':<14}{'cameras served':>16}{'machines for 100':>18}")
    for mode in MODES:
        served = capacity.get(mode, 0)
        machines = math.ceil(100 / served) if served else float("inf")
        print(f"{mode:<14}{served:>16}{machines:>18}")
    if "every frame" in capacity and "auto" in capacity:
        print(f"auto serves {capacity['auto'] / capacity['every frame']:.1f}x the cameras of every-frame detection")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json_and_csv(args.json.with_suffix(""), {"reference_MOTA": reference, "capacity": capacity,
                                                       "offline_costs": costs, "rows": rows}, rows, COLUMNS)
    return rows


if __name__ == "__main__":
    main()
