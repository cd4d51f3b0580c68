"""Many streams: `track` over several real sources on a worker pool (and on Ray), failures kept local, the API."""
from __future__ import annotations

import csv
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from int8track.apps.cli.track import main
from int8track.apps.fleet.batching import BatchingRunner
from int8track.apps.fleet.config import FleetConfig, FleetError, ModelRef
from int8track.apps.fleet.jobs import expand_sources, plan_jobs
from int8track.apps.fleet.messages import FleetMessage, Progress, Snapshot, Started
from int8track.apps.fleet.pool import partition, run_fleet, track_many
from int8track.apps.fleet.report import REPORT_CSV, REPORT_JSON, FleetReport
from int8track.apps.io.mot_results import format_tracks

from conftest import require_data

FRAMES = 6


def _common(weights, out, workers: int) -> list[str]:
    return ["--weights", str(weights), "--max-frames", str(FRAMES), "--output-dir", str(out), "--no-video",
            "--quiet", "--workers", str(workers), "--threads", str(workers)]  # one inference thread per worker


@pytest.fixture(scope="module")
def fleet_inputs(tmp_path_factory):
    video = require_data("videos/vtest.avi")
    sequence = require_data("MOT15/train/PETS09-S2L1")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    broken = tmp_path_factory.mktemp("inputs") / "broken.avi"
    broken.write_bytes(b"this is not a video")
    return video, sequence, broken, weights


@pytest.fixture(scope="module")
def one_worker_run(fleet_inputs, tmp_path_factory):
    """The three sources on one worker: the reference the other runs must reproduce."""
    video, sequence, broken, weights = fleet_inputs
    out = tmp_path_factory.mktemp("one_worker")
    code = main([str(video), str(sequence), str(broken), *_common(weights, out, 1)])
    return code, out


def test_broken_source_is_reported_and_the_others_finish(one_worker_run, capsys):
    code, out = one_worker_run
    assert code == 1  # a stream failed
    report = FleetReport.load_json(out / REPORT_JSON)
    by_id = {s.source_id: s for s in report.streams}
    assert list(by_id) == ["vtest", "PETS09-S2L1", "broken"]
    assert not by_id["broken"].ok and "broken.avi" in by_id["broken"].error
    assert "cannot decode" in by_id["broken"].error
    for name in ("vtest", "PETS09-S2L1"):
        stream = by_id[name]
        assert stream.ok and stream.frames == FRAMES and stream.fps > 0 and stream.p95_latency_ms > 0
        rows = np.loadtxt(out / name / f"{name}.txt", delimiter=",", ndmin=2)
        assert rows[:, 0].max() == FRAMES
        assert abs(sum(stream.stage_share.values()) - 1.0) < 1e-6
    # MOTA/IDF1 only where there is ground truth, scored on the frames tracked
    assert by_id["vtest"].mota is None and by_id["vtest"].idf1 is None
    assert 0.5 < by_id["PETS09-S2L1"].mota <= 1.0 and 0.5 < by_id["PETS09-S2L1"].idf1 <= 1.0
    with open(out / REPORT_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["source_id"] for row in rows] == ["vtest", "PETS09-S2L1", "broken"]
    assert int(rows[1]["frames"]) == FRAMES and rows[2]["error"]
    assert not list(out.glob("broken*/*.txt"))


def test_one_source_in_a_fleet_writes_what_track_writes(one_worker_run, fleet_inputs, tmp_path):
    _, out = one_worker_run
    video, _, _, weights = fleet_inputs
    single = tmp_path / "single"
    assert main([str(video), "--weights", str(weights), "--max-frames", str(FRAMES), "--output-dir", str(single),
                 "--no-video", "--quiet", "--threads", "1"]) == 0
    assert (single / "vtest.txt").read_text() == (out / "vtest" / "vtest.txt").read_text()
    assert not (single / REPORT_JSON).exists()  # one source: today's outputs, no fleet report


