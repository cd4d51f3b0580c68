"""One frame reader for tracking, MOT sequences and calibration (int8track.frames)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from int8track import frames
from int8track.apps.cli.track import main
from int8track.apps.io.sources import open_source
from int8track.quant.calibration import load_frames

from conftest import require_data

NUM_FRAMES = 5


@pytest.fixture
def webp_folder(tmp_path):
    """Real PETS09 frames re-encoded as WebP (an extension the calibration reader used to ignore)."""
    sequence = require_data("MOT15/train/PETS09-S2L1/img1")
    folder = tmp_path / "webp"
    folder.mkdir()
    for path in frames.list_images(sequence)[:NUM_FRAMES]:
        assert cv2.imwrite(str(folder / f"{path.stem}.webp"), cv2.imread(str(path)))
    return folder


def test_tracking_and_calibration_read_the_same_webp_frames(webp_folder):
    expected = [cv2.imread(str(p)) for p in sorted(webp_folder.glob("*.webp"))]
    with open_source(webp_folder) as source:
        tracked = [source.read() for _ in range(NUM_FRAMES)]
        assert source.read() is None and source.info.frame_count == NUM_FRAMES
    calibration = load_frames(webp_folder, num=None)
    assert len(calibration) == len(tracked) == NUM_FRAMES
    for a, b, c in zip(expected, tracked, calibration, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert [f.sum() for f in load_frames(webp_folder, num=2)] == [expected[0].sum(), expected[-1].sum()]


def test_mot_sequence_video_and_errors():
    sequence = require_data("MOT15/train/PETS09-S2L1")
    video = require_data("videos/vtest.avi")
    first = load_frames(sequence, num=None, offset=0, step=400)
    assert len(first) == 2  # 795 frames, every 400th from 0
    np.testing.assert_array_equal(first[0], cv2.imread(str(sequence / "img1" / "000001.jpg")))
    clip = frames.video_frames(video, num=3)
    assert len(clip) == 3 and clip[0].shape == (576, 768, 3)
    with pytest.raises(FileNotFoundError, match="frame source not found"):
        frames.load_frames(sequence / "nowhere")


def test_track_int8_on_a_webp_folder_calibrates_on_it(webp_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "home"))
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    out = tmp_path / "out"
    assert main([str(webp_folder), "--weights", str(weights), "--int8", "--calib-frames", "2", "--threads", "1",
                 "--quiet", "--no-video", "--output-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "calibrated and cached int8 model" in err and f"calibrated on 2 frames of {webp_folder.resolve()}" in err
    info = json.loads((out / "webp_timing.json").read_text())["info"]
    assert info["frames"] == NUM_FRAMES and info["int8"]["calibration_frames"] >= 1
    # int8 ships only where this CPU runs it clearly faster (an AVX2-only CPU may not): fp32 then says why
    assert info["precision"] == "int8" or info["int8"]["accepted"].startswith("fp32 ("), info["int8"]["accepted"]
    assert len(np.loadtxt(out / "webp.txt", delimiter=",", ndmin=2)) >= NUM_FRAMES  # people found in every frame
