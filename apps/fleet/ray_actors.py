"""The fleet on Ray: the pool's workers (``apps.fleet.worker.serve_streams``) as Ray actors.

Each actor reserves ``threads_per_worker`` CPUs, so Ray places actors (and with them the streams) on the nodes
with free CPUs. The model file's bytes go into the object store once (``ray.put``) and every actor writes them
to its own node's temporary folder and loads them. An actor that dies is restarted once by Ray
(``max_restarts=1``) and its call retried (``max_task_retries=1``), which reruns its streams; an actor that dies
again is reported with its streams' errors. Outputs go to the jobs' folders (``--output-dir``), which must be a
path every node can reach; the reports come back to the driver.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from int8track.apps.fleet.config import FleetConfig, FleetError, ModelRef, StreamJob
from int8track.apps.fleet.messages import Done, FleetMessage
from int8track.apps.fleet.pool import finish_report, partition
from int8track.apps.fleet.report import FleetReport, StreamReport
from int8track.apps.fleet.worker import serve_streams


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

    def serve(self, jobs: list[StreamJob], config: FleetConfig) -> list[StreamReport]:
        done: list[StreamReport] = []

        def emit(message: FleetMessage) -> None:
            if isinstance(message, Done):
                done.append(message.report)

        serve_streams(jobs, self._model, config, self._threads, emit)
        return [replace(report, worker=f"ray actor pid {os.getpid()}") for report in done]


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
    text = f"{first} {exc!r}".lower()
    if "auth" in text or "token" in text:
        reason = "authentication failed"
    elif "version" in text:
        reason = "its Ray version differs"
    else:
        reason = "authentication failed or its Ray version differs"
    return (f"--ray {address}: the cluster is there but refused this driver ({reason}; this driver runs Ray "
            f"{ray_version}). A cluster started with token authentication needs its token here: run on a machine "
            "that has the cluster's ~/.ray/auth_token or set RAY_AUTH_TOKEN; or start it with RAY_AUTH_MODE=disabled")


def _listening(host: str, port: int, timeout_s: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def run_fleet_ray(jobs: Sequence[StreamJob], model: ModelRef, config: FleetConfig,
                  address: str | None = None) -> FleetReport:
    """Run ``jobs`` on ``config.num_workers`` Ray actors on the cluster at ``address`` (None: start a local one with
    this machine's cores) and return the fleet report gathered on the driver."""
    if config.batch:
        raise FleetError("--batch runs on the worker pool only, not with --ray")
    ray = _require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, address)
    start = time.perf_counter()
    try:
        threads = config.threads_per_worker(len(jobs))
        actor_class = ray.remote(max_restarts=1, max_task_retries=1)(StreamActor)
        model_ref = ray.put(Path(model.path).read_bytes())
        groups = partition(jobs, config.num_workers(len(jobs)))
        actors = [actor_class.options(num_cpus=threads).remote(model, model_ref, threads) for _ in groups]
        calls = [actor.serve.remote(group, config) for actor, group in zip(actors, groups)]
        reports: dict[str, StreamReport] = {}
        failures: list[str] = []
        for group, call in zip(groups, calls):
            try:
                for report in ray.get(call):
                    reports[report.source_id] = report
            except ray.exceptions.RayError as exc:  # the actor died twice (or could not be placed)
                reason = str(exc).strip().splitlines()[0]
                failures.append(f"ray actor serving {', '.join(job.source_id for job in group)} failed: {reason}")
                for job in group:
                    reports[job.source_id] = StreamReport(job.source_id, job.location, job.output_dir,
                                                          error=f"ray actor failed: {reason}")
        wall = time.perf_counter() - start
    finally:
        if started_here:
            ray.shutdown()
    info = {"backend": "ray", "address": address or "local", "workers": len(groups), "threads_per_worker": threads,
            "precision": model.precision, "model": model.path, "wall_s": wall, "worker_failures": failures}
    return finish_report([reports[job.source_id] for job in jobs], info)