def test_multi_worker_run_writes_identical_mot_files(one_worker_run, fleet_inputs, tmp_path):
    _, reference = one_worker_run
    video, sequence, broken, weights = fleet_inputs
    out = tmp_path / "two_workers"
    assert main([str(video), str(sequence), str(broken), *_common(weights, out, 2)]) == 1
    report = json.loads((out / REPORT_JSON).read_text())
    assert report["info"]["workers"] == 2 and report["info"]["threads_per_worker"] == 1
    assert len({s["worker"] for s in report["streams"] if s["frames"]}) == 2  # both workers served a stream
    for name in ("vtest", "PETS09-S2L1"):
        assert (out / name / f"{name}.txt").read_text() == (reference / name / f"{name}.txt").read_text()


def test_ray_local_writes_identical_mot_files(one_worker_run, fleet_inputs, tmp_path):
    pytest.importorskip("ray")
    _, reference = one_worker_run
    video, sequence, broken, weights = fleet_inputs
    out = tmp_path / "ray"
    assert main([str(video), str(sequence), str(broken), *_common(weights, out, 2), "--ray"]) == 1
    report = FleetReport.load_json(out / REPORT_JSON)
    assert report.info["backend"] == "ray"
    assert [s.source_id for s in report.failed] == ["broken"]
    for name in ("vtest", "PETS09-S2L1"):
        assert (out / name / f"{name}.txt").read_text() == (reference / name / f"{name}.txt").read_text()


def test_killed_worker_is_reported_restarted_and_the_others_complete(fleet_inputs, tmp_path):
    video, sequence, _, weights = fleet_inputs
    frames = 24
    jobs = plan_jobs([str(video), str(sequence)], tmp_path)
    config = FleetConfig(workers=2, threads=2, max_frames=frames, write_video=False)
    pids: dict[str, int] = {}
    killed: list[int] = []

    def kill_vtest_worker(message: FleetMessage) -> None:
        if isinstance(message, Started):
            for source_id in message.source_ids:
                pids[source_id] = message.pid
        elif isinstance(message, Progress) and message.source_id == "vtest" and message.frames_read >= 2 \
                and not killed:
            killed.append(pids["vtest"])
            os.kill(pids["vtest"], signal.SIGKILL)

    report = run_fleet(jobs, ModelRef(str(weights)), config, on_message=kill_vtest_worker)
    assert killed and pids["vtest"] != pids["PETS09-S2L1"]
    (failure,) = report.info["worker_failures"]
    assert f"pid {killed[0]}" in failure and "SIGKILL" in failure and "vtest" in failure and "restarted" in failure
    by_id = {s.source_id: s for s in report.streams}
    assert by_id["vtest"].restarts == 1 and by_id["PETS09-S2L1"].restarts == 0
    for name in ("vtest", "PETS09-S2L1"):
        assert by_id[name].ok and by_id[name].frames == frames
        rows = np.loadtxt(tmp_path / name / f"{name}.txt", delimiter=",", ndmin=2)
        assert rows[:, 0].max() == frames
    assert "restarted 1x" in report.format_table()


