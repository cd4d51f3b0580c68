"""The fleet on Ray for real: an actor SIGKILLed mid-stream resumes from its snapshot on a fresh actor, and
``track --ray ADDRESS`` against a cluster started with ``ray start`` (token authentication on)."""
from __future__ import annotations

import json
import os
import signal

import pytest

from int8track.apps.fleet.config import FleetConfig, ModelRef
from int8track.apps.fleet.jobs import plan_jobs
from int8track.apps.fleet.messages import FleetMessage, Progress, Started, WorkerDied

from conftest import require_data

ray = pytest.importorskip("ray")

from int8track.apps.fleet.ray_actors import run_fleet_ray  # noqa: E402 - after the skip when Ray is absent

NAME = "PETS09-S2L1"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster for the module (the runs below join it rather than start their own). A new local
    cluster turns token authentication on in this process's environment: put it back afterwards."""
    before = os.environ.get("RAY_AUTH_MODE")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


def test_a_killed_ray_actor_resumes_from_its_snapshot_with_every_frame_once(local_ray, tmp_path):
    # the tracker state and MOT lines are snapshotted after every frame here, so the stream resumes on a fresh
    # actor right after the last frame the driver heard of: its MOT file is byte for byte the undisturbed run's
    sequence = require_data("MOT15/train/PETS09-S2L1")
    weights = ModelRef(str(require_data("weights/bytetrack_nano_mot17.onnx")))
    frames = 30
    config = FleetConfig(workers=1, threads=1, max_frames=frames, write_video=False, snapshot_every_s=0.0)
    undisturbed = run_fleet_ray(plan_jobs([str(sequence)], tmp_path / "undisturbed"), weights, config)
    assert undisturbed.streams[0].ok and not undisturbed.failovers
    pids: list[int] = []
    killed: list[int] = []
    deaths: list[WorkerDied] = []

    def kill_at_frame_12(message: FleetMessage) -> None:
        if isinstance(message, Started):
            pids.append(message.pid)
        elif isinstance(message, WorkerDied):
            deaths.append(message)
        elif isinstance(message, Progress) and message.frames_read >= 12 and not killed:
            killed.append(pids[-1])
            os.kill(pids[-1], signal.SIGKILL)

    report = run_fleet_ray(plan_jobs([str(sequence)], tmp_path / "killed"), weights, config,
                           on_message=kill_at_frame_12)
    assert killed and len(pids) == 2 and pids[1] != killed[0]  # one restart, on a fresh actor
    assert [death.pid for death in deaths] == killed and deaths[0].restarting
    (stream,) = report.streams
    assert stream.ok and stream.restarts == 1 and stream.frames == frames
    resumed = (tmp_path / "killed" / NAME / f"{NAME}.txt").read_text()
    assert resumed == (tmp_path / "undisturbed" / NAME / f"{NAME}.txt").read_text()
    info = json.loads((tmp_path / "killed" / NAME / f"{NAME}_timing.json").read_text())["info"]
    assert 0 < info["resumed_after_frame"] < frames  # it did resume, not start over
    (failover,) = report.failovers
    assert failover.source_id == NAME and f"pid {killed[0]}" in failover.worker
    assert failover.resumed_after_frame == info["resumed_after_frame"]
    assert failover.time_to_resume_s is not None and failover.time_to_resume_s > 0
    (failure,) = report.info["worker_failures"]
    assert f"ray actor 0 (pid {killed[0]})" in failure and "restarted" in failure
    assert "failover: PETS09-S2L1: ray actor 0" in report.format_table()
