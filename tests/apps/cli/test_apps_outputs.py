"""`track` outputs beyond the MOT file, option range checks, and a recorded video served over HTTP."""
from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from int8track import frames
from int8track.apps.cli.track import main
from int8track.apps.io.motchallenge import read_results
from int8track.apps.io.sources import open_source
from int8track.apps.io.writers import CODECS, read_tracks_json
from int8track.apps.models.cache import source_fingerprint
from int8track.quant.calibration import load_frames

from conftest import require_data

FRAMES = 12


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def test_tracks_file_matches_the_mot_file_and_the_detections(tmp_path):
    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    out = tmp_path / "out"
    assert main([str(video), "--weights", str(weights), "--max-frames", str(FRAMES), "--output-dir", str(out),
                 "--threads", "1", "--quiet", "--class-aware"]) == 0
    frames = read_tracks_json(out / "vtest_tracks.jsonl")
    assert [f["frame"] for f in frames] == list(range(1, FRAMES + 1))
    mot = np.loadtxt(out / "vtest.txt", delimiter=",", ndmin=2)
    assert mot.shape[1] == 10  # MOTChallenge's result columns, nothing added
    rows = [(f["frame"], t["id"], *t["box"]) for f in frames for t in f["tracks"]]
    assert len(rows) == len(mot)
    as_mot = np.array([(fr, i, x1, y1, x2 - x1, y2 - y1) for fr, i, x1, y1, x2, y2 in rows])
    order = np.lexsort((mot[:, 1], mot[:, 0]))
    np.testing.assert_allclose(as_mot[np.lexsort((as_mot[:, 1], as_mot[:, 0]))], mot[order, :6], atol=0.02)
    tracks = frames[-1]["tracks"]
    assert {t["class_name"] for t in tracks} == {"person"} and {t["class_id"] for t in tracks} == {0}
    # det_index points at the detection the track was updated with on that frame: recompute the detections
    from int8track.detectors import load_detector

    info = json.loads((out / "vtest_timing.json").read_text())["info"]
    size = tuple(int(side) for side in info["input_size"].split("x"))  # the run's (fitted) input size
    detector = load_detector(str(weights), backend="onnxruntime", num_threads=1).with_input_size(size)
    detector = detector.with_classes([0])
    capture = cv2.VideoCapture(str(video))
    for _ in range(FRAMES):
        ok, image = capture.read()
    detections = detector(image)
    matched = [t for t in tracks if t["det_index"] >= 0]
    assert matched
    for track in matched:
        det = detections[track["det_index"]]
        assert _iou(np.array(track["box"]), det[:4]) > 0.5 and track["score"] == pytest.approx(det[4], abs=1e-4)
    assert info["video_codec"] in CODECS and info["read_mode"] == "every frame"


def test_no_save_tracks(tmp_path):
    video = require_data("videos/vtest.avi")
    out = tmp_path / "out"
    assert main([str(video), "--weights", str(require_data("weights/bytetrack_nano_mot17.onnx")), "--max-frames",
                 "2", "--output-dir", str(out), "--quiet", "--no-save-tracks", "--no-video"]) == 0
    assert (out / "vtest.txt").is_file() and not (out / "vtest_tracks.jsonl").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--conf", "2", "--conf 2: must be in [0, 1]"),
    ("--max-frames", "-3", "--max-frames -3: must be >= 1"),
    ("--track-thresh", "-0.1", "argument --track-thresh: -0.1 is not a score in [0, 1]"),
    ("--match-thresh", "1.5", "--match-thresh 1.5: must be in [0, 1]"),
    ("--nms", "nan", "--nms nan: must be a finite number"),
    ("--threads", "0", "--threads 0: must be >= 1"),
    ("--fps", "0", "--fps 0: must be > 0"),
    ("--track-buffer", "-1", "argument --track-buffer: -1 is not an integer >= 0"),
    ("--calib-frames", "0", "argument --calib-frames: 0: need at least 2 frames (calibration and held-out)"),
    ("--min-box-area", "-5", "--min-box-area -5: must be >= 0"),
])
def test_numeric_options_out_of_range_are_one_line_errors(option, value, message, capsys, tmp_path):
    try:
        code = main(["/no/such/video.avi", option, value, "--output-dir", str(tmp_path)])
    except SystemExit as exit_:  # options with an argparse type check exit(2) after the usage line
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"track: error: {message}"  # checked before the source is even opened
    assert "Traceback" not in err


@pytest.fixture
def http_folder(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1 (a free port) for the test's duration; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _write_clip(path: Path, video: Path, frames: int) -> None:
    capture = cv2.VideoCapture(str(video))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    for _ in range(frames):
        ok, image = capture.read()
        assert ok
        writer.write(image)
    writer.release()


def test_recorded_video_behind_a_url_is_read_like_a_file(http_folder, tmp_path):
    folder, base = http_folder
    video = require_data("videos/vtest.avi")
    clip_frames = 30
    _write_clip(folder / "clip.avi", video, clip_frames)
    (folder / "vtest.avi").symlink_to(video.resolve())
    with open_source(f"{base}/vtest.avi") as source:
        assert not source.info.is_live and source.info.frame_count == 795
    with open_source(f"{base}/vtest.avi", live=True) as source:
        assert source.info.is_live and source.info.frame_count is None
    out = tmp_path / "out"
    code = main([f"{base}/clip.avi", "--weights", str(require_data("weights/bytetrack_nano_mot17.onnx")),
                 "--output-dir", str(out), "--threads", "1", "--quiet", "--no-video"])
    assert code == 0  # a normal end of file, not "stream stopped delivering frames"
    info = json.loads((out / "clip_timing.json").read_text())["info"]
    assert info["frames"] == clip_frames and info["dropped_frames"] == 0 and info["read_mode"] == "every frame"
    assert read_results(out / "clip.txt").frames.max() == clip_frames


def test_live_schemes_and_forced_live_files(tmp_path):
    video = require_data("videos/vtest.avi")
    with open_source(video) as source:
        assert not source.info.is_live
    with open_source(video, live=True) as source:
        assert source.info.is_live


def test_a_recorded_url_can_be_a_calibration_source(http_folder):
    folder, base = http_folder
    video = require_data("videos/vtest.avi")
    _write_clip(folder / "clip.avi", video, 9)
    url = f"{base}/clip.avi"
    local = frames.video_frames(folder / "clip.avi", num=3)
    remote = load_frames(url, num=3)
    assert len(remote) == 3
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_array_equal(a, b)
    with open_source(url) as source:
        # known by the URL, nothing to stat (as prepare_detector fingerprints a stream read like a file)
        assert source.info.kind == "stream"
        assert source_fingerprint(source.info.location, live=True) == {"live": url}
