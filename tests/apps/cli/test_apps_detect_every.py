"""`track --detect-every`: the detector on some frames, every frame still tracked, written and drawn."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from int8track.apps.cli.track import main
from int8track.apps.cli.track_options import identity_problem
from int8track.apps.io.writers import read_tracks_json
from int8track.tracker.schedule import DetectionSchedule

from conftest import require_data

FRAMES = 12


def _run(tmp_path, name: str, *extra: str) -> tuple[int, object]:
    out = tmp_path / name
    argv = [str(require_data("videos/vtest.avi")), "--weights", str(require_data("weights/bytetrack_nano_mot17.onnx")),
            "--max-frames", str(FRAMES), "--threads", "1", "--quiet", "--output-dir", str(out), *extra]
    return main(argv), out


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    code, out = _run(tmp_path_factory.mktemp("plain"), "plain", "--no-video")
    assert code == 0
    return out


def test_detect_every_1_is_todays_track_byte_for_byte(plain, tmp_path):
    code, out = _run(tmp_path, "k1", "--no-video", "--detect-every", "1")
    assert code == 0
    assert (out / "vtest.txt").read_bytes() == (plain / "vtest.txt").read_bytes()
    info = json.loads((out / "vtest_timing.json").read_text())["info"]
    assert info["detector_calls"] == FRAMES and info["frames_propagated"] == 0


def test_detect_every_3_tracks_every_frame_and_says_which_were_predicted(plain, tmp_path):
    code, out = _run(tmp_path, "k3", "--detect-every", "3")
    assert code == 0
    rows = np.loadtxt(out / "vtest.txt", delimiter=",", ndmin=2)
    assert set(rows[:, 0].astype(int)) == set(range(1, FRAMES + 1))  # every frame has tracks, not only 1, 4, 7, 10
    plain_rows = np.loadtxt(plain / "vtest.txt", delimiter=",", ndmin=2)
    for frame in (1, 4, 7, 10):  # detection frames: about as many people as with a detector on every frame
        assert abs((rows[:, 0] == frame).sum() - (plain_rows[:, 0] == frame).sum()) <= 2
    frames = read_tracks_json(out / "vtest_tracks.jsonl")
    assert [f["frame"] for f in frames] == list(range(1, FRAMES + 1))
    for record in frames:
        detected = (record["frame"] - 1) % 3 == 0
        for track in record["tracks"]:
            assert track["predicted"] is (not detected) and (track["det_index"] >= 0) is detected
    info = json.loads((out / "vtest_timing.json").read_text())["info"]
    assert info["detect_every"] == "3" and info["propagation"] == "optical flow"
    assert info["detector_calls"] == 4 and info["frames_propagated"] == FRAMES - 4
    assert info["propagate_ms_per_frame"] > 0
    timing = json.loads((out / "vtest_timing.json").read_text())
    assert "propagate" in timing["stages"] and sum(v > 0 for v in timing["samples_ns"]["propagate"]) == FRAMES - 4
    capture = cv2.VideoCapture(str(out / "vtest.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES


def test_auto_on_a_file_is_reproducible_and_saves_detector_calls(tmp_path):
    outputs = []
    for name in ("a", "b"):
        code, out = _run(tmp_path, name, "--no-video", "--detect-every", "auto")
        assert code == 0
        outputs.append(out)
    assert (outputs[0] / "vtest.txt").read_bytes() == (outputs[1] / "vtest.txt").read_bytes()
    info = json.loads((outputs[0] / "vtest_timing.json").read_text())["info"]
    assert info["detect_every"] == "auto"
    # vtest.avi says 10 fps: at most 2 frames between detector calls, more calls where the flow loses people
    assert FRAMES / 2 <= info["detector_calls"] < FRAMES


def test_kalman_only_between_calls(tmp_path):
    code, out = _run(tmp_path, "kalman", "--no-video", "--detect-every", "2", "--no-flow")
    assert code == 0
    info = json.loads((out / "vtest_timing.json").read_text())["info"]
    assert info["propagation"] == "Kalman" and info["detector_calls"] == FRAMES // 2


@pytest.mark.parametrize("value", ["0", "-2", "often", "2.5"])
def test_bad_intervals_are_one_line_errors(value, tmp_path, capsys):
    code, out = _run(tmp_path, "bad", "--detect-every", value)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--detect-every" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_interpolate_fills_gaps_of_the_mot_file_only(plain, tmp_path, capsys):
    code, out = _run(tmp_path, "interp", "--no-video", "--interpolate", "5")
    assert code == 0
    assert "boxes added" in capsys.readouterr().err
    filled = np.loadtxt(out / "vtest.txt", delimiter=",", ndmin=2)
    original = np.loadtxt(plain / "vtest.txt", delimiter=",", ndmin=2)
    assert len(filled) >= len(original)
    kept = {tuple(row[:2]) for row in original}
    assert kept <= {tuple(row[:2]) for row in filled}  # every tracked box is still there
    assert len(read_tracks_json(out / "vtest_tracks.jsonl")) == FRAMES  # the live outputs stay causal


def test_interpolate_redraws_the_boxes_between_detector_calls(tmp_path, capsys):
    """``--detect-every 2 --interpolate``: in the MOT file, a box between two detector calls that found the track
    on both sides is redrawn halfway between them; detected boxes, the tracks file and the rest stay."""
    code, flow = _run(tmp_path, "flow", "--no-video", "--detect-every", "2")
    assert code == 0
    code, redrawn = _run(tmp_path, "redrawn", "--no-video", "--detect-every", "2", "--interpolate", "5")
    assert code == 0
    err = capsys.readouterr().err
    assert "boxes between detector calls redrawn" in err
    before = {(int(r[0]), int(r[1])): r[2:6] for r in np.loadtxt(flow / "vtest.txt", delimiter=",", ndmin=2)}
    after = {(int(r[0]), int(r[1])): r[2:6] for r in np.loadtxt(redrawn / "vtest.txt", delimiter=",", ndmin=2)}
    assert after.keys() >= before.keys()
    changed = 0
    for (frame, track), box in before.items():
        if frame % 2 == 1:  # detector frames 1, 3, 5, ...: as tracked
            np.testing.assert_array_equal(after[frame, track], box)
            continue
        sides = [before.get((frame + step, track)) for step in (-1, 1)]
        if not np.array_equal(after[frame, track], box):
            assert all(side is not None for side in sides)
            np.testing.assert_allclose(after[frame, track], (sides[0] + sides[1]) / 2, atol=0.011)
            changed += 1
    assert changed >= 5
    assert (redrawn / "vtest_tracks.jsonl").read_bytes() == (flow / "vtest_tracks.jsonl").read_bytes()


def test_a_fleet_reports_each_streams_detection_rate_and_propagated_share(tmp_path):
    video = require_data("videos/vtest.avi")
    sequence = require_data("MOT17-mini/train/MOT17-05-FRCNN")
    out = tmp_path / "fleet"
    argv = [str(video), str(sequence), "--weights", str(require_data("weights/bytetrack_nano_mot17.onnx")),
            "--max-frames", "6", "--workers", "1", "--threads", "1", "--no-video", "--quiet",
            "--output-dir", str(out), "--detect-every", "2"]
    assert main(argv) == 0
    streams = json.loads((out / "fleet_report.json").read_text())["streams"]
    assert len(streams) == 2
    for stream in streams:
        assert stream["frames"] == 6 and stream["detector_calls"] == 3 and stream["propagated_share"] == 0.5


def test_cmc_is_on_for_every_frame_tracking_and_off_between_detector_calls(plain, tmp_path):
    """Default ``track``: camera motion compensation wherever the detector runs on every frame; ``--no-cmc`` and
    ``--detect-every`` (its optical flow follows the camera) run without it."""
    stages = {name: json.loads((out / "vtest_timing.json").read_text())["stages"]
              for name, out in (("plain", plain), ("off", _run(tmp_path, "off", "--no-video", "--no-cmc")[1]),
                                ("k2", _run(tmp_path, "k2", "--no-video", "--detect-every", "2")[1]))}
    assert "cmc" in stages["plain"] and "cmc" not in stages["off"] and "cmc" not in stages["k2"]
    # on this static camera the compensated tracks are the uncompensated ones, to a fraction of a pixel
    with_cmc = np.loadtxt(plain / "vtest.txt", delimiter=",", ndmin=2)
    without = np.loadtxt(tmp_path / "off" / "vtest.txt", delimiter=",", ndmin=2)
    assert with_cmc.shape == without.shape and np.array_equal(with_cmc[:, :2], without[:, :2])
    assert np.abs(with_cmc[:, 2:6] - without[:, 2:6]).max() < 1.0


def test_cmc_and_reid_through_the_front_door(plain, tmp_path, capsys):
    weights = require_data("weights/osnet_x0_25_msmt17.onnx")
    code, out = _run(tmp_path, "reid", "--no-video", "--cmc", "--reid", str(weights))
    assert code == 0
    timing = json.loads((out / "vtest_timing.json").read_text())
    assert "cmc" in timing["stages"] and "reid" in timing["stages"]
    rows = np.loadtxt(out / "vtest.txt", delimiter=",", ndmin=2)
    assert set(rows[:, 0].astype(int)) == set(np.loadtxt(plain / "vtest.txt", delimiter=",", ndmin=2)[:, 0].astype(int))
    code, _ = _run(tmp_path, "missing", "--reid", str(tmp_path / "nope.onnx"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "nope.onnx" in err[-1] and "not found" in err[-1]
    code, _ = _run(tmp_path, "reid-k2", "--reid", str(weights), "--detect-every", "2")
    assert code == 2 and "--detect-every 1" in capsys.readouterr().err.strip().splitlines()[-1]
    code, _ = _run(tmp_path, "cmc-kalman", "--cmc", "--detect-every", "2", "--no-flow")
    assert code == 2 and "--no-flow" in capsys.readouterr().err.strip().splitlines()[-1]


def test_live_default_schedule_problems_name_what_the_user_can_change():
    """A live source runs auto unless told otherwise: the line says what to add, not an option never given."""
    auto = DetectionSchedule.parse("auto")
    assert identity_problem(False, True, auto) is None  # --cmc: the flow follows the camera between calls
    assert identity_problem(False, None, DetectionSchedule.parse("3", flow=False)) is None
    reid = identity_problem(True, None, auto)
    assert reid is not None and "--detect-every 1" in reid and "auto" in reid
    kalman = identity_problem(False, True, DetectionSchedule.parse("auto", flow=False))
    assert kalman is not None and "--no-flow" in kalman
