"""A fleet of live streams (``track URL1 URL2 --workers 2``) where one URL never answers: it fails alone, with one
clear line within the connect timeout, the other stream is tracked to the end, and the credentials in both URLs
appear in no output, log, report or folder name. Real servers: GStreamer RTSP fed by ffmpeg, and a TCP server that
accepts and stays silent (``live_server.py``)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from conftest import require_data
from live_server import RtspStream, SilentServer, track_command

SECRET = "s3cret-pw"


def test_a_silent_url_fails_alone_and_no_credentials_leak(tmp_path: Path):
    video, weights = require_data("videos/vtest.avi"), require_data("weights/bytetrack_nano_mot17.onnx")
    with SilentServer() as silent_port, RtspStream(video) as live:
        dead = f"rtsp://admin:{SECRET}@127.0.0.1:{silent_port}/dead"
        # the live stream first: the fleet sizes the model on the first source that opens, and a silent one
        # would first cost its connect timeout there too
        args = [live.url_with("admin", SECRET), dead, "--workers", "2", "--weights", str(weights),
                "--max-frames", "30", "--imgsz", "416", "--threads", "1", "--no-video",
                "--output-dir", str(tmp_path)]
        start = time.monotonic()
        process = subprocess.run(track_command(*args), capture_output=True, text=True, timeout=240)
        took = time.monotonic() - start
    assert process.returncode == 1, process.stderr[-3000:]
    errors = [line for line in process.stderr.splitlines() if line.startswith("track: error:")]
    assert errors == [f"track: error: 1 of 2 streams failed: dead (see {tmp_path})"], process.stderr[-3000:]
    report = json.loads((tmp_path / "fleet_report.json").read_text())
    streams = {stream["source_id"]: stream for stream in report["streams"]}
    assert streams["cam"]["error"] is None and streams["cam"]["frames"] == 30  # the other stream went on
    failure = streams["dead"]["error"]
    assert "cannot open stream within 10 s" in failure and "\n" not in failure, failure
    assert streams["dead"]["location"] == f"rtsp://***@127.0.0.1:{silent_port}/dead"
    assert took < 200  # bounded by the connect timeout, not hung on the silent server
    for text in (process.stdout, process.stderr):
        assert SECRET not in text
    written = sorted(tmp_path.rglob("*"))
    assert written and all(SECRET not in str(path) for path in written)
    for path in written:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