def test_a_killed_worker_resumes_from_its_snapshot_with_every_frame_once(fleet_inputs, tmp_path):
    # tracker state and MOT lines are snapshotted after every frame here: the stream resumes on a new worker
    # after the last snapshot, so its MOT file is byte for byte the undisturbed run's (same frames, same ids)
    _, sequence, _, weights = fleet_inputs
    frames = 30
    config = FleetConfig(workers=1, threads=2, max_frames=frames, write_video=False, snapshot_every_s=0.0)
    undisturbed = run_fleet(plan_jobs([str(sequence)], tmp_path / "undisturbed"), ModelRef(str(weights)), config)
    assert undisturbed.streams[0].ok
    pids: list[int] = []
    killed: list[int] = []

    def kill_at_frame_12(message: FleetMessage) -> None:
        if isinstance(message, Started):
            pids.append(message.pid)
        elif isinstance(message, Progress) and message.frames_read >= 12 and not killed:
            killed.append(pids[-1])
            os.kill(pids[-1], signal.SIGKILL)

    jobs = plan_jobs([str(sequence)], tmp_path / "killed")
    report = run_fleet(jobs, ModelRef(str(weights)), config, on_message=kill_at_frame_12)
    assert killed and len(pids) == 2  # one restart, on a fresh worker
    (stream,) = report.streams
    assert stream.ok and stream.restarts == 1 and stream.frames == frames
    name = "PETS09-S2L1"
    resumed = (tmp_path / "killed" / name / f"{name}.txt").read_text()
    assert resumed == (tmp_path / "undisturbed" / name / f"{name}.txt").read_text()
    info = json.loads((tmp_path / "killed" / name / f"{name}_timing.json").read_text())["info"]
    assert 0 < info["resumed_after_frame"] < frames  # it did resume, not start over
    (failover,) = report.failovers  # the report says who died, where the stream resumed and how long it took
    assert failover.worker == f"worker 0 (pid {killed[0]})" and failover.cause == "killed by SIGKILL"
    assert failover.source_id == name and failover.resumed_after_frame == info["resumed_after_frame"]
    assert failover.time_to_resume_s is not None and failover.time_to_resume_s > 0
    # the driver heard of frame 12 being read; the snapshot is of the last frame tracked, at most a few before
    assert failover.resumed_after_frame + failover.frames_replayed >= 12
    saved = FleetReport.load_json(report.save(tmp_path)[0])
    assert saved.failovers == report.failovers


