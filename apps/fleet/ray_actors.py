"""The fleet on Ray: the pool's workers (``apps.fleet.worker.serve_streams``) as Ray actors.

Each actor reserves ``threads_per_worker`` CPUs, so Ray places actors (and with them the streams) on the nodes
with free CPUs. The model file's bytes go into the object store once (``ray.put``) and every actor writes them
to its own node's temporary folder and loads them. Outputs go to the jobs' folders (``--output-dir``), which must
be a path every node can reach.

An actor's ``serve`` is a Ray generator: it streams its workers' messages (progress, snapshots of each stream's
tracker state and frame position every ``FleetConfig.snapshot_every_s``, reports) to the driver as they happen,
so the driver holds each stream's last snapshot whatever happens to the actor's process. An actor that dies (its
process killed, its node lost) ends its generator with an error; the driver then starts a fresh actor for its
unfinished streams, each resumed from its last snapshot (``apps.fleet.failover``, as the process pool does):
recorded sources go on from the frame after it with the same ids, every frame once in the MOT file. Ray's own
actor restart is off, since it would rerun the constructor without the tracker state.
"""
from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from int8track.apps.fleet.config import FleetConfig, FleetError, ModelRef, StreamJob
from int8track.apps.fleet.failover import FailoverLedger
from int8track.apps.fleet.messages import Done, FleetMessage, Started, WorkerDied
from int8track.apps.fleet.pool import collect, finish_report, gave_up, partition
from int8track.apps.fleet.report import FleetReport, StreamReport
from int8track.apps.fleet.worker import serve_streams

#: An actor gathers its messages this long before it yields them as one batch (fewer, larger Ray objects).
BATCH_S = 0.05


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FleetError("--ray needs Ray: pip install 'int8track[ray]'") from None
    return ray


class StreamActor:
    """A Ray actor serving streams with the model it was given (as bytes, through the object store)."""

    def __init__(self, model: ModelRef, model_bytes: bytes, threads: int) -> None:
        self._folder = tempfile.mkdtemp(prefix="int8track-model-")
        path = Path(self._folder) / Path(model.path).name  # the file name keeps the zoo spec lookup working
        path.write_bytes(model_bytes)
        self._model = replace(model, path=str(path))
        self._threads = threads

    def pid(self) -> int:
        return os.getpid()

    def serve(self, jobs: list[StreamJob], config: FleetConfig) -> Iterator[list[FleetMessage]]:
        """Serve ``jobs`` (``serve_streams``) and yield their messages in batches as they come."""
        messages: queue.Queue[FleetMessage | None] = queue.Queue()  # None: every stream has ended

        def emit(message: FleetMessage) -> None:
            if isinstance(message, Done):
                message = Done(replace(message.report, worker=f"ray actor pid {os.getpid()}"))
            messages.put(message)

        def run() -> None:
            try:
                serve_streams(jobs, self._model, config, self._threads, emit)
            finally:
                messages.put(None)

        threading.Thread(target=run, name="serve-streams", daemon=True).start()
        while True:
            batch = [messages.get()]
            deadline = time.monotonic() + BATCH_S
            while batch[-1] is not None and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(messages.get(timeout=left))
                except queue.Empty:
                    break
            yield [message for message in batch if message is not None]
            if batch[-1] is None:
                return


@dataclass
class _Lane:
    """One actor's call: the streams it has not finished."""

    actor: Any
    pid: int | None
    jobs: dict[str, StreamJob]


