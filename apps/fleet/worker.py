"""A fleet worker's job: load the model once and serve its streams, one thread each, sending typed messages."""
from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from int8track.apps.fleet.batching import BatchingRunner
from int8track.apps.fleet.config import FleetConfig, ModelRef, StreamJob
from int8track.apps.fleet.messages import Done, FleetMessage, Progress, Snapshot, Tracks
from int8track.apps.fleet.report import StreamReport, stream_report_from_timing
from int8track.apps.fleet.sharing import DeadlineGate, shared_by_deadline
from int8track.apps.io.mot_results import format_tracks
from int8track.apps.io.read_ahead import ReadAhead
from int8track.apps.io.sources import FrameSource, SourceError, open_source
from int8track.apps.pipeline.profiler import StageProfiler
from int8track.apps.pipeline.run import Resume, run_tracking, track_frames
from int8track.detectors.runtime import OrtRunner, create_session
from int8track.frames import FALLBACK_FRAME_RATE
from int8track.tracker import ByteTracker, TrackerState
from int8track.tracker.cmc import DEFAULT_CMC_CONFIG, CmcTracker

Emit = Callable[[FleetMessage], None]


class ProgressSource(FrameSource):
    """A source that reports each frame it reads, so the driver sees a stream advance."""

    def __init__(self, source: FrameSource, on_frame: Callable[[int], None]) -> None:
        self._source = source
        self._on_frame = on_frame
        self._count = 0
        self.info = source.info

    def read(self) -> np.ndarray | None:
        image = self._source.read()
        if image is not None:
            self._count += 1
            self._on_frame(self._count)
        return image

    def skip(self, count: int) -> int:
        skipped = self._source.skip(count)
        if skipped:
            self._count += skipped
            self._on_frame(self._count)
        return skipped

    def close(self) -> None:
        self._source.close()


def run_stream(job: StreamJob, detector, config: FleetConfig, emit: Emit, emit_tracks: bool = False) -> StreamReport:
    """Track one source with ``detector`` and return its report; never raises for a bad source.

    Writes into ``job.output_dir`` what ``track`` writes for one source (MOT results, video unless
    ``config.write_video`` is off, timing JSON/CSV). With ``emit_tracks`` nothing is written and every frame's
    written tracks go to ``emit(("tracks", source_id, frame_index, tracks))`` instead.
    """
    base = StreamReport(job.source_id, job.location, job.output_dir, worker=f"pid {os.getpid()}")
    try:
        opened = open_source(job.location, fps=config.fps)
    except (OSError, SourceError, ValueError) as exc:
        return replace(base, error=str(exc))
    # a resumed recorded source reads past the frames done through this wrapper (``Resume.skip``), so its count is
    # the frame index already; a live one goes on with the next frame received, numbered after the snapshot's
    done = job.resume.frame_id if job.resume is not None and opened.info.is_live else 0
    source = ProgressSource(opened, lambda count: emit(Progress(job.source_id, done + count)))
    try:
        if job.resume is not None:  # the same tracks, ids and counters as when the snapshot was taken
            tracker = ByteTracker.from_state(TrackerState.from_bytes(job.resume.tracker_state))
        else:
            tracker = ByteTracker(config.tracker, frame_rate=source.info.fps or FALLBACK_FRAME_RATE)
        compensated = CmcTracker(tracker, DEFAULT_CMC_CONFIG) if config.cmc_for(source.info.is_live) else None
        if compensated is not None and job.resume is not None and job.resume.motion_state:
            compensated.load_motion_state(job.resume.motion_state)  # the previous frame, as when snapshotted
        if emit_tracks:
            return _emit_stream(job, source, detector, compensated or tracker, config, emit, base)
        return _write_stream(job, source, detector, compensated or tracker, config, base, emit)
    except Exception as exc:  # one stream's failure must not take the worker's other streams down
        source.close()
        return replace(base, error=f"{source.info.display}: {type(exc).__name__}: {exc}")


class _Snapshots:
    """Sends the stream's tracker state (with a ``CmcTracker``, its camera motion state too) and the MOT lines
    written since the last one every ``every_s`` seconds."""

    def __init__(self, job: StreamJob, tracker: ByteTracker | CmcTracker, every_s: float, emit: Emit) -> None:
        self._job, self._tracker, self._every_s, self._emit = job, tracker, every_s, emit
        self._lines: list[str] = []
        self._last = time.perf_counter()

    def __call__(self, frame_id: int, tracks: np.ndarray) -> None:
        self._lines.append(format_tracks(frame_id, tracks))
        if time.perf_counter() - self._last < self._every_s:
            return
        tracker = self._tracker
        if isinstance(tracker, CmcTracker):
            state, motion = tracker.tracker.state_dict().to_bytes(), tracker.motion_state()
        else:
            state, motion = tracker.state_dict().to_bytes(), b""
        self._emit(Snapshot(self._job.source_id, frame_id, state, "".join(self._lines), motion))
        self._lines.clear()
        self._last = time.perf_counter()