def _children() -> set[int]:
    """The pids of this process's children right now."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            pids.add(int(stat.parent.name))
    return pids


def test_a_warm_spare_takes_over_a_killed_workers_stream(fleet_inputs, tmp_path):
    # with spare_worker the stream resumes in the process started ahead (alive when the kill happened), from its
    # snapshot: the same MOT file as the undisturbed run, and a new spare is started for the next death
    _, sequence, _, weights = fleet_inputs
    frames = 20
    config = FleetConfig(workers=1, threads=1, max_frames=frames, write_video=False, snapshot_every_s=0.0,
                         spare_worker=True)
    undisturbed = run_fleet(plan_jobs([str(sequence)], tmp_path / "undisturbed"), ModelRef(str(weights)), config)
    assert undisturbed.streams[0].ok and undisturbed.info["spare_worker"] is True
    pids: list[int] = []
    alive_at_kill: set[int] = set()

    def kill_after_frame_5(message: FleetMessage) -> None:
        if isinstance(message, Started):
            pids.append(message.pid)
        elif isinstance(message, Snapshot) and message.frame_id >= 5 and not alive_at_kill:
            alive_at_kill.update(_children())
            os.kill(pids[-1], signal.SIGKILL)

    report = run_fleet(plan_jobs([str(sequence)], tmp_path / "killed"), ModelRef(str(weights)), config,
                       on_message=kill_after_frame_5)
    assert len(pids) == 2 and pids[1] in alive_at_kill - {pids[0]}  # the spare, started before the kill
    (stream,) = report.streams
    assert stream.ok and stream.restarts == 1 and stream.frames == frames
    name = "PETS09-S2L1"
    assert (tmp_path / "killed" / name / f"{name}.txt").read_text() == \
        (tmp_path / "undisturbed" / name / f"{name}.txt").read_text()
    (failover,) = report.failovers
    assert failover.time_to_resume_s is not None and 5 <= failover.resumed_after_frame < frames


def test_track_many_yields_what_the_fleet_writes(one_worker_run, fleet_inputs):
    _, reference = one_worker_run
    video, sequence, _, weights = fleet_inputs
    config = FleetConfig(workers=2, threads=2, max_frames=FRAMES)
    info = json.loads((reference / "vtest" / "vtest_timing.json").read_text())["info"]
    size = tuple(int(side) for side in info["input_size"].split("x"))  # the fleet's fitted input size
    model = ModelRef(str(weights), classes=(0,), input_size=size)
    lines: dict[str, list[str]] = {"vtest": [], "PETS09-S2L1": []}
    order: dict[str, list[int]] = {"vtest": [], "PETS09-S2L1": []}
    for source_id, frame_index, tracks in track_many([video, sequence], model, config):
        order[source_id].append(frame_index)
        lines[source_id].append(format_tracks(frame_index, tracks))
    for name, written in lines.items():
        assert order[name] == list(range(1, FRAMES + 1))
        assert "".join(written) == (reference / name / f"{name}.txt").read_text()


def test_partition_shares_streams_round_robin_within_one():
    assert partition(list(range(5)), 2) == [[0, 2, 4], [1, 3]]
    assert partition(["a", "b"], 4) == [["a"], ["b"]]  # never an idle worker
    assert partition([], 3) == [[]]
    sizes = [len(group) for group in partition(list(range(23)), 4)]
    assert sum(sizes) == 23 and max(sizes) - min(sizes) <= 1


def test_expand_sources(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("b.mp4", "a.avi", "notes.txt"):
        (videos / name).write_bytes(b"")
    (videos / "seq" / "img1").mkdir(parents=True)
    listing = tmp_path / "list.txt"
    listing.write_text("# cameras\n0\n\nrtsp://cam/stream?x=1\n" + str(videos / "a.avi") + "\n")
    assert expand_sources([str(videos)]) == [str(videos / n) for n in ("a.avi", "b.mp4", "seq")]
    assert expand_sources([str(videos / "*.mp4"), f"@{listing}"]) == [
        str(videos / "b.mp4"), "0", "rtsp://cam/stream?x=1", str(videos / "a.avi")]
    assert expand_sources([], sources_file=listing)[0] == "0"
    jobs = plan_jobs(["x/vtest.avi", "y/vtest.avi", "0"], tmp_path)
    assert [job.source_id for job in jobs] == ["vtest", "vtest-2", "camera0"]
    assert len({job.output_dir for job in jobs}) == 3
    with pytest.raises(FleetError, match="no file matches"):
        expand_sources([str(tmp_path / "*.mkv")])
    with pytest.raises(FleetError, match=r"empty\.txt: the source list names no source"):
        (tmp_path / "empty.txt").write_text("# nothing\n")
        expand_sources([f"@{tmp_path / 'empty.txt'}"])


def test_fleet_user_errors_are_one_line(tmp_path, capsys):
    assert main(["--sources", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert "missing.txt: cannot read the source list" in err and "Traceback" not in err
    assert main(["--workers", "0", str(tmp_path)]) == 2
    assert "workers must be at least 1" in capsys.readouterr().err


def test_batched_worker_writes_identical_mot_files(one_worker_run, fleet_inputs, tmp_path):
    _, reference = one_worker_run
    video, sequence, _, weights = fleet_inputs
    out = tmp_path / "batched"
    assert main([str(video), str(sequence), *_common(weights, out, 1), "--batch"]) == 0
    report = FleetReport.load_json(out / REPORT_JSON)
    assert report.info["batch"] is True and report.info["workers"] == 1
    for name in ("vtest", "PETS09-S2L1"):  # the dynamic-batch export computes what the official ONNX computes
        assert (out / name / f"{name}.txt").read_text() == (reference / name / f"{name}.txt").read_text()


def test_batching_runner_gives_each_caller_its_row_and_stops_waiting_for_leavers():
    calls: list[int] = []

    def run(blob: np.ndarray) -> np.ndarray:
        calls.append(len(blob))
        return blob * 2.0

    runner = BatchingRunner(run, members=3, max_wait_s=5.0)  # long wait: batches must form by count, not time
    results: dict[int, list[np.ndarray]] = {}

    def stream(member: int, frames: int) -> None:
        try:
            results[member] = [runner(np.full((1, 2), 10.0 * member + i)) for i in range(frames)]
        finally:
            runner.leave()

    threads = [threading.Thread(target=stream, args=(m, n)) for m, n in ((0, 4), (1, 4), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)  # nobody waits forever for the stream that left
    for member, frames in ((0, 4), (1, 4), (2, 1)):
        assert [float(r[0, 0]) for r in results[member]] == [2.0 * (10 * member + i) for i in range(frames)]
    assert sum(calls) == 9 and calls[0] == 3 and max(calls) == 3 and len(calls) < 9
    assert runner.batch_sizes == calls