class _RayDriver:
    """The driver's side of the actors: starts them, reads their message streams (one thread each, into one
    queue), and resumes the streams of an actor that died on a fresh one."""

    def __init__(self, ray: Any, model: ModelRef, config: FleetConfig, threads: int, ledger: FailoverLedger) -> None:
        self._ray, self._model, self._config, self._threads, self._ledger = ray, model, config, threads, ledger
        self._actor_class = ray.remote(max_restarts=0, max_task_retries=0)(StreamActor)
        self._model_ref = ray.put(Path(model.path).read_bytes())
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue()
        self.lanes: dict[int, _Lane] = {}
        self._next_index = 0

    def run(self, groups: Sequence[list[StreamJob]]) -> Iterator[FleetMessage]:
        yield from self.start(groups)
        while self.lanes:
            index, item = self._queue.get()
            if item is None or isinstance(item, BaseException):
                yield from self.ended(index, item)
                continue
            if isinstance(item, Done):
                self.lanes[index].jobs.pop(item.report.source_id, None)
            yield self._ledger.note(item)

    def start(self, groups: Sequence[list[StreamJob]]) -> Iterator[FleetMessage]:
        actors = [self._actor_class.options(num_cpus=self._threads).remote(self._model, self._model_ref,
                                                                            self._threads) for _ in groups]
        for actor, group in zip(actors, groups):
            index = self._next_index
            self._next_index += 1
            pid = self._wait_started(actor)
            if isinstance(pid, str):  # why it did not start
                for job in group:
                    yield Done(StreamReport(job.source_id, job.location, job.output_dir, error=pid))
                continue
            self.lanes[index] = _Lane(actor, pid, {job.source_id: job for job in group})
            calls = actor.serve.remote(group, self._config)
            threading.Thread(target=self._drain, args=(index, calls), name=f"ray-actor-{index}", daemon=True).start()
            yield Started(index, pid, tuple(job.source_id for job in group))

    def _wait_started(self, actor: Any) -> int | str:
        """The actor's pid once it is up, or why it did not start: an error, or the cluster not placing it (Ray
        would keep it pending forever)."""
        timeout = self._config.actor_start_timeout_s
        try:
            return int(self._ray.get(actor.pid.remote(), timeout=timeout))
        except self._ray.exceptions.GetTimeoutError:
            with contextlib.suppress(Exception):
                self._ray.kill(actor, no_restart=True)
            total = self._ray.cluster_resources().get("CPU", 0.0)
            free = self._ray.available_resources().get("CPU", 0.0)
            return (f"ray actor not started within {timeout:g} s: it asks for {self._threads} CPUs (threads per "
                    f"worker); the cluster has {total:g} ({free:g} free)")
        except self._ray.exceptions.RayError as exc:
            return f"ray actor failed to start: {first_line(exc)}"

    def _drain(self, index: int, calls: Any) -> None:
        """Every message batch of one actor's call into the queue, then None, or the error that ended it."""
        try:
            for ref in calls:
                for message in self._ray.get(ref):
                    self._queue.put((index, message))
            self._queue.put((index, None))
        except Exception as exc:  # the actor died (RayActorError, ...): the driver decides what happens next
            self._queue.put((index, exc))

    def ended(self, index: int, error: BaseException | None) -> Iterator[FleetMessage]:
        """An actor's call ended: if streams are left unfinished, they resume on a fresh actor."""
        lane = self.lanes.pop(index)
        if not lane.jobs:
            return
        cause = first_line(error) if error is not None else "its call ended with streams unfinished"
        died = WorkerDied(index, lane.pid, None, tuple(lane.jobs), False, cause=cause, kind="ray actor")
        with contextlib.suppress(Exception):  # dead already, or stuck: its CPUs go to the replacement
            self._ray.kill(lane.actor, no_restart=True)
        lost = self._ledger.lost(died.worker, died.reason, list(lane.jobs.values()))
        yield replace(died, restarting=bool(lost.again))
        yield from gave_up(lost.given_up, f"ray actor died ({cause})", self._ledger)
        if lost.again:
            yield from self.start([list(lost.again)])


def first_line(exc: BaseException) -> str:
    """The first line of an error, and Ray's worker exit type where it gives one (SYSTEM_ERROR: the process
    vanished, as on SIGKILL; a Ray error's first line alone says only that the actor died)."""
    text = str(exc).strip()
    line = text.splitlines()[0][:200] if text else type(exc).__name__
    exit_type = re.search(r"Worker exit type: (\w+)", text)
    return f"{line} (worker exit type {exit_type.group(1)})" if exit_type else line


def _connect(ray: Any, address: str | None) -> None:
    """Start a local cluster of our own (None: ``address="local"``, whatever an earlier ``ray start`` left in
    Ray's temp folder) or join the one at ``address``; FleetError says in one line why joining failed."""
    if address is None:
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        return
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ... depending on the stage that failed
        raise FleetError(explain_connect_failure(address, exc, ray.__version__)) from None


def explain_connect_failure(address: str, exc: BaseException, ray_version: str) -> str:
    """One line on why joining the cluster at ``address`` failed: nothing listens there, or it listens and
    refused us (token authentication, on by default since Ray 2.5x, or another Ray version)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    host, _, port = address.rpartition(":")
    if "ray://" in address or not port.isdigit():
        return f"--ray {address}: cannot join the Ray cluster ({first[:200]})"
    if not _listening(host or "127.0.0.1", int(port)):
        return f"--ray {address}: nothing listens at that address (unreachable, or no cluster started there)"
    text = " ".join(f"{link} {link!r}" for link in _cause_chain(exc)).lower()  # Ray wraps the gRPC reason
    if "auth" in text or "token" in text:
        reason = "authentication failed"
    elif "version" in text:
        reason = "its Ray version differs"
    else:
        reason = "authentication failed or its Ray version differs"
    return (f"--ray {address}: the cluster is there but refused this driver ({reason}; this driver runs Ray "
            f"{ray_version}). A cluster started with token authentication needs its token here: run on a machine "
            "that has the cluster's ~/.ray/auth_token or set RAY_AUTH_TOKEN; or start it with RAY_AUTH_MODE=disabled")


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def _listening(host: str, port: int, timeout_s: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def run_fleet_ray(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig, address: str | None = None,
                  on_message: Callable[[FleetMessage], None] | None = None) -> FleetReport:
    """Run ``jobs`` on ``config.num_workers`` Ray actors on the cluster at ``address`` (None: start a local one with
    this machine's cores; a driver already connected uses its cluster) and return the fleet report gathered on the
    driver. ``on_message`` sees every message (as ``pool.run_fleet``'s does)."""
    if config.batch or config.spare_worker:
        raise FleetError("--batch and --spare-worker run on the worker pool only, not with --ray")
    ray = _require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, address)
    start = time.perf_counter()
    ledger = FailoverLedger()
    try:
        threads = config.threads_per_worker(len(jobs))
        groups = partition(jobs, config.num_workers(len(jobs)))
        driver = _RayDriver(ray, model, config, threads, ledger)
        reports, failures = collect(driver.run(groups), on_message)
        wall = time.perf_counter() - start
    finally:
        if started_here:
            ray.shutdown()
    info = {"backend": "ray", "address": address or "local", "workers": len(groups), "threads_per_worker": threads,
            "precision": model.precision, "model": model.path, "wall_s": wall, "worker_failures": failures}
    return finish_report([reports[job.source_id] for job in jobs], info, ledger.report_failovers())
