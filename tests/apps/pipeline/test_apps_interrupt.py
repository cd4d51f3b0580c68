"""Ctrl-C and SIGTERM end a real `track` process cleanly: outputs of the frames processed, exit 128 + signal."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from int8track.apps.io.motchallenge import read_results
from int8track.apps.pipeline.interrupt import StopOnSignal

from conftest import PROJECT_ROOT, require_data

REPO_PARENT = PROJECT_ROOT.parent
STARTUP_TIMEOUT_S = 120.0


def _start_track(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "int8track.apps.cli.track", str(video), "--weights", str(weights),
               "--output-dir", str(out), "--threads", "1", "--max-frames", "400"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, out


def _wait_until_tracking(process: subprocess.Popen) -> list[str]:
    """Stderr lines up to the progress start line (stderr is a pipe, so progress is plain lines)."""
    lines: list[str] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("vtest: started"):
            return lines
    process.kill()
    pytest.fail(f"track did not start tracking: {''.join(lines)}")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_keeps_the_outputs_of_the_frames_processed(tmp_path, sig, code):
    process, out = _start_track(tmp_path)
    _wait_until_tracking(process)
    time.sleep(2.0)  # some frames tracked, far from the 400 asked for
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and f"stopped by {sig.name}" in stderr
    timing = json.loads((out / "vtest_timing.json").read_text())["info"]
    frames = timing["frames"]
    assert timing["interrupted"] is True and timing["interrupted_at_frame"] == frames
    assert frames - 9 <= timing["stop_requested_after_frame"] <= frames  # at most the 8 decoded ahead + 1 more
    assert 0 < frames < 400
    results = read_results(out / "vtest.txt")  # parses as MOTChallenge results
    assert results.frames.max() == frames  # people are in every frame of this video
    capture = cv2.VideoCapture(str(out / "vtest.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    assert f"{frames} frames" in stdout
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_second_signal_aborts_without_half_written_files(tmp_path):
    process, out = _start_track(tmp_path)
    lines = _wait_until_tracking(process)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    assert process.stderr is not None
    while not any("SIGINT received" in line for line in lines):
        line = process.stderr.readline()
        assert line, f"track ended before announcing the stop: {''.join(lines)}"
        lines.append(line)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not list(out.glob(".*"))  # an aborted writer deletes its temporary file
    if "interrupted by a second signal" in stderr and (out / "vtest.txt").exists():
        read_results(out / "vtest.txt")  # only a finished results file is ever renamed into place


def test_stop_on_signal_restores_handlers_and_reports_the_code():
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal(announce=False) as stop:
        assert not stop.requested and stop.exit_code is None
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested and stop.exit_code == 143 and stop.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_during_int8_calibration_stops_the_calibration_process(tmp_path):
    """Calibration runs in a child process (``apps.model_cache.quantize_in_child``): Ctrl-C on the process group
    (what a terminal sends) ends both at once, not when the calibration would have finished, and caches nothing."""
    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    home = tmp_path / "home"
    command = [sys.executable, "-m", "int8track.apps.cli.track", str(video), "--weights", str(weights), "--int8",
               "--output-dir", str(tmp_path / "out"), "--no-video", "--max-frames", "5"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "INT8TRACK_HOME": str(home)}, start_new_session=True)
    assert process.stderr is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:  # the child prints its steps on the same stderr
        line = process.stderr.readline()
        if not line or line.startswith("int8: reading frames"):
            break
    time.sleep(1.0)
    signalled = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - signalled < 10.0  # a full calibration takes 15 s and more here
    assert "Traceback" not in stderr and "interrupted before tracking started" in stderr
    assert not list((home / "int8").glob("*.onnx"))  # no model cached from an interrupted calibration
