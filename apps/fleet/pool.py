"""Many streams on one machine: one command, a pool of worker processes, one fleet report.

``track SRC [SRC ...]`` (also a folder of videos, a glob, ``@list.txt`` or ``--sources FILE``) hands the sources to
``--workers N`` processes. Each worker loads the one model file (the int8 model is calibrated once, in the driver)
and serves its share of the streams, one thread per stream, all sharing the worker's ONNX Runtime session and its
threads. Every stream writes what a single-source ``track`` run writes into its own folder; the driver gathers a
:class:`~apps.fleet_report.FleetReport`. A source that fails is reported and the others go on; a worker that
dies is reported and its streams are restarted once in a fresh process.

:func:`track_many` is the embeddable form: it yields ``(source_id, frame_index, tracks)`` from all sources.
The same :func:`serve_streams` runs inside Ray actors (``apps.ray_fleet``).
"""
from __future__ import annotations

import argparse
import copy
import glob
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from int8track.apps.cli.tracker_options import tracker_config_from_args
from int8track.apps.fleet.report import (
    FleetReport,
    StreamReport,
    score_stream,
    stream_report_from_timing,
)
from int8track.apps.io.sources import (
    IMAGE_EXTENSIONS,
    STREAM_SCHEMES,
    FrameSource,
    ReadAhead,
    SourceError,
    open_source,
)
from int8track.apps.pipeline.profiler import StageProfiler
from int8track.apps.pipeline.run import OutputFilter, run_tracking, track_frames
from int8track.frames import VIDEO_EXTENSIONS
from int8track.tracker import ByteTracker, TrackerConfig

DEFAULT_TRACKER_FPS = 30.0  # as apps.track: image folders do not say their rate
#: How long the driver waits for a message before it looks at the workers' health.
POLL_S = 0.2
MAX_RESTARTS = 1

Emit = Callable[[tuple], None]


class FleetError(Exception):
    """A problem with the fleet's command line or source list; printed as one line."""


# ---- configuration -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """The one model file every worker loads, and how: ``path`` is a weights file (fp32) or the int8 ONNX file
    the driver calibrated; thresholds None keep the model's own; ``classes`` None keeps all."""

    path: str
    precision: str = "fp32"
    conf_thresh: float | None = None
    nms_thresh: float | None = None
    classes: tuple[int, ...] | None = None
    batched_path: str | None = None  # the same model with a dynamic batch dimension (``apps.batching``)
    # (h, w) every worker runs at: fitted to the first source's frames (``--imgsz``); None keeps the file's own
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be fp32 or int8, not {self.precision!r}")

    def load(self, num_threads: int | None):
        """The detector (ONNX Runtime, ``num_threads`` intra-op threads)."""
        from int8track.detectors import load_detector

        detector = load_detector(self.path, backend="onnxruntime", num_threads=num_threads,
                                 conf_thresh=self.conf_thresh, nms_thresh=self.nms_thresh)
        if self.input_size is not None:  # fp32: exported at that size once (cached); int8: already that size
            detector = detector.with_input_size(self.input_size)
        return detector.with_classes(None if self.classes is None else list(self.classes))


