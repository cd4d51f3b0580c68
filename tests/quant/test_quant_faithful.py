"""`track --int8` faithful every time: the same plan whatever the CPU is doing, the `quantize` command's model is
the in-memory one, and the report's fields exist and parse."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from int8track.quant import QuantReport, quantize_detector
from int8track.quant.calibration import load_frames

from conftest import require_data

SMALL_INPUT = (192, 256)  # 4:3 like PETS09; small so two quantizations fit in a test on a shared CPU


@pytest.fixture(scope="module")
def small_bytetrack():
    from int8track.detectors import Detector, TorchRunner, load_detector

    loaded = load_detector(require_data("weights/bytetrack_nano_mot17.onnx"))
    det = Detector(loaded.spec.replace(input_size=SMALL_INPUT), TorchRunner(loaded.model), loaded.model)
    return det, load_frames(require_data("MOT15/train/PETS09-S2L1"), num=6)


def _busy_cores(count: int = 2) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def test_the_same_plan_while_other_processes_keep_both_cores_busy(small_bytetrack, tmp_path):
    """Statistics, observer choice, GPTQ and the floor are deterministic; the speed plan is measured once per graph
    and machine (``quant.speed_table``) because its timings are not, and the busy run reuses it."""
    det, frames = small_bytetrack
    speeds = tmp_path / "speed"
    quiet = quantize_detector(det, frames, held_out_frames=2, num_threads=1, speed_table=speeds, progress=False)
    busy_loops = _busy_cores()
    try:
        busy = quantize_detector(det, frames, held_out_frames=2, num_threads=1, speed_table=speeds, progress=False)
    finally:
        for proc in busy_loops:
            proc.kill()
            proc.wait()
    assert quiet.quant_info.speed_ms and quiet.quant_info.extra["speed_timings"] == "measured now"
    assert busy.quant_info.extra["speed_timings"] == "reused from the speed table"
    assert busy.quant_info.speed_choice == quiet.quant_info.speed_choice
    assert busy.quant_info.accepted == quiet.quant_info.accepted
    assert busy.quant_info.observer_scores == quiet.quant_info.observer_scores
    assert busy.quant_info.agreement == quiet.quant_info.agreement
    assert busy.plan.quantized == quiet.plan.quantized and busy.plan.ranges == quiet.plan.ranges
    assert sorted(busy.plan.rounded) == sorted(quiet.plan.rounded)
    for name, weights in quiet.plan.rounded.items():
        np.testing.assert_array_equal(busy.plan.rounded[name], weights)
    for frame in frames:
        np.testing.assert_array_equal(busy(frame), quiet(frame))


def test_quantize_command_writes_the_model_track_runs_without_calibrating(tmp_path, capsys, monkeypatch):
    from int8track.apps.cli.model_options import quant_config_from_args
    from int8track.apps.cli.quantize import build_parser, main
    from int8track.apps.cli.track import main as track
    from int8track.detectors import load_detector

    weights = require_data("weights/yolox_nano.onnx")
    calib = require_data("MOT17-mini/train/MOT17-05-FRCNN")
    out, report_path = tmp_path / "yolox_nano_int8.onnx", tmp_path / "report.json"
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "home"))
    argv = [str(weights), "--calib", str(calib), "--calib-frames", "6", "--threads", "1", "-o", str(out),
            "--report", str(report_path), "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "quantize: int8: floor (fp32 vs fp32 on JPEG q95)" in err and "calibration" in err

    report = QuantReport.from_dict(json.loads(report_path.read_text()))
    assert report.agreement["high"] >= report.floor["high"] and report.agreement["low"] >= report.floor["low"]
    assert report.calibration_frames + report.eval_frames == 6
    # whether int8 pays off is this machine's timing (stored in the speed table, so both quantizations below
    # agree); with int8 kept, an observer was chosen, else the model is all float and says why
    if report.int8_faster:
        assert report.observer in ("percentile", "minmax") and report.quantized_convs > 0
    else:
        assert report.all_float and "not faster" in report.accepted
    assert report.speed_choice in report.speed_ms and report.seconds and report.frames_per_second

    # the in-memory int8 detector made with the same settings and frames gives the same detections
    detector = load_detector(str(weights), backend="onnxruntime", num_threads=1).with_classes([0])
    in_memory = quantize_detector(detector, load_frames(calib, 6), quant_config_from_args(build_parser().parse_args(argv)),
                                  num_threads=1, speed_table=tmp_path / "home" / "speed", progress=False)
    assert in_memory.quant_info.speed_choice == report.speed_choice
    saved = load_detector(str(out), backend="onnxruntime", num_threads=1, classes=[0])
    for frame in load_frames(calib, 3, offset=1, step=7):
        np.testing.assert_array_equal(saved(frame), in_memory(frame))

    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "cache"))
    assert track([str(calib), "--weights", str(out), "--max-frames", "3", "--no-video", "--quiet", "--threads", "1",
                  "--output-dir", str(tmp_path / "track")]) == 0
    assert "calibrat" not in capsys.readouterr().err and not (tmp_path / "cache").exists()
    rows = np.loadtxt(tmp_path / "track" / f"{calib.name}.txt", delimiter=",", ndmin=2)
    assert len(rows) > 0


@pytest.mark.parametrize("argv, message", [
    (["missing.onnx", "--calib", "."], "missing.onnx: weights file not found"),
    (["WEIGHTS", "--calib", "nowhere"], "nowhere: calibration source not found"),
    (["WEIGHTS", "--calib", "CALIB", "--int8-observer", "median"], "unknown observer 'median'"),
])
def test_quantize_errors_are_one_line(argv, message, capsys):
    from int8track.apps.cli.quantize import main

    weights, calib = require_data("weights/yolox_nano.onnx"), require_data("MOT17-mini/train/MOT17-05-FRCNN")
    argv = [str(weights) if a == "WEIGHTS" else str(calib) if a == "CALIB" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("quantize: error: ") and message in err and "\n" not in err
