"""benchmarks/detect_interval.py on the 48-frame MOT17-05 excerpt (public detections, Kalman mode)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import detect_interval, mot17
from int8track.apps.evaluation.metrics import MotMetrics
from int8track.apps.io.motchallenge import load_sequence, read_results
from int8track.tracker import TrackerConfig

from conftest import require_data


def test_interval_one_writes_what_the_mot17_benchmark_writes(tmp_path: Path) -> None:
    """K=1 is the plain tracker: the same results file as benchmarks/mot17.py (one home for each protocol)."""
    sequence = load_sequence(require_data("MOT17-mini/train/MOT17-05-FRCNN"))
    config = TrackerConfig.from_track_thresh(0.6)
    mot17.run_sequence(sequence, config, tmp_path / "mot17.txt")
    run = detect_interval.track_with_interval(sequence, sequence.detections(), 1, config, tmp_path / "k1.txt")
    assert run.calls == 48 and np.isnan(run.step_ms) and run.propagated.shape == (0, 2)
    assert (tmp_path / "k1.txt").read_text() == (tmp_path / "mot17.txt").read_text()


def test_every_frame_gets_tracks_and_only_every_kth_a_detector_call(tmp_path: Path) -> None:
    sequence = load_sequence(require_data("MOT17-mini/train/MOT17-05-FRCNN"))
    detections = sequence.detections()
    run = detect_interval.track_with_interval(sequence, detections, 3, TrackerConfig(), tmp_path / "k3.txt")
    assert run.calls == 16 and run.step_ms >= 0  # frames 1, 4, ..., 46
    results = read_results(tmp_path / "k3.txt")
    shown = set(results.frames.tolist())
    assert shown >= {2, 3, 5, 6}  # frames without a detector call still have tracks
    # every row of a frame without a detector call is propagated, and the propagated rows are all written
    between = {(f, i) for f, i in zip(results.frames.tolist(), results.ids.tolist()) if (f - 1) % 3}
    assert between and between <= {tuple(pair) for pair in run.propagated.tolist()}
    with pytest.raises(ValueError, match="frames of detections"):
        detect_interval.track_with_interval(sequence, detections[:10], 2, TrackerConfig(), tmp_path / "x.txt")


def test_a_phase_moves_the_detector_frames_after_the_first(tmp_path: Path) -> None:
    sequence = load_sequence(require_data("MOT17-mini/train/MOT17-05-FRCNN"))
    run = detect_interval.track_with_interval(sequence, sequence.detections(), 3, TrackerConfig(),
                                              tmp_path / "k3p2.txt", phase=2)
    assert run.calls == 1 + 16  # frame 1, then frames 3, 6, ..., 48
    stepped = set(run.propagated[:, 0].tolist())
    assert stepped and not stepped & {1, 3, 6, 48} and {2, 4, 5} <= stepped
    with pytest.raises(ValueError, match="phase"):
        detect_interval.track_with_interval(sequence, sequence.detections(), 3, TrackerConfig(), tmp_path / "x.txt",
                                            phase=3)


def test_main_prints_the_table_and_writes_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = require_data("MOT17-mini/train")
    report_path = tmp_path / "report.json"
    assert detect_interval.main(["--skip-detector", "--public-data", str(data), "--intervals", "2",
                                 "--out-dir", str(tmp_path), "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "MOT17-05-FRCNN  kalman      2" in out and "dMOTA" in out
    runs = json.loads(report_path.read_text())["workloads"]["public"]["runs"]
    assert [(r["interval"], r["detector_calls"]) for r in runs] == [(1, 48), (2, 24)]
    assert runs[1]["calls_per_second"] == pytest.approx(24 / 48 * 14)  # MOT17-05 is a 14 fps sequence
    assert (tmp_path / "mota_vs_calls.png").stat().st_size > 1000


def test_interval_run_is_validated() -> None:
    metrics = MotMetrics(**{name: 0 for name in MotMetrics.__dataclass_fields__})
    with pytest.raises(ValueError, match="mode"):
        detect_interval.IntervalRun("public", "s", "blind", 2, 10, 30.0, 5, metrics, 0.0, Path("x"))
    with pytest.raises(ValueError, match="interval"):
        detect_interval.IntervalRun("public", "s", "kalman", -1, 10, 30.0, 5, metrics, 0.0, Path("x"))



def test_frames_given_in_order_track_as_the_image_files_do(tmp_path: Path) -> None:
    """The identity_data variants have no image files: their frames are passed in, with the same result."""
    import cv2

    from int8track.tracker.propagation import FlowPropagator

    sequence = load_sequence(require_data("MOT17-mini/train/MOT17-05-FRCNN"))
    frames = (cv2.imread(str(path)) for path in sequence.image_paths())
    for name, given in (("given", frames), ("read", None)):
        detect_interval.track_with_interval(sequence, sequence.detections(), 2, TrackerConfig(), tmp_path / name,
                                            FlowPropagator(), frames=given)
    assert (tmp_path / "given").read_text() == (tmp_path / "read").read_text()
