"""Reconnecting live sources and credential redaction, with scripted sources (the real server: test_live_stream.py)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from int8track.apps.fleet.jobs import source_name
from int8track.apps.fleet.report import StreamReport
from int8track.apps.io.read_ahead import ReadAhead
from int8track.apps.io.reconnect import ReconnectingSource, ReconnectPolicy, outage_info
from int8track.apps.io.sources import FrameSource, SourceError, SourceInfo, SourceInterrupted, open_source
from int8track.apps.io.urls import redact_url, stream_name
from int8track.apps.models.cache import source_fingerprint

URL = "rtsp://admin:s3cret@10.0.0.7:554/live/cam1"
FAST = ReconnectPolicy(timeout_s=0.5, initial_backoff_s=0.01, max_backoff_s=0.02, log_every_s=0.0)


class _Burst(FrameSource):
    """A live stream delivering ``count`` frames numbered from ``first``, then failing (returns None)."""

    def __init__(self, first: int, count: int) -> None:
        self.info = SourceInfo("cam1", "stream", URL, 10.0, None, True)
        self.next, self.end, self.closed = first, first + count, False

    def read(self):
        if self.next == self.end:
            return None
        self.next += 1
        return np.full((2, 2, 3), self.next - 1, dtype=np.uint8)

    def close(self) -> None:
        self.closed = True


class _Reopener:
    """``reopen`` for a ReconnectingSource: fails ``failures`` times (with the URL in the error, as OpenCV's
    messages have it), then returns the next burst of frames."""

    def __init__(self, failures: int, bursts: list[tuple[int, int]]) -> None:
        self.failures, self.bursts, self.calls = failures, list(bursts), 0

    def __call__(self) -> FrameSource:
        self.calls += 1
        if self.failures > 0 or not self.bursts:
            self.failures -= 1
            raise SourceError(f"{URL}: cannot open stream within 10 s")
        return _Burst(*self.bursts.pop(0))


def test_an_outage_is_bridged_and_recorded_and_the_logs_carry_no_password():
    first = _Burst(0, 5)
    reopen = _Reopener(failures=2, bursts=[(5, 3)])
    lines: list[str] = []
    source = ReconnectingSource(first, reopen, FAST, log=lines.append)
    values: list[int] = []
    with pytest.raises(SourceInterrupted, match="did not come back within 0.5 s"):
        while (frame := source.read()) is not None:
            values.append(int(frame[0, 0, 0]))
    assert values == list(range(8))  # every frame, in order, across the outage
    assert first.closed and reopen.calls >= 4
    recovered, final = source.outages
    assert recovered.recovered and recovered.attempts == 3 and recovered.frames_before == 5
    assert not final.recovered and final.frames_before == 8 and final.duration_s >= 0.5
    assert lines and all("s3cret" not in line and "admin" not in line for line in lines)
    assert any("stream back" in line for line in lines)
    info = outage_info(source.outages, [5, 8])
    assert info["count"] == 2 and info["each"][0]["frames_before"] == 5
    assert info["total_s"] == pytest.approx(sum(o.duration_s for o in source.outages), abs=1e-3)


def test_reconnect_timeout_zero_ends_at_the_first_failure():
    source = ReconnectingSource(_Burst(0, 2), _Reopener(0, [(2, 2)]), ReconnectPolicy(timeout_s=0))
    assert source.read() is not None and source.read() is not None
    with pytest.raises(SourceInterrupted, match="reconnecting is off"):
        source.read()


def test_interrupt_ends_a_reconnect_wait_at_once():
    from int8track.apps.models.input_fit import PeekedSource

    source = ReconnectingSource(_Burst(0, 1), _Reopener(10**6, []),
                                ReconnectPolicy(timeout_s=60, initial_backoff_s=0.05, max_backoff_s=0.05))
    peeked = PeekedSource(source)  # as track wraps it: the interrupt must reach the reconnecting source inside
    reader = ReadAhead(peeked)
    time.sleep(0.2)  # the reader is now retrying
    start = time.monotonic()
    reader.close()  # stop() interrupts the source: no 60 s wait, and a stop is not an error
    assert time.monotonic() - start < 2.0
    assert reader.error is None and [int(f.image[0, 0, 0]) for f in reader] == [0]
    assert len(source.outages) == 1 and not source.outages[0].recovered


def test_reconnecting_reader_counts_outages_against_its_own_frames():
    """The reader's ``frames_before_outage`` counts its own frames, not the ones the source gave before it ran."""
    source = ReconnectingSource(_Burst(0, 6), _Reopener(1, [(6, 4)]), FAST)
    assert source.read() is not None and source.read() is not None  # read before the run (e.g. a backlog)
    reader = ReadAhead(source, drop_oldest=False)
    frames = list(reader)
    reader.close()
    assert [int(f.image[0, 0, 0]) for f in frames] == list(range(2, 10))
    # the last outage never ended: no frame came after it (outage_info then counts all the frames received)
    assert reader.frames_before_outage == [4] and source.outages[0].frames_before == 6
    assert isinstance(reader.error, SourceInterrupted)


