"""The driver's failover ledger: snapshots joined into one resume point, restarts counted and capped, and each
failover's frames replayed and time to resume."""
from __future__ import annotations

import numpy as np

from int8track.apps.fleet.config import StreamJob
from int8track.apps.fleet.failover import MAX_RESTARTS, FailoverLedger
from int8track.apps.fleet.messages import Done, Progress, Snapshot
from int8track.apps.fleet.report import FleetReport, StreamReport
from int8track.apps.io.mot_results import format_tracks
from int8track.tracker import ByteTracker, TrackerConfig


def _lines(frame: int) -> str:
    return format_tracks(frame, np.array([[10.0, 20.0, 40.0, 80.0, 1, 0.9, 0, 0]]))


def test_a_lost_stream_resumes_from_its_last_snapshot_with_every_line_before_it():
    tracker = ByteTracker(TrackerConfig(), frame_rate=10)
    state = tracker.state_dict().to_bytes()
    job = StreamJob("cam", "cam.avi", "out/cam")
    ledger = FailoverLedger()
    ledger.note(Snapshot("cam", 3, state, _lines(1) + _lines(2) + _lines(3)))
    ledger.note(Snapshot("cam", 5, state, _lines(4) + _lines(5)))
    ledger.note(Progress("cam", 9))  # the worker read up to frame 9, then died
    lost = ledger.lost("worker 0 (pid 1)", "killed by SIGKILL", [job])
    (again,) = lost.again
    assert not lost.given_up and again.resume is not None
    assert again.resume.frame_id == 5 and again.resume.tracker_state == state
    assert again.resume.mot_text == "".join(_lines(frame) for frame in range(1, 6))
    # the new worker reads past frames 1..5 (no new frame yet), then frame 6: the stream has resumed
    for frame in range(1, 6):
        ledger.note(Progress("cam", frame))
    assert ledger.report_failovers()[0].time_to_resume_s is None
    ledger.note(Progress("cam", 6))
    (failover,) = ledger.report_failovers()
    assert (failover.worker, failover.source_id, failover.cause) == ("worker 0 (pid 1)", "cam", "killed by SIGKILL")
    assert failover.resumed_after_frame == 5 and failover.frames_replayed == 4  # frames 6..9 read again
    assert failover.time_to_resume_s is not None and failover.time_to_resume_s >= 0
    done = ledger.note(Done(StreamReport("cam", "cam.avi", "out/cam", frames=12)))
    assert isinstance(done, Done) and done.report.restarts == 1
    report = FleetReport((done.report,), {}, ledger.report_failovers())
    assert FleetReport.from_dict(report.to_dict()) == report
    assert "failover: cam: worker 0 (pid 1) died (killed by SIGKILL); resumed after frame 5" in report.format_table()


def test_a_stream_without_a_snapshot_starts_over_and_restarts_are_capped():
    job = StreamJob("cam", "cam.avi", "out/cam")
    ledger = FailoverLedger()
    for attempt in range(MAX_RESTARTS):
        (again,) = ledger.lost(f"worker {attempt}", "exit code 1", [job]).again
        assert again.resume is None  # no snapshot yet: from the start
    lost = ledger.lost("worker 9", "exit code 1", [job])
    assert lost.given_up == (job,) and not lost.again and ledger.restarts["cam"] == MAX_RESTARTS
    # none of them read a frame: no time to resume, still reported
    assert [f.time_to_resume_s for f in ledger.report_failovers()] == [None] * MAX_RESTARTS


def test_the_ledger_keeps_a_long_streams_mot_lines_on_disk_not_in_memory():
    # a live camera snapshots every few seconds for days: the driver must not hold every MOT line in memory
    import tracemalloc

    state = ByteTracker(TrackerConfig(), frame_rate=10).state_dict().to_bytes()
    block = "".join(_lines(frame) for frame in range(1, 201))  # 200 lines, ~9 KB
    ledger = FailoverLedger()
    tracemalloc.start()
    try:
        ledger.note(Snapshot("cam", 200, state, block))
        before, _ = tracemalloc.get_traced_memory()
        for snapshot in range(2, 2001):  # ~18 MB of MOT lines in all
            ledger.note(Snapshot("cam", 200 * snapshot, state, block))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1_000_000, f"the ledger grew by {after - before} bytes"
    (again,) = ledger.lost("worker 0", "killed by SIGKILL", [StreamJob("cam", "cam.avi", "out/cam")]).again
    assert again.resume is not None and again.resume.frame_id == 400_000
    assert again.resume.mot_text == block * 2000  # every line up to the snapshot, in order
    ledger.note(Done(StreamReport("cam", "cam.avi", "out/cam", frames=400_000)))
