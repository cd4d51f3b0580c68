"""End to end: the `track` program on a slice of a real video with the real ByteTrack nano ONNX (fp32)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from int8track.apps.cli.track import main
from int8track.apps.pipeline.run import OutputFilter
from int8track.apps.pipeline.stages import STAGES

from conftest import require_data

FRAMES = 12


def test_track_writes_parseable_outputs(tmp_path, capsys):
    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    out = tmp_path / "out"
    code = main([str(video), "--weights", str(weights), "--max-frames", str(FRAMES), "--output-dir", str(out),
                 "--threads", "1", "--quiet"])
    assert code == 0
    rows = np.loadtxt(out / "vtest.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 10 and len(rows) > FRAMES  # several people per frame in this video
    assert set(rows[:, 0].astype(int)) <= set(range(1, FRAMES + 1)) and rows[:, 0].max() == FRAMES
    assert (rows[:, 4] * rows[:, 5] > 10).all() and (rows[:, 4] / rows[:, 5] <= 1.6).all()  # demo output filter
    capture = cv2.VideoCapture(str(out / "vtest.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    timing = json.loads((out / "vtest_timing.json").read_text())
    # the detector ran on every frame (nothing propagated), with camera motion compensation (the default there)
    # and no --reid
    ran = [s for s in STAGES if s not in ("propagate", "reid")]
    assert timing["stages"] == ran
    assert all(len(timing["samples_ns"][s]) == FRAMES for s in ran)
    assert timing["info"]["frames"] == FRAMES
    assert (out / "vtest_timing.csv").is_file() and (out / "vtest_timing.png").is_file()
    assert "infer" in capsys.readouterr().out
    assert not list(out.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("argv_tail, message", [
    (["/no/such/video.avi"], "source not found"),
])
def test_user_errors_are_one_line(argv_tail, message, capsys):
    assert main(argv_tail) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("classes, message", [("", "names no class"), (" , ", "names no class"),
                                             ("unicorn", "'unicorn' is not a class")])
def test_bad_classes_fail_before_any_calibration(classes, message, tmp_path, capsys, monkeypatch):
    video = require_data("videos/vtest.avi")
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "home"))
    argv = [str(video), "--weights", str(require_data("weights/bytetrack_nano_mot17.onnx")), "--int8",
            "--classes", classes, "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "calibrat" not in err
    assert not (tmp_path / "home").exists()  # nothing was calibrated or cached


def test_unwritable_output_dir(tmp_path, capsys):
    video = require_data("videos/vtest.avi")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([str(video), "--output-dir", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_output_filter_matches_demo_rule():
    tracks = np.array([[0, 0, 10, 20, 1], [0, 0, 2, 2, 2], [0, 0, 40, 20, 3], [0, 0, 16, 10, 4]], dtype=float)
    kept = OutputFilter(min_box_area=10, aspect_ratio_thresh=1.6)(tracks)
    assert kept[:, 4].tolist() == [1.0, 4.0]  # area 4 too small; w/h 2.0 too wide; w/h 1.6 kept


def test_int8_calibrates_once_per_source_then_reuses_the_cached_model(tmp_path, capsys, monkeypatch):
    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "cache"))
    options = ["--weights", str(weights), "--int8", "--calib-frames", "4", "--threads", "1", "--no-video", "--quiet"]
    argv = [str(video), *options, "--max-frames", "6"]

    assert main([*argv, "--output-dir", str(tmp_path / "first")]) == 0
    first = capsys.readouterr()
    assert "calibrated and cached int8 model" in first.err
    (cached,) = (tmp_path / "cache" / "int8").glob("*.onnx")
    assert main([*argv, "--output-dir", str(tmp_path / "second")]) == 0
    assert f"reusing cached int8 model {cached} (calibrated on 4 frames of {video.resolve()})" in \
        capsys.readouterr().err
    assert list((tmp_path / "cache" / "int8").glob("*.onnx")) == [cached]

    other = require_data("MOT15/train/PETS09-S2L1")  # another source must not reuse the model of the video
    assert main([str(other), *options, "--max-frames", "2", "--output-dir", str(tmp_path / "other")]) == 0
    assert "calibrated and cached int8 model" in capsys.readouterr().err
    assert len(list((tmp_path / "cache" / "int8").glob("*.onnx"))) == 2

    timing = json.loads((tmp_path / "first" / "vtest_timing.json").read_text())
    int8 = timing["info"]["int8"]  # the decisions behind the model, beside its timings
    assert timing["info"]["int8_requested"] is True
    # the precision says what ran: a model that stayed float (not faster, or no plan reached the floor) is fp32
    ran_int8 = int8["int8_faster"] and not int8["all_float"] and int8["quantized_convs"] > 0
    assert timing["info"]["precision"] == ("int8" if ran_int8 else "fp32")
    if not ran_int8:
        assert timing["info"]["precision_label"].startswith("fp32 (int8 requested: ")
    assert int8["agreement"]["high"] >= int8["floor"]["high"] and int8["agreement"]["low"] >= int8["floor"]["low"]
    assert int8["quantized_convs"] + int8["float_convs"] > 90 and int8["calibration_seconds"] > 0
    assert "int8: floor (" in first.err
    first_rows = np.loadtxt(tmp_path / "first" / "vtest.txt", delimiter=",", ndmin=2)
    second_rows = np.loadtxt(tmp_path / "second" / "vtest.txt", delimiter=",", ndmin=2)
    assert len(first_rows) > 6  # the int8 detector still finds several people per frame
    np.testing.assert_array_equal(first_rows, second_rows)  # the cached model is the one calibrated


def test_int8_target_reaches_the_quantizer_and_the_cache_key(tmp_path, capsys, monkeypatch):
    from int8track import quant
    from int8track.apps.models import cache as model_cache

    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "cache"))
    seen = []

    def spy(detector, frames, config, path, before):  # records the settings, quantizes here without the slow search
        seen.append(config)
        calibration_frames = frames()
        before()
        quant.quantize_detector(detector, calibration_frames, config, target_agreement=None, ranking="local",
                                speed_table=model_cache.speed_table_root()).save(path)

    monkeypatch.setattr(model_cache, "quantize_in_child", spy)
    argv = [str(video), "--weights", str(weights), "--int8", "--int8-target", "0.9", "--calib-frames", "4",
            "--threads", "1", "--no-video", "--quiet", "--max-frames", "2", "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 0
    assert [(c.target_agreement, c.ranking) for c in seen] == [(0.9, "full")]
    (record,) = (tmp_path / "cache" / "int8").glob("*.json")
    assert json.loads(record.read_text())["settings"]["quant"]["target_agreement"] == 0.9
    for bad in ("1.5", "0", "high"):
        with pytest.raises(SystemExit) as exit_info:
            main([str(video), "--int8", "--int8-target", bad])
        assert exit_info.value.code == 2 and "--int8-target" in capsys.readouterr().err
