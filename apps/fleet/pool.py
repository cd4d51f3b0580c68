"""Many streams on one machine: a pool of worker processes serving the streams, and one fleet report.

``track SRC [SRC ...]`` hands the sources to ``--workers N`` processes. Each worker loads the one model file (the
int8 model is calibrated once, in the driver) and serves its share of the streams, one thread per stream, all
sharing the worker's ONNX Runtime session and its threads (``apps.fleet.worker``). Every stream writes what a
single-source ``track`` run writes into its own folder; the driver gathers a
:class:`~int8track.apps.fleet.report.FleetReport`. A source that fails is reported and the others go on; a worker
that dies is reported and its streams are restarted once in a fresh process.

:func:`track_many` is the embeddable form: it yields ``(source_id, frame_index, tracks)`` from all sources.
The same worker runs inside Ray actors (``apps.fleet.ray_actors``).
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from int8track.apps.fleet.batching import batched_model_file
from int8track.apps.fleet.config import FleetConfig, ModelRef, ResumePoint, StreamJob
from int8track.apps.fleet.jobs import plan_jobs
from int8track.apps.fleet.messages import Done, FleetMessage, Snapshot, Started, Tracks, WorkerDied
from int8track.apps.fleet.report import FleetReport, StreamReport, score_stream
from int8track.apps.fleet.worker import worker_main
from int8track.apps.io.sources import SourceError
from int8track.detectors.zoo import cache_dir

#: How long the driver waits for a message before it looks at the workers' health.
POLL_S = 0.2
#: A stream resumes from its last snapshot after its worker dies, at most this many times.
MAX_RESTARTS = 3


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


class _Pool:
    """The driver's side of the worker processes: starts them, reads their channels, restarts the streams of a
    worker that died (once)."""

    def __init__(self, model: ModelRef, config: FleetConfig, threads: int, emit_tracks: bool) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._model, self._config, self._threads, self._emit_tracks = model, config, threads, emit_tracks
        self.workers: dict[int, _Worker] = {}
        self._restarts: dict[str, int] = {}
        self._resume: dict[str, ResumePoint] = {}  # each stream's last snapshot, with all MOT lines up to it
        self._next_index = 0

    def start(self, group: list[StreamJob]) -> Started:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=worker_main, args=(group, self._model, self._config, self._threads, writer, self._emit_tracks),
            name=f"int8track-worker-{self._next_index}", daemon=True)
        process.start()
        writer.close()  # the child holds the only write end, so its death reads as end of file here
        index = self._next_index
        self.workers[index] = _Worker(process, reader, {job.source_id: job for job in group})
        self._next_index += 1
        return Started(index, process.pid, tuple(job.source_id for job in group))

    def receive(self, message: FleetMessage) -> FleetMessage:
        if isinstance(message, Snapshot):
            before = self._resume.get(message.source_id)
            text = (before.mot_text if before is not None else "") + message.mot_lines
            self._resume[message.source_id] = ResumePoint(message.frame_id, message.tracker_state, text)
        if isinstance(message, Done):
            source_id = message.report.source_id
            for worker in self.workers.values():
                worker.jobs.pop(source_id, None)
            if self._restarts.get(source_id):
                message = Done(replace(message.report, restarts=self._restarts[source_id]))
        return message

    def ended(self, index: int) -> Iterator[FleetMessage]:
        """The worker's channel is closed: it finished, or died (then its unfinished streams restart once)."""
        worker = self.workers.pop(index)
        worker.channel.close()
        worker.process.join(timeout=10)
        lost = list(worker.jobs.values())
        if not lost:
            return
        again = [job for job in lost if self._restarts.get(job.source_id, 0) < MAX_RESTARTS]
        yield WorkerDied(index, worker.process.pid, worker.process.exitcode, tuple(job.source_id for job in lost),
                         bool(again))
        for job in lost:
            if job not in again:
                error = f"worker process died ({exit_reason(worker.process.exitcode)}) after a restart"
                yield Done(StreamReport(job.source_id, job.location, job.output_dir, error=error,
                                        restarts=self._restarts[job.source_id]))
        for job in again:
            self._restarts[job.source_id] = self._restarts.get(job.source_id, 0) + 1
        if again:  # each from its last snapshot: no frame tracked twice, the same ids go on
            yield self.start([replace(job, resume=self._resume.get(job.source_id, job.resume)) for job in again])

    def messages(self) -> Iterator[FleetMessage]:
        """Every message of the running workers until all have ended."""
        while self.workers:
            by_channel: dict[Any, int] = {worker.channel: index for index, worker in self.workers.items()}
            for ready in multiprocessing.connection.wait(list(by_channel), timeout=POLL_S):
                index = by_channel[ready]
                try:
                    message = self.workers[index].channel.recv()
                except (EOFError, OSError):  # closed, or cut off mid-message by the worker's death
                    yield from self.ended(index)
                    continue
                yield self.receive(message)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.process.terminate()
        for worker in self.workers.values():
            worker.process.join(timeout=5)
            worker.channel.close()


def pool_messages(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig,
                  emit_tracks: bool = False) -> Iterator[FleetMessage]:
    """Run ``jobs`` on a pool of spawned processes and yield the messages they send, plus the driver's own
    (``apps.fleet.messages``): ``Started`` per worker, ``Progress``, ``Tracks`` (with ``emit_tracks``),
    ``WorkerDied`` and exactly one ``Done`` per job (a stream restarted after its worker died carries
    ``restarts``; one whose worker died twice carries the error)."""
    if config.batch and model.batched_path is None:
        model = with_batched_model(model)
    pool = _Pool(model, config, config.threads_per_worker(len(jobs)), emit_tracks)
    try:
        for group in partition(jobs, config.num_workers(len(jobs))):
            yield pool.start(group)
        yield from pool.messages()
    finally:
        pool.stop()


def with_batched_model(model: ModelRef) -> ModelRef:
    """``model`` with its dynamic-batch export (made once, in the driver, beside the exported ONNX models)."""
    path = batched_model_file(model.path, cache_dir() / "onnx", model.input_size)
    return replace(model, batched_path=str(path))


def exit_reason(exitcode: int | None) -> str:
    """How a worker process ended, in words."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def run_fleet(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig,
              on_message: Callable[[FleetMessage], None] | None = None) -> FleetReport:
    """Run every job on the worker pool and return the fleet report (MOTA/IDF1 added where there is gt).

    ``on_message`` sees every pool message (see :func:`pool_messages`) as it arrives.
    """
    start = time.perf_counter()
    reports: dict[str, StreamReport] = {}
    failures: list[str] = []
    for message in pool_messages(jobs, model, config):
        if on_message is not None:
            on_message(message)
        if isinstance(message, Done):
            reports[message.report.source_id] = message.report
        elif isinstance(message, WorkerDied):
            failures.append(f"worker {message.worker_index} (pid {message.pid}) died ({exit_reason(message.exitcode)}) "
                            f"serving {', '.join(message.source_ids)}; "
                            + ("restarted" if message.restarting else "not restarted"))
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
        if isinstance(message, Tracks):
            yield message.source_id, message.frame_index, message.tracks
        elif isinstance(message, Done) and message.report.error is not None:
            errors.append(f"{message.report.source_id}: {message.report.error}")
    if errors:
        raise SourceError("; ".join(errors))
