"""Tracker options on the command line: one TrackerConfig for `track` and the benchmarks, `--tracker FILE.yaml`."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import e2e, mot17
from int8track.apps.cli import track
from int8track.apps.cli.tracker_options import tracker_argv, tracker_config_from_args
from int8track.tracker import TrackerConfig

from conftest import require_data

YAML = "tracker_type: bytetrack\ntrack_high_thresh: 0.3\ntrack_low_thresh: 0.2\nnew_track_thresh: 0.35\n" \
       "track_buffer: 45\nmatch_thresh: 0.7\nfuse_score: false\n"
FROM_YAML = TrackerConfig(track_high_thresh=0.3, track_low_thresh=0.2, new_track_thresh=0.35, track_buffer=45,
                          match_thresh=0.7, fuse_score=False)


def config_of(argv: list[str]) -> TrackerConfig:
    return tracker_config_from_args(track.build_parser().parse_args(["video.mp4", *argv]))


def test_defaults_and_options(tmp_path: Path) -> None:
    assert config_of([]) == TrackerConfig()
    assert config_of(["--track-thresh", "0.6", "--track-buffer", "60", "--match-thresh", "0.9"]) == TrackerConfig(
        track_high_thresh=0.6, new_track_thresh=0.7, track_buffer=60, match_thresh=0.9)
    path = tmp_path / "bytetrack.yaml"
    path.write_text(YAML)
    assert config_of(["--tracker", str(path)]) == FROM_YAML
    assert config_of(["--tracker", str(path), "--track-buffer", "10"]) == FROM_YAML.replace(track_buffer=10)


@pytest.mark.parametrize("argv", [["--track-thresh", "2"], ["--track-thresh", "x"], ["--track-buffer", "-1"],
                                  ["--track-buffer", "1.5"], ["--match-thresh", "nan"]])
def test_out_of_range_options_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        track.build_parser().parse_args(["video.mp4", *argv])
    assert exit_info.value.code == 2 and argv[0] in capsys.readouterr().err


def test_bad_tracker_file_fails_in_one_line_before_anything_is_opened(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "botsort.yaml"
    path.write_text(YAML + "with_reid: false\n")
    assert track.main(["/no/such/video.avi", "--tracker", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"track: error: {path}: unknown tracker setting(s) with_reid; known: " \
                  f"{err.split('known: ')[1]}" and err.count("\n") == 1
    path.write_text(YAML)  # valid file, but --track-thresh 0.1 falls below its track_low_thresh 0.2
    assert track.main(["/no/such/video.avi", "--tracker", str(path), "--track-thresh", "0.1"]) == 2
    assert "tracker options: track_low_thresh (0.2) must be <= track_high_thresh (0.1)" in capsys.readouterr().err


def test_track_runs_the_tracker_with_the_file_settings_at_the_source_rate(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    path = tmp_path / "bytetrack.yaml"
    path.write_text(YAML)
    used = []
    real_run = track.run_tracking

    def spy(source, detector, tracker, **options):  # type: ignore[no-untyped-def]
        used.append(getattr(tracker, "tracker", tracker).config)  # inside the camera motion wrapper (default)
        return real_run(source, detector, tracker, **options)

    monkeypatch.setattr(track, "run_tracking", spy)
    assert track.main([str(video), "--weights", str(weights), "--tracker", str(path), "--max-frames", "2",
                       "--no-video", "--quiet", "--threads", "1", "--output-dir", str(tmp_path / "out")]) == 0
    assert used == [FROM_YAML.replace(frame_rate=10.0)]  # vtest.avi's header says 10 fps


def test_benchmarks_share_the_options() -> None:
    e2e_config = tracker_config_from_args(e2e.build_parser().parse_args([]), track_thresh=e2e.BENCHMARK_TRACK_THRESH)
    assert e2e_config == TrackerConfig.from_track_thresh(0.6)
    args, _ = mot17.build_parser().parse_known_args(["--track-buffer", "50", "--match-thresh", "0.75"])
    assert tracker_config_from_args(args) == TrackerConfig(track_buffer=50, match_thresh=0.75)
    # --detections detector hands exactly the given options to the e2e benchmark
    forwarded = e2e.build_parser().parse_args(tracker_argv(args))
    assert tracker_config_from_args(forwarded, track_thresh=0.6) == e2e_config.replace(track_buffer=50,
                                                                                      match_thresh=0.75)
