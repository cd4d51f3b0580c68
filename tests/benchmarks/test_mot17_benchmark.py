"""The MOT17 benchmark end to end on the 48-frame MOT17-05 excerpt: results files, metrics, JSON report."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks import mot17
from int8track.apps.io.motchallenge import read_results

from conftest import require_data


def test_benchmark_main_writes_results_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = require_data("MOT17-mini/train")
    report_path = tmp_path / "report.json"
    assert mot17.main(["--data", str(data), "--detections", "public", "--out-dir", str(tmp_path / "res"),
                       "--json", str(report_path), "--track-thresh", "0.6"]) == 0

    report = json.loads(report_path.read_text())
    tracker = report["settings"]["tracker"]
    assert (tracker["track_high_thresh"], tracker["new_track_thresh"]) == (0.6, 0.7)  # official vocabulary: T, T + 0.1
    row = report["sequences"]["MOT17-05-FRCNN"]
    metrics = row["metrics"]
    with open(data / "MOT17-05-FRCNN" / "gt" / "gt.txt", newline="") as handle:
        scored_gt = sum(1 for r in csv.reader(handle) if r and r[6] == "1" and r[7] == "1")
    assert metrics["num_objects"] == scored_gt  # only considered pedestrians are scored
    for key in ("mota", "idf1", "num_switches", "num_false_positives", "num_misses", "motp", "recall"):
        assert key in metrics
    assert metrics["mota"] == pytest.approx(1 - (metrics["num_misses"] + metrics["num_false_positives"]
                                                 + metrics["num_switches"]) / scored_gt)
    assert all(0.2 < metrics[key] < 1 for key in ("hota", "deta", "assa"))  # values checked in test_evaluation
    assert 0.3 < metrics["recall"] < 1  # the tracker really follows people on the public detections
    assert row["frames"] == 48 and set(row["tracker_ms"]) >= {"median", "mean"}
    assert {stage["stage"] for stage in row["stages"]} >= {"track_predict", "track_association", "total"}
    assert report["overall"]["metrics"] == metrics  # one sequence: pooled = per sequence

    results = read_results(row["results_file"])
    assert results.frames.max() <= 48 and len(results) >= metrics["num_predictions"] > 0
    output = capsys.readouterr().out
    assert "MOT17-05-FRCNN" in output and "OVERALL" in output and "MOTA" in output and "HOTA" in output


def test_detector_mode_runs_the_real_detector_on_images_and_scores_it(tmp_path: Path) -> None:
    data = require_data("MOT17-mini/train/MOT17-05-FRCNN")
    require_data("weights/bytetrack_nano_mot17.onnx")
    report_path = tmp_path / "report.json"
    assert mot17.main(["--detections", "detector", "--data", str(data), "--precisions", "fp32",
                       "--out-dir", str(tmp_path / "res"), "--json", str(report_path)]) == 0

    report = json.loads(report_path.read_text())
    assert report["meta"]["tracker"]["track_high_thresh"] == 0.6  # the detector benchmark's default, not the public one's
    (run,) = report["runs"]
    assert run["sequence"] == "MOT17-05-FRCNN" and run["precision"] == "fp32" and run["frames"] == 48
    assert {row["stage"] for row in run["timing"]} >= {"preprocess", "infer", "postprocess", "track_association"}
    assert run["metrics"]["recall"] > 0.3  # the real detector + tracker find the people in the gt
    assert len(read_results(tmp_path / "res" / "fp32" / "MOT17-05-FRCNN.txt")) > 0


def test_interpolate_scores_the_filled_results_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = require_data("MOT17-mini/train")
    report_path = tmp_path / "report.json"
    assert mot17.main(["--data", str(data), "--out-dir", str(tmp_path / "res"), "--json", str(report_path),
                       "--interpolate", "20", "--interpolation-max-error", "none",
                       "--interpolation-max-overlap", "none"]) == 0
    report = json.loads(report_path.read_text())
    interpolated = report["interpolated"]
    assert interpolated["settings"] == {"method": "linear", "max_gap": 20, "tau": 5.0, "max_error": None, "window": 5,
                                        "max_overlap": None}
    raw = read_results(report["sequences"]["MOT17-05-FRCNN"]["results_file"])
    filled = read_results(Path(interpolated["results_dir"]) / "MOT17-05-FRCNN.txt")
    raw_keys = set(zip(raw.frames.tolist(), raw.ids.tolist()))
    filled_keys = set(zip(filled.frames.tolist(), filled.ids.tolist()))
    assert raw_keys < filled_keys  # every tracker row kept, and this excerpt has gaps to fill
    metrics = interpolated["sequences"]["MOT17-05-FRCNN"]
    assert metrics["num_predictions"] > report["sequences"]["MOT17-05-FRCNN"]["metrics"]["num_predictions"]
    output = capsys.readouterr().out
    assert "+interp" in output and "mean of seqs" in output


def test_interpolate_options_are_checked() -> None:
    for argv in (["--interpolate", "0"], ["--interpolate", "20", "--interpolation", "cubic"],
                 ["--interpolate", "20", "--interpolation-max-error", "-1"],
                 ["--interpolate", "20", "--interpolation-max-overlap", "x"],
                 ["--detections", "detector", "--interpolate", "5"]):
        with pytest.raises(SystemExit):
            mot17.main(argv)