def _write_stream(job: StreamJob, source: FrameSource, detector, tracker, config: FleetConfig,
                  base: StreamReport, emit: Emit) -> StreamReport:
    output_dir = Path(job.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = source.info.name
    previous = job.resume
    resume = Resume(previous.frame_id if previous else 0, previous.mot_text if previous else "",
                    on_frame=_Snapshots(job, tracker, config.snapshot_every_s, emit))
    result = run_tracking(
        source, detector, tracker,
        output_filter=config.output_filter,
        results_path=output_dir / f"{stem}.txt",
        video_path=output_dir / f"{stem}.mp4" if config.write_video else None,
        max_frames=config.max_frames,
        progress=False,
        schedule=config.schedule_for(source.info.is_live),
        resume=resume,
        info={"model": detector.spec.name, "source_id": job.source_id, "resumed_after_frame": resume.frame_id,
              "input_size": "{}x{}".format(*detector.spec.input_size)},
    )
    report = replace(base, results_path=str(result.results_path) if result.results_path else None)
    if result.frames:
        result.report.save_json(output_dir / f"{stem}_timing.json")
        result.report.save_csv(output_dir / f"{stem}_timing.csv")
        report = stream_report_from_timing(report, result.report)
    report = replace(report, frames=resume.frame_id + report.frames)  # a resumed stream counts its earlier frames
    if result.error is not None:
        report = replace(report, error=str(result.error))
    return report


def _emit_stream(job: StreamJob, source: FrameSource, detector, tracker, config: FleetConfig, emit: Emit,
                 base: StreamReport) -> StreamReport:
    profiler = StageProfiler()
    reader = ReadAhead(source, max_frames=config.max_frames)
    start = time.perf_counter()
    error = None
    try:
        tracked = track_frames(source, detector, tracker, profiler=profiler, reader=reader,
                              schedule=config.schedule_for(source.info.is_live))
        for frame_id, _image, tracks in tracked:
            emit(Tracks(job.source_id, frame_id, config.output_filter(tracks)))
    except SourceError as exc:
        error = str(exc)
    wall = time.perf_counter() - start
    frames = profiler.num_frames
    info = {"wall_s": wall, "end_to_end_fps": frames / wall if wall > 0 else 0.0, "source_fps": source.info.fps,
            "dropped_frames": reader.dropped}
    report = stream_report_from_timing(base, profiler.report(info)) if frames else base
    return replace(report, error=error)


def serve_streams(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig, threads: int, emit: Emit,
                  emit_tracks: bool = False, detector=None) -> None:
    """A worker's job: load ``model`` once (unless ``detector`` is it, loaded already) and track every job on its
    own thread, sharing the detector: one call at a time, the stream whose detection is most overdue first
    (``apps.fleet.sharing``), or batched (``config.batch``). Emits one ``Done`` per job."""
    cv2.setNumThreads(threads)
    try:
        detector = detector or model.load(threads)
    except Exception as exc:  # a model that does not load fails this worker's streams, with the reason
        for job in jobs:
            error = f"{model.path}: cannot load the model: {exc}"
            emit(Done(StreamReport(job.source_id, job.location, job.output_dir, error=error)))
        return

    batcher = None
    if config.batch and model.batched_path is not None and len(jobs) > 1:
        batcher = BatchingRunner(OrtRunner(create_session(model.batched_path, threads)), len(jobs))
        detector = copy.copy(detector)
        detector.runner = batcher
    gate = DeadlineGate() if batcher is None and len(jobs) > 1 else None

    def serve(job: StreamJob) -> None:
        stream_detector = detector if gate is None else shared_by_deadline(detector, gate)
        try:
            report = run_stream(job, stream_detector, config, emit, emit_tracks)
        finally:
            if batcher is not None:
                batcher.leave()
        emit(Done(report))

    workers = [threading.Thread(target=serve, args=(job,), name=f"stream-{job.source_id}") for job in jobs]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


def worker_main(jobs: list[StreamJob] | None, model: ModelRef, config: FleetConfig, threads: int,
                channel: Any, emit_tracks: bool, assign: Any = None) -> None:
    """Entry point of a pool process: its streams' threads share its own pipe to the driver (one lock, so the
    messages of two threads never interleave).

    ``jobs`` None makes a warm spare: it loads the model now and waits for the jobs on ``assign`` (the read end
    of a pipe from the driver; None or a closed pipe: exit), so a stream whose worker died resumes without
    waiting for a process start and a model load."""
    lock = threading.Lock()

    def emit(message: FleetMessage) -> None:
        with lock:
            channel.send(message)

    try:
        detector = None
        if jobs is None:
            cv2.setNumThreads(threads)
            try:
                detector = model.load(threads)
            except Exception:  # noqa: BLE001 - serve_streams loads it again and reports why to each stream
                detector = None
            try:
                jobs = assign.recv()
            except (EOFError, OSError):
                jobs = None
            if jobs is None:
                return
        serve_streams(jobs, model, config, threads, emit, emit_tracks, detector)
    finally:
        channel.close()
