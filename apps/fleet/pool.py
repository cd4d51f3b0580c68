"""Many streams on one machine: a pool of worker processes serving the streams, and one fleet report.

``track SRC [SRC ...]`` hands the sources to ``--workers N`` processes. Each worker loads the one model file (the
int8 model is calibrated once, in the driver) and serves its share of the streams, one thread per stream, all
sharing the worker's ONNX Runtime session and its threads (``apps.fleet.worker``). Every stream writes what a
single-source ``track`` run writes into its own folder; the driver gathers a
:class:`~int8track.apps.fleet.report.FleetReport`. A source that fails is reported and the others go on; a worker
that dies is reported and its streams resume in a fresh process from their last snapshot
(``apps.fleet.failover``: the same ids, every frame once in the MOT file), each failover in the report.

:func:`track_many` is the embeddable form: it yields ``(source_id, frame_index, tracks)`` from all sources.
The same worker runs inside Ray actors (``apps.fleet.ray_actors``).
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from int8track.apps.fleet.batching import batched_model_file
from int8track.apps.fleet.config import FleetConfig, ModelRef, StreamJob
from int8track.apps.fleet.failover import FailoverLedger
from int8track.apps.fleet.jobs import plan_jobs
from int8track.apps.fleet.messages import Done, FleetMessage, Started, Tracks, WorkerDied
from int8track.apps.fleet.report import Failover, FleetReport, StreamReport, score_stream
from int8track.apps.fleet.worker import worker_main
from int8track.apps.io.sources import SourceError
from int8track.detectors.zoo import cache_dir

#: How long the driver waits for a message before it looks at the workers' health.
POLL_S = 0.2

Job = TypeVar("Job")  # what ``partition`` shares out: stream jobs, or camera numbers in a benchmark


@dataclass
class _Spare:
    process: Any
    channel: Any  # its messages, once it serves streams
    assign: Any  # the write end of the pipe that hands it its streams


@dataclass
class _Worker:
    process: Any
    channel: Any  # the read end of its own pipe: a worker killed mid-message breaks only its own channel
    jobs: dict[str, StreamJob]  # the streams it has not finished


def partition(jobs: Sequence[Job], num_workers: int) -> list[list[Job]]:
    """Round-robin shares, so each worker gets an equal count of streams (within one)."""
    groups: list[list[Job]] = [[] for _ in range(max(1, min(num_workers, len(jobs))))]
    for index, job in enumerate(jobs):
        groups[index % len(groups)].append(job)
    return groups


class _Pool:
    """The driver's side of the worker processes: starts them, reads their channels, resumes the streams of a
    worker that died from their last snapshots on a fresh one (``ledger``)."""

    def __init__(self, model: ModelRef, config: FleetConfig, threads: int, emit_tracks: bool,
                 ledger: FailoverLedger) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._model, self._config, self._threads, self._emit_tracks = model, config, threads, emit_tracks
        self.workers: dict[int, _Worker] = {}
        self._ledger = ledger
        self._next_index = 0
        self.spare: _Spare | None = None

    def start(self, group: list[StreamJob]) -> Started:
        """A worker for ``group``: the warm spare when there is one (then a new spare starts), else a new process."""
        process, channel = self._take_spare(group) or self._spawn(group)[:2]
        index = self._next_index
        self.workers[index] = _Worker(process, channel, {job.source_id: job for job in group})
        self._next_index += 1
        return Started(index, process.pid, tuple(job.source_id for job in group))

    def start_spare(self) -> None:
        """With ``config.spare_worker``: one process started ahead, its model loaded, waiting for streams."""
        if self._config.spare_worker:
            self.spare = _Spare(*self._spawn(None))

    def _spawn(self, group: list[StreamJob] | None) -> tuple[Any, Any, Any]:
        """A new worker process for ``group`` (None: a spare, with the write end of the pipe its jobs come by)."""
        reader, writer = self._context.Pipe(duplex=False)
        assign_reader, assign_writer = self._context.Pipe(duplex=False) if group is None else (None, None)
        process = self._context.Process(
            target=worker_main,
            args=(group, self._model, self._config, self._threads, writer, self._emit_tracks, assign_reader),
            name=f"int8track-worker-{'spare' if group is None else self._next_index}", daemon=True)
        process.start()
        writer.close()  # the child holds the only write end, so its death reads as end of file here
        if assign_reader is not None:
            assign_reader.close()  # likewise: a spare that died makes the hand-over fail here, not hang
        return process, reader, assign_writer

    def _take_spare(self, group: list[StreamJob]) -> tuple[Any, Any] | None:
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        try:
            spare.assign.send(group)
        except OSError:  # it died while it waited: a fresh process instead
            spare.channel.close()
            spare.process.join(timeout=5)
            return None
        finally:
            spare.assign.close()
        self.start_spare()
        return spare.process, spare.channel

    def receive(self, message: FleetMessage) -> FleetMessage:
        if isinstance(message, Done):
            for worker in self.workers.values():
                worker.jobs.pop(message.report.source_id, None)
        return self._ledger.note(message)

    def ended(self, index: int) -> Iterator[FleetMessage]:
        """The worker's channel is closed: it finished, or died (then its unfinished streams resume elsewhere)."""
        worker = self.workers.pop(index)
        worker.channel.close()
        worker.process.join(timeout=10)
        if not worker.jobs:
            return
        died = WorkerDied(index, worker.process.pid, worker.process.exitcode, tuple(worker.jobs), False)
        lost = self._ledger.lost(died.worker, died.reason, list(worker.jobs.values()))
        yield replace(died, restarting=bool(lost.again))
        yield from gave_up(lost.given_up, f"worker process died ({died.reason})", self._ledger)
        if lost.again:  # each from its last snapshot: no frame tracked twice, the same ids go on
            yield self.start(list(lost.again))

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
        if self.spare is not None:  # its jobs pipe closes: it ends by itself; terminate in case it is still loading
            self.spare.assign.close()
            self.spare.process.terminate()
            self.spare.process.join(timeout=5)
            self.spare.channel.close()
        for worker in self.workers.values():
            worker.process.terminate()
        for worker in self.workers.values():
            worker.process.join(timeout=5)
            worker.channel.close()