def test_an_outage_before_the_reader_started_counts_zero_frames_of_the_run():
    source = ReconnectingSource(_Burst(0, 1), _Reopener(1, [(1, 3)]), FAST)
    assert source.read() is not None and source.read() is not None  # the outage happens here, before the run
    reader = ReadAhead(source, drop_oldest=False)
    frames = list(reader)
    reader.close()
    assert len(frames) == 2 and reader.frames_before_outage == [0]


@pytest.mark.parametrize("field, value", [("timeout_s", -1.0), ("initial_backoff_s", 0.0),
                                          ("log_every_s", float("nan")), ("max_backoff_s", 0.001)])
def test_policy_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field if field != "max_backoff_s" else "max_backoff_s"):
        ReconnectPolicy(**{field: value})


@pytest.mark.parametrize("url, expected", [
    (URL, "rtsp://***@10.0.0.7:554/live/cam1"),
    ("rtsp://user@host/cam?x=1", "rtsp://***@host/cam?x=1"),
    ("rtsp://host:554/cam", "rtsp://host:554/cam"),
    ("http://u:p@[::1]:8080/a.mp4", "http://***@[::1]:8080/a.mp4"),
    ("/data/videos/a@b.avi", "/data/videos/a@b.avi"),
    ("0", "0"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_credentials_never_reach_names_reports_or_the_model_cache_record():
    assert stream_name(URL) == "cam1" == source_name(URL)
    assert stream_name("rtsp://admin:s3cret@10.0.0.7") == "stream"  # no path: not the host part
    assert SourceInfo("cam1", "stream", URL, None, None, True).display == redact_url(URL)
    assert "s3cret" not in str(StreamReport("cam1", URL, "out").to_dict())
    assert "s3cret" not in str(source_fingerprint(URL, live=True))


def test_a_url_that_never_answers_fails_within_the_connect_timeout():
    """A TCP server that accepts and then says nothing: opening gives up after the timeout, naming the URL
    without its credentials."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        with pytest.raises(SourceError) as raised:
            open_source(f"rtsp://admin:s3cret@127.0.0.1:{port}/cam", connect_timeout_s=1.5)
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()
    assert time.monotonic() - start < 8  # the timeout, not FFmpeg's default of forever
    assert accepted, "the client never connected: the test did not exercise a silent server"
    message = str(raised.value)
    assert "cannot open stream within 1.5 s" in message and "s3cret" not in message and "\n" not in message


class _Capture:
    """A cv2.VideoCapture stand-in: ``script`` says, per frame, whether it arrives (grab) and decodes (retrieve)."""

    def __init__(self, script: list[tuple[bool, bool]]) -> None:
        self.script, self.position = script, 0

    def grab(self) -> bool:
        if self.position == len(self.script):
            return False
        self.position += 1
        return self.script[self.position - 1][0]

    def retrieve(self):
        ok = self.script[self.position - 1][1]
        return ok, np.full((2, 2, 3), self.position - 1, dtype=np.uint8) if ok else None

    def release(self) -> None:
        pass


def test_frames_that_arrive_but_do_not_decode_are_skipped_and_counted():
    from int8track.apps.io.sources import CaptureSource

    script = [(True, True), (True, False), (True, False), (True, True), (False, False)]
    source = CaptureSource(_Capture(script), SourceInfo("cam1", "stream", URL, 10.0, None, True))
    reader = ReadAhead(ReconnectingSource(source, _Reopener(0, []), ReconnectPolicy(timeout_s=0)),
                       drop_oldest=False)
    frames = list(reader)
    reader.close()
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 3]  # the two broken frames skipped, in order
    assert reader.decode_errors == 2 and reader.counts.received == 2
    # a stream that only delivers broken frames ends instead of spinning: max_decode_errors in a row
    broken = CaptureSource(_Capture([(True, False)] * 30), source.info, max_decode_errors=5)
    assert broken.read() is None and broken.decode_errors == 5


def test_skip_backlog_discards_queued_frames_up_to_the_live_edge():
    from int8track.apps.io.reconnect import skip_backlog

    class _Queued(_Burst):
        """12 frames already queued (instant), then one every 60 ms (live at ~16 fps, fps says 10)."""

        def read(self):
            if self.next >= 12:
                time.sleep(0.06)
            return super().read()

    source = _Queued(0, 40)
    assert skip_backlog(source) == 13  # the 12 queued and the first live one (which showed where the edge is)
    assert int(source.read()[0, 0, 0]) == 13


@pytest.mark.parametrize("kind, live, wrapped", [("stream", True, True), ("camera", True, True),
                                                  ("video", True, False), ("stream", False, False)])
def test_track_reconnects_live_cameras_and_streams_only(kind, live, wrapped):
    """A recorded file read with --live still ends at its end: reopening it would replay it."""
    import argparse

    from int8track.apps.cli.track import reconnecting

    source = _Burst(0, 1)
    source.info = SourceInfo("x", kind, "x", 10.0, None, live)
    args = argparse.Namespace(source="x", fps=None, reconnect_timeout=30.0)
    assert isinstance(reconnecting(source, args), ReconnectingSource) is wrapped
