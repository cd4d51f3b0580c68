"""The fleet on Ray for real: an actor SIGKILLed mid-stream resumes from its snapshot on a fresh actor, and
``track --ray ADDRESS`` against a cluster started with ``ray start`` (token authentication on)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from int8track.apps.cli.track import main
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


def test_an_actor_the_cluster_cannot_place_fails_its_streams_instead_of_waiting_forever(local_ray, tmp_path):
    # the module's cluster has 2 CPUs; an actor asking for 8 stays pending in Ray for ever
    sequence = require_data("MOT15/train/PETS09-S2L1")
    weights = ModelRef(str(require_data("weights/bytetrack_nano_mot17.onnx")))
    config = FleetConfig(workers=1, threads=8, max_frames=2, write_video=False, actor_start_timeout_s=2.0)
    report = run_fleet_ray(plan_jobs([str(sequence)], tmp_path / "unplaced"), weights, config)
    (stream,) = report.failed
    assert stream.error.startswith("ray actor not started within 2 s: it asks for 8 CPUs"), stream.error
    assert "the cluster has 2 (" in stream.error
    with pytest.raises(ValueError, match="actor_start_timeout_s"):
        FleetConfig(actor_start_timeout_s=0)


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
    assert "worker exit type SYSTEM_ERROR" in failover.cause, failover.cause  # Ray's word for a vanished process
    assert failover.resumed_after_frame == info["resumed_after_frame"]
    assert failover.time_to_resume_s is not None and failover.time_to_resume_s > 0
    (failure,) = report.info["worker_failures"]
    assert f"ray actor 0 (pid {killed[0]})" in failure and "restarted" in failure
    assert "failover: PETS09-S2L1: ray actor 0" in report.format_table()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def started_cluster(tmp_path):
    """A cluster started the way a user starts one, ``ray start --head --port P``, with token authentication on
    (``RAY_AUTH_MODE=token`` and a token of its own), in temporary folders. ``--block`` keeps ``ray start`` in
    the foreground, so the test stops exactly the processes it started by terminating it: ``ray stop`` would
    stop every Ray process of this user on the machine, other people's clusters included."""
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths live under it
    token = uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(HOME=str(tmp_path / "cluster-home"), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    ray_cli = Path(sys.executable).with_name("ray")
    log = tmp_path / "ray-start.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [str(ray_cli), "start", "--head", "--block", "--port", str(port), "--temp-dir", temp_dir,
             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
            env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", token
    finally:
        process.terminate()  # ray start --block stops the processes it started
        process.wait(timeout=60)
        _wait_gone(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_gone(temp_dir: str, timeout_s: float = 30.0) -> None:
    """Wait until no process runs with ``temp_dir`` on its command line (the cluster's own)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if temp_dir.encode() in cmdline.read_bytes():
                    left.append(cmdline.parent.name)
            except OSError:
                continue
        if not left:
            return
        assert time.monotonic() < deadline, f"cluster processes still running: {left}"
        time.sleep(0.5)


def _track(args: list[str], home: Path, **env_extra: str) -> subprocess.CompletedProcess:
    """``track`` as a user runs it: its own process, its own home directory."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(HOME=str(home), **env_extra)
    code = "import sys; from int8track.apps.cli.track import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=240)


def test_track_joins_a_cluster_started_with_ray_start_and_token_auth(started_cluster, tmp_path):
    address, token = started_cluster
    video = require_data("videos/vtest.avi")
    sequence = require_data("MOT15/train/PETS09-S2L1")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    common = ["--weights", str(weights), "--max-frames", "6", "--no-video", "--quiet", "--threads", "2"]
    out = tmp_path / "fleet"
    run = _track([str(video), str(sequence), *common, "--workers", "2", "--output-dir", str(out), "--ray", address],
                 tmp_path / "driver-home", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "fleet_report.json").read_text())
    assert report["info"]["backend"] == "ray" and report["info"]["address"] == address
    for source, name in ((video, "vtest"), (sequence, NAME)):  # what a single-source run writes
        single = tmp_path / f"single-{name}"
        assert main([str(source), *common, "--output-dir", str(single)]) == 0
        assert (out / name / f"{name}.txt").read_text() == (single / f"{name}.txt").read_text()
    # the cluster has 2 CPUs: an actor asking for 8 (threads per worker) is never placed; it fails, it does not hang
    unplaced = _track([str(video), *common[:-1], "8", "--workers", "1", "--ray-start-timeout", "3", "--output-dir",
                       str(tmp_path / "unplaced"), "--ray", address],
                      tmp_path / "driver-home", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    assert unplaced.returncode == 1, unplaced.stderr[-3000:]
    assert "ray actor not started within 3 s: it asks for 8 CPUs" in unplaced.stdout, unplaced.stdout[-3000:]
    # without the token the cluster refuses the driver: one line says it is authentication, no traceback
    refused = _track([str(video), *common, "--output-dir", str(tmp_path / "refused"), "--ray", address],
                     tmp_path / "stranger-home")
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if line.startswith("track: error:")]
    assert len(errors) == 1 and "authentication failed" in errors[0], refused.stderr[-3000:]
    assert "Traceback" not in refused.stderr