def gave_up(jobs: Sequence[StreamJob], reason: str, ledger: FailoverLedger) -> Iterator[Done]:
    """The ``Done`` of each stream whose worker died once more than it may restart."""
    for job in jobs:
        error = f"{reason} after {ledger.restarts[job.source_id]} restarts"
        yield Done(StreamReport(job.source_id, job.location, job.output_dir, error=error,
                                restarts=ledger.restarts[job.source_id]))


def pool_messages(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig,
                  emit_tracks: bool = False, ledger: FailoverLedger | None = None) -> Iterator[FleetMessage]:
    """Run ``jobs`` on a pool of spawned processes and yield the messages they send, plus the driver's own
    (``apps.fleet.messages``): ``Started`` per worker, ``Progress``, ``Tracks`` (with ``emit_tracks``),
    ``WorkerDied`` and exactly one ``Done`` per job (a stream restarted after its worker died carries
    ``restarts``; one whose worker died more often than ``failover.MAX_RESTARTS`` carries the error).
    ``ledger`` (a fresh one if None) ends up holding the run's failovers."""
    if config.batch and model.batched_path is None:
        model = with_batched_model(model)
    pool = _Pool(model, config, config.threads_per_worker(len(jobs)), emit_tracks, ledger or FailoverLedger())
    try:
        for group in partition(jobs, config.num_workers(len(jobs))):
            yield pool.start(group)
        pool.start_spare()
        yield from pool.messages()
    finally:
        pool.stop()


def with_batched_model(model: ModelRef) -> ModelRef:
    """``model`` with its dynamic-batch export (made once, in the driver, beside the exported ONNX models)."""
    path = batched_model_file(model.path, cache_dir() / "onnx", model.input_size)
    return replace(model, batched_path=str(path))


def run_fleet(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig,
              on_message: Callable[[FleetMessage], None] | None = None) -> FleetReport:
    """Run every job on the worker pool and return the fleet report (MOTA/IDF1 added where there is gt).

    ``on_message`` sees every pool message (see :func:`pool_messages`) as it arrives.
    """
    start = time.perf_counter()
    ledger = FailoverLedger()
    reports, failures = collect(pool_messages(jobs, model, config, ledger=ledger), on_message)
    info = {"backend": "pool", "workers": config.num_workers(len(jobs)),
            "threads_per_worker": config.threads_per_worker(len(jobs)), "batch": config.batch,
            "spare_worker": config.spare_worker, "precision": model.precision, "model": model.path,
            "wall_s": time.perf_counter() - start, "worker_failures": failures}
    return finish_report([reports[job.source_id] for job in jobs], info, ledger.report_failovers())


def collect(messages: Iterator[FleetMessage], on_message: Callable[[FleetMessage], None] | None
            ) -> tuple[dict[str, StreamReport], list[str]]:
    """Each stream's final report and one line per worker death, from a run's messages (each shown to
    ``on_message`` first)."""
    reports: dict[str, StreamReport] = {}
    failures: list[str] = []
    for message in messages:
        if on_message is not None:
            on_message(message)
        if isinstance(message, Done):
            reports[message.report.source_id] = message.report
        elif isinstance(message, WorkerDied):
            failures.append(message.describe())
    return reports, failures


def finish_report(reports: Sequence[StreamReport], info: dict[str, Any],
                  failovers: Sequence[Failover] = ()) -> FleetReport:
    """The fleet report with each stream scored against its ground truth where it has one."""
    scored = []
    for report in reports:
        try:
            scored.append(score_stream(report))
        except (OSError, ValueError) as exc:  # bad gt: report it, keep the stream's other numbers
            scored.append(replace(report, error=report.error or f"{report.location}: cannot score: {exc}"))
    return FleetReport(tuple(scored), info, tuple(failovers))


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
