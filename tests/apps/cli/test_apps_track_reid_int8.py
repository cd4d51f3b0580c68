"""``track --reid --int8``: the embedder quantized on the calibration frames' person crops, run int8 only where
faithful and faster, the decision said, recorded in the timing JSON and cached per camera and machine."""
from __future__ import annotations

import json

import numpy as np

from int8track.apps.cli.track import main
from int8track.apps.io.sources import open_source
from int8track.apps.models.input_fit import PeekedSource
from int8track.apps.models.reid_int8 import choose_embedder
from int8track.apps.models.request import CalibrationRequest

from conftest import require_data


def test_track_reid_int8_decides_says_and_caches_the_embedders_precision(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "home"))
    sequence = require_data("MOT17-mini/train/MOT17-05-FRCNN")
    argv = [str(sequence), "--int8", "--calib-frames", "8", "--max-frames", "4", "--no-video", "--quiet",
            "--reid", str(require_data("weights/osnet_x0_25_msmt17.onnx")),
            "--weights", str(require_data("weights/bytetrack_nano_mot17.onnx")), "--threads", "1"]
    assert main([*argv, "--output-dir", str(tmp_path / "first")]) == 0
    err = capsys.readouterr().err
    (line,) = [text for text in err.splitlines() if text.startswith("track: int8 embedder: ")]
    info = json.loads((tmp_path / "first" / "MOT17-05-FRCNN_timing.json").read_text())["info"]
    assert info["reid_precision"] in ("int8", "fp32") and line == f"track: {info['reid_int8']}"
    assert info["reid_int8"].startswith(f"int8 embedder: {info['reid_precision']}")
    if info["reid_precision"] == "fp32":  # says why: the floor, the speed, or too few people
        assert "below the floor" in line or "not 15% faster" in line or "too few people" in line
    (record,) = (tmp_path / "home" / "int8" / "reid").glob("*.json")
    assert json.loads(record.read_text())["line"] == info["reid_int8"]
    assert main([*argv, "--output-dir", str(tmp_path / "second")]) == 0  # same camera and machine: reused
    assert f"track: reusing cached {info['reid_int8']}" in capsys.readouterr().err


def test_too_few_people_in_the_calibration_frames_keeps_the_embedder_fp32(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "home"))
    sequence = require_data("MOT17-mini/train/MOT17-05-FRCNN")
    source = PeekedSource(open_source(sequence))
    weights = require_data("weights/osnet_x0_25_msmt17.onnx")
    lines: list[str] = []
    choice = choose_embedder(weights, CalibrationRequest(frames=4), source, lambda frame: np.empty((0, 6)), [0],
                             lines.append)
    source.close()
    assert (choice.precision, choice.weights, choice.reused) == ("fp32", weights, False)
    assert "too few people: 0 + 0 crops" in choice.line and lines[0].startswith("calibrating the int8 embedder")