@dataclass(frozen=True)
class FleetConfig:
    """How the streams run. ``threads`` is the inference threads of the whole pool (None: one per core), divided
    evenly between the ``workers`` (None: one per core, at most one per stream)."""

    workers: int | None = None
    threads: int | None = None
    max_frames: int | None = None
    fps: float | None = None
    write_video: bool = True
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    output_filter: OutputFilter = field(default_factory=OutputFilter)
    batch: bool = False  # a worker runs its streams' frames through the detector as one batch

    def __post_init__(self) -> None:
        for name in ("workers", "threads", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, not {self.fps}")

    def with_batching(self) -> FleetConfig:
        return replace(self, batch=True)

    def num_workers(self, num_streams: int) -> int:
        return max(1, min(self.workers or os.cpu_count() or 1, num_streams))

    def threads_per_worker(self, num_streams: int) -> int:
        return max(1, (self.threads or os.cpu_count() or 1) // self.num_workers(num_streams))


@dataclass(frozen=True)
class StreamJob:
    """One source to serve: its id (unique in the fleet), what the user typed, and its output folder."""

    source_id: str
    location: str
    output_dir: str


# ---- sources -----------------------------------------------------------------------------------------------
def expand_sources(specs: Iterable[str], sources_file: str | Path | None = None) -> list[str]:
    """The sources named by ``specs`` and ``sources_file``, in order.

    ``@FILE`` (and ``sources_file``) is a text file with one source per line (blank lines and ``#`` comments
    skipped); a glob pattern is its sorted matches; a folder that holds videos or MOT sequences (and no images
    of its own) is those videos and sequences; anything else (a file, image folder, MOT sequence, camera index,
    URL) is one source. FleetError names the list file or pattern that gave nothing.
    """
    expanded: list[str] = []
    listed = [f"@{sources_file}"] if sources_file is not None else []
    for spec in [*specs, *listed]:
        if spec.startswith("@"):
            expanded.extend(expand_sources(_read_source_list(Path(spec[1:]))))
        elif _is_glob(spec) and not spec.lower().startswith(STREAM_SCHEMES):
            matches = sorted(glob.glob(os.path.expanduser(spec)))
            if not matches:
                raise FleetError(f"{spec}: no file matches this pattern")
            expanded.extend(expand_sources(matches))
        else:
            expanded.extend(_folder_members(Path(spec).expanduser()) or [spec])
    return expanded


def _read_source_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FleetError(f"{path}: cannot read the source list ({exc.strerror or exc})") from exc
    sources = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not sources:
        raise FleetError(f"{path}: the source list names no source")
    return sources


def _is_glob(spec: str) -> bool:
    return any(char in spec for char in "*?[")


def _folder_members(path: Path) -> list[str]:
    """A folder's videos and MOT sequences, when it is a collection rather than one image folder or sequence."""
    if not path.is_dir() or (path / "img1").is_dir():
        return []
    children = sorted(path.iterdir())
    if any(child.suffix.lower() in IMAGE_EXTENSIONS and child.is_file() for child in children):
        return []
    return [str(child) for child in children
            if (child.is_file() and child.suffix.lower() in VIDEO_EXTENSIONS) or (child / "img1").is_dir()]


def source_name(location: str) -> str:
    """A short name for a source's output folder, as ``open_source`` names it (without opening it)."""
    if location.isdigit():
        return f"camera{location}"
    if location.lower().startswith(STREAM_SCHEMES):
        return Path(location.split("?", maxsplit=1)[0].rstrip("/")).stem or "stream"
    path = Path(location)
    return path.name if path.is_dir() else path.stem


def plan_jobs(locations: Sequence[str], output_dir: str | Path) -> list[StreamJob]:
    """One job per source with a unique id (``name``, ``name-2``, ... for sources of the same name) and its own
    folder ``output_dir/<id>``."""
    jobs = []
    seen: dict[str, int] = {}
    for location in locations:
        name = source_name(location)
        seen[name] = seen.get(name, 0) + 1
        source_id = name if seen[name] == 1 else f"{name}-{seen[name]}"
        jobs.append(StreamJob(source_id, location, str(Path(output_dir) / source_id)))
    return jobs


# ---- one stream (runs inside a worker) ---------------------------------------------------------------------
class _ProgressSource(FrameSource):
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
    source = _ProgressSource(opened, lambda count: emit(("progress", job.source_id, count)))
    tracker = ByteTracker(config.tracker, frame_rate=source.info.fps or DEFAULT_TRACKER_FPS)
    try:
        if emit_tracks:
            return _emit_stream(job, source, detector, tracker, config, emit, base)
        return _write_stream(job, source, detector, tracker, config, base)
    except Exception as exc:  # one stream's failure must not take the worker's other streams down
        source.close()
        return replace(base, error=f"{job.location}: {type(exc).__name__}: {exc}")


def _write_stream(job: StreamJob, source: FrameSource, detector, tracker, config: FleetConfig,
                  base: StreamReport) -> StreamReport:
    output_dir = Path(job.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = source.info.name
    result = run_tracking(
        source, detector, tracker,
        output_filter=config.output_filter,
        results_path=output_dir / f"{stem}.txt",
        video_path=output_dir / f"{stem}.mp4" if config.write_video else None,
        max_frames=config.max_frames,
        progress=False,
        info={"model": detector.spec.name, "source_id": job.source_id,
              "input_size": "{}x{}".format(*detector.spec.input_size)},
    )
    report = replace(base, results_path=str(result.results_path) if result.results_path else None)
    if result.frames:
        result.report.save_json(output_dir / f"{stem}_timing.json")
        result.report.save_csv(output_dir / f"{stem}_timing.csv")
        report = stream_report_from_timing(report, result.report)
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
        for frame_id, _image, tracks in track_frames(source, detector, tracker, profiler=profiler, reader=reader):
            emit(("tracks", job.source_id, frame_id, config.output_filter(tracks)))
    except SourceError as exc:
        error = str(exc)
    wall = time.perf_counter() - start
    frames = profiler.num_frames
    info = {"wall_s": wall, "end_to_end_fps": frames / wall if wall > 0 else 0.0, "source_fps": source.info.fps,
            "dropped_frames": reader.dropped}
    report = stream_report_from_timing(base, profiler.report(info)) if frames else base
    return replace(report, error=error)


def serve_streams(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig, threads: int, emit: Emit,
                  emit_tracks: bool = False) -> None:
    """A worker's job: load ``model`` once and track every job on its own thread, sharing the detector (an ONNX
    Runtime session is safe to run from several threads). Emits ``("done", report_dict)`` once per job."""
    import cv2

    cv2.setNumThreads(threads)
    try:
        detector = model.load(threads)
    except Exception as exc:  # a model that does not load fails this worker's streams, with the reason
        for job in jobs:
            error = f"{model.path}: cannot load the model: {exc}"
            emit(("done", StreamReport(job.source_id, job.location, job.output_dir, error=error).to_dict()))
        return

    batcher = None
    if config.batch and model.batched_path is not None and len(jobs) > 1:
        from int8track.apps.fleet.batching import BatchingRunner
        from int8track.detectors.runtime import OrtRunner, create_session

        batcher = BatchingRunner(OrtRunner(create_session(model.batched_path, threads)), len(jobs))
        detector = copy.copy(detector)
        detector.runner = batcher

    def serve(job: StreamJob) -> None:
        try:
            report = run_stream(job, detector, config, emit, emit_tracks)
        finally:
            if batcher is not None:
                batcher.leave()
        emit(("done", report.to_dict()))

    workers = [threading.Thread(target=serve, args=(job,), name=f"stream-{job.source_id}") for job in jobs]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


def _worker_main(jobs: list[StreamJob], model: ModelRef, config: FleetConfig, threads: int,
                 channel: Any, emit_tracks: bool) -> None:
    """Entry point of a pool process: its streams' threads share its own pipe to the driver (one lock, so the
    messages of two threads never interleave)."""
    lock = threading.Lock()

    def emit(message: tuple) -> None:
        with lock:
            channel.send(message)

    try:
        serve_streams(jobs, model, config, threads, emit, emit_tracks)
    finally:
        channel.close()


# ---- the pool (driver side) --------------------------------------------------------------------------------
@dataclass
class _Worker:
    process: Any
    channel: Any  # the read end of its own pipe: a worker killed mid-message breaks only its own channel
    jobs: dict[str, StreamJob]  # the streams it has not finished


def partition(jobs: Sequence[StreamJob], num_workers: int) -> list[list[StreamJob]]:
    """Round-robin shares, so each worker gets an equal count of streams (within one)."""
    groups: list[list[StreamJob]] = [[] for _ in range(max(1, min(num_workers, len(jobs))))]
    for index, job in enumerate(jobs):
        groups[index % len(groups)].append(job)
    return groups


def pool_messages(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig,
                  emit_tracks: bool = False) -> Iterator[tuple]:
    """Run ``jobs`` on a pool of spawned processes and yield the messages they send, plus the driver's own:

    ``("started", worker_index, pid, source_ids)``, ``("progress", source_id, frames_read)``,
    ``("tracks", source_id, frame_index, tracks)`` (with ``emit_tracks``), ``("worker_died", worker_index, pid,
    exitcode, source_ids, restarting)`` and exactly one ``("done", report_dict)`` per job (a stream restarted
    after its worker died carries ``restarts``; one whose worker died twice carries the error).
    """
    if config.batch and model.batched_path is None:
        model = with_batched_model(model)
    context = multiprocessing.get_context("spawn")
    threads = config.threads_per_worker(len(jobs))
    workers: dict[int, _Worker] = {}
    restarts: dict[str, int] = {}
    next_index = 0

    def start(group: list[StreamJob]) -> tuple:
        nonlocal next_index
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_worker_main, args=(group, model, config, threads, writer, emit_tracks),
                                  name=f"int8track-worker-{next_index}", daemon=True)
        process.start()
        writer.close()  # the child holds the only write end, so its death reads as end of file here
        workers[next_index] = _Worker(process, reader, {job.source_id: job for job in group})
        next_index += 1
        return ("started", next_index - 1, process.pid, [job.source_id for job in group])

    def receive(message: tuple) -> tuple:
        if message[0] == "done":
            report = StreamReport.from_dict(message[1])
            for worker in workers.values():
                worker.jobs.pop(report.source_id, None)
            if restarts.get(report.source_id):
                message = ("done", replace(report, restarts=restarts[report.source_id]).to_dict())
        return message

    def ended(index: int) -> Iterator[tuple]:
        """The worker's channel is closed: it finished, or died (then its unfinished streams restart once)."""
        worker = workers.pop(index)
        worker.channel.close()
        worker.process.join(timeout=10)
        lost = list(worker.jobs.values())
        if not lost:
            return
        again = [job for job in lost if restarts.get(job.source_id, 0) < MAX_RESTARTS]
        yield ("worker_died", index, worker.process.pid, worker.process.exitcode,
               [job.source_id for job in lost], bool(again))
        for job in lost:
            if job not in again:
                error = f"worker process died ({_exit_reason(worker.process.exitcode)}) after a restart"
                yield ("done", replace(StreamReport(job.source_id, job.location, job.output_dir),
                                       error=error, restarts=restarts[job.source_id]).to_dict())
        for job in again:
            restarts[job.source_id] = restarts.get(job.source_id, 0) + 1
        if again:
            yield start(again)

    try:
        for group in partition(jobs, config.num_workers(len(jobs))):
            yield start(group)
        while workers:
            by_channel: dict[Any, int] = {worker.channel: index for index, worker in workers.items()}
            for ready in multiprocessing.connection.wait(list(by_channel), timeout=POLL_S):
                index = by_channel[ready]
                try:
                    message = workers[index].channel.recv()
                except (EOFError, OSError):  # closed, or cut off mid-message by the worker's death
                    yield from ended(index)
                    continue
                yield receive(message)
    finally:
        for worker in workers.values():
            worker.process.terminate()
        for worker in workers.values():
            worker.process.join(timeout=5)
            worker.channel.close()


def with_batched_model(model: ModelRef) -> ModelRef:
    """``model`` with its dynamic-batch export (made once, in the driver, beside the exported ONNX models)."""
    from int8track.apps.fleet.batching import batched_model_file
    from int8track.detectors.zoo import cache_dir

    path = batched_model_file(model.path, cache_dir() / "onnx", model.input_size)
    return replace(model, batched_path=str(path))


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def run_fleet(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig,
              on_message: Callable[[tuple], None] | None = None) -> FleetReport:
    """Run every job on the worker pool and return the fleet report (MOTA/IDF1 added where there is gt).

    ``on_message`` sees every pool message (see :func:`pool_messages`) as it arrives.
    """
    start = time.perf_counter()
    reports: dict[str, StreamReport] = {}
    failures: list[str] = []
    for message in pool_messages(jobs, model, config):
        if on_message is not None:
            on_message(message)
        if message[0] == "done":
            report = StreamReport.from_dict(message[1])
            reports[report.source_id] = report
        elif message[0] == "worker_died":
            _, index, pid, exitcode, source_ids, restarting = message
            failures.append(f"worker {index} (pid {pid}) died ({_exit_reason(exitcode)}) serving "
                            f"{', '.join(source_ids)}; " + ("restarted" if restarting else "not restarted"))
    wall = time.perf_counter() - start
    info = {"backend": "pool", "workers": config.num_workers(len(jobs)),
            "threads_per_worker": config.threads_per_worker(len(jobs)), "batch": config.batch,
            "precision": model.precision,
            "model": model.path, "wall_s": wall, "worker_failures": failures}
    return finish_report([reports[job.source_id] for job in jobs], info)


def finish_report(reports: Sequence[StreamReport], info: dict[str, Any]) -> FleetReport:
    """The fleet report with each stream scored against its ground truth where it has one."""
    scored = []
    for report in reports:
        try:
            scored.append(score_stream(report))
        except (OSError, ValueError) as exc:  # bad gt: report it, keep the stream's other numbers
            scored.append(replace(report, error=report.error or f"{report.location}: cannot score: {exc}"))
    return FleetReport(tuple(scored), info)


def track_many(sources: Sequence[str | int], model: ModelRef | str, config: FleetConfig | None = None
               ) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(source_id, frame_index, tracks)`` for every frame of every source, as the frames are tracked.

    ``model`` is a :class:`ModelRef` or a weights path (fp32, all classes). ``tracks`` is (M, 8) x1, y1, x2, y2,
    track_id, score, class, detection index, after the output filter; frame indices are 1-based per source.
    Sources run on the worker pool (``config.workers``) and nothing is written to disk; frames of different
    sources interleave, frames of one source come in order. A source that fails raises SourceError naming it
    once the others have finished.
    """
    config = config or FleetConfig()
    model = model if isinstance(model, ModelRef) else ModelRef(str(model))
    jobs = plan_jobs([str(source) for source in sources], ".")
    errors = []
    for message in pool_messages(jobs, model, config, emit_tracks=True):
        if message[0] == "tracks":
            yield message[1], message[2], message[3]
        elif message[0] == "done" and message[1]["error"] is not None:
            errors.append(f"{message[1]['source_id']}: {message[1]['error']}")
    if errors:
        raise SourceError("; ".join(errors))


# ---- command line (called from apps.track) -----------------------------------------------------------------
def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The many-source options of ``track``."""
    group = parser.add_argument_group("many sources")
    group.add_argument("--sources", type=Path, metavar="FILE",
                       help="text file with one source per line (also: @FILE as a source)")
    group.add_argument("--workers", type=int, metavar="N",
                       help="worker processes serving the sources (default: one per core, at most one per source)")
    group.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="run the workers as Ray actors on the cluster at ADDRESS (default: a local one); "
                            "needs pip install int8track[ray]")
    group.add_argument("--batch", action="store_true",
                       help="a worker runs the frames of its streams through the detector as one batch (fp32; "
                            "measured slower than one frame at a time on a 2-core CPU: see benchmarks/streams.py)")


def fleet_requested(args: argparse.Namespace) -> bool:
    """Whether the command line asks for more than today's one-source run."""
    if (args.sources is not None or args.workers is not None or args.ray is not None or args.batch
            or len(args.source) != 1):
        return True
    spec = args.source[0]
    return spec.startswith("@") or (_is_glob(spec) and not Path(spec).exists()) or bool(_folder_members(Path(spec)))


def fleet_main(args: argparse.Namespace) -> int:
    """``track`` over many sources: returns the exit code (0 when every stream ran without error)."""
    from int8track.apps.cli import track

    try:
        locations = expand_sources(args.source, args.sources)
        if not locations:
            raise FleetError("no source given (name sources, a folder, a glob, @FILE or --sources FILE)")
        tracker = tracker_config_from_args(args).replace(class_aware=args.class_aware)
        config = FleetConfig(workers=args.workers, threads=args.threads, max_frames=args.max_frames, fps=args.fps,
                             write_video=not args.no_video, tracker=tracker,
                             output_filter=OutputFilter(args.min_box_area, args.aspect_ratio_thresh),
                             batch=args.batch)
        output_dir = track._prepare_output_dir(args.output_dir or Path("runs") / "track" / "fleet")
        jobs = plan_jobs(locations, output_dir)
        model = prepare_model(args, locations)
        if args.ray is not None:
            from int8track.apps.fleet.ray_actors import run_fleet_ray

            report = run_fleet_ray(jobs, model, config, None if args.ray == "local" else args.ray)
        else:
            report = run_fleet(jobs, model, config, on_message=None if args.quiet else _print_progress)
    except (FleetError, track.UserError, OSError, ValueError, SourceError) as exc:
        return track._fail(exc, track.EXIT_USAGE)
    print(report.format_table())
    for line in report.info.get("worker_failures", []):
        print(f"track: warning: {line}", file=sys.stderr)
    for path in report.save(output_dir):
        print(f"wrote {path}")
    if report.failed:
        return track._fail(f"{len(report.failed)} of {len(report.streams)} streams failed: "
                           f"{', '.join(s.source_id for s in report.failed)} (see {output_dir})", track.EXIT_FAILED)
    return 0


def _print_progress(message: tuple) -> None:
    if message[0] == "done":
        report = StreamReport.from_dict(message[1])
        status = "ok" if report.ok else f"failed: {report.error}"
        print(f"track: {report.source_id}: {report.frames} frames, {status}", file=sys.stderr)
    elif message[0] == "worker_died":
        print(f"track: worker {message[1]} (pid {message[2]}) died ({_exit_reason(message[3])})", file=sys.stderr)


def prepare_model(args: argparse.Namespace, locations: Sequence[str]) -> ModelRef:
    """The model every worker loads, sized by ``--imgsz`` for the first source that opens (the fleet runs one
    input size; other frame shapes are letterboxed into it): the weights (fp32), or the int8 model calibrated
    once at that size, on ``--calib`` or that source, through the int8 cache (so a later run reuses it)."""
    from int8track.apps.cli import track
    from int8track.apps.cli.quantize import config_from_args, print_summary
    from int8track.apps.models.cache import Int8ModelCache, resolve_weights
    from int8track.apps.models.input_fit import PeekedSource, fit_detector
    from int8track.detectors import load_detector

    weights = resolve_weights(args.model, args.weights)
    detector = load_detector(str(weights), backend="onnxruntime", num_threads=args.threads,
                             conf_thresh=args.conf, nms_thresh=args.nms)  # also exports the ONNX file once
    classes = tuple(track._class_ids(args.classes, detector.spec.class_names))
    source = PeekedSource(_first_openable(locations, args.fps))
    try:
        fitted = fit_detector(detector.with_classes(list(classes)), args.imgsz, source.first.shape)
        size = fitted.input_size
        print(f"track: detector input {size[0]}x{size[1]} for every stream ({fitted.reason})", file=sys.stderr)
        if not args.int8:
            return ModelRef(str(weights), "fp32", args.conf, args.nms, classes, input_size=size)
        calibration = {"frames": args.calib_frames, "source": track._calibration_source(args, source)}
        cached = Int8ModelCache().get(fitted.detector, weights, lambda: track._calibration_frames(args, source),
                                      config_from_args(args), calibration, num_threads=args.threads,
                                      refresh=args.recalibrate)
    finally:
        source.close()
    verb = "reusing cached" if cached.reused else "calibrated and cached"
    print(f"track: {verb} int8 model {cached.path}, loaded by every worker", file=sys.stderr)
    print_summary(cached.quant_report, "track")
    return ModelRef(str(cached.path), "int8", args.conf, args.nms, classes, input_size=size)


def _first_openable(locations: Sequence[str], fps: float | None) -> FrameSource:
    for location in locations:
        try:
            return open_source(location, fps=fps)
        except (OSError, SourceError, ValueError):
            continue
    raise FleetError("no source can be opened to calibrate on; give --calib")
