"""Every cache heals itself: a file under $INT8TRACK_HOME that a full disk, a killed copy or a stray write left
truncated or overwritten is reported in one line, removed and made again, and the run's tracks do not change."""
from __future__ import annotations

import shutil

import pytest

from int8track.apps.cli.track import main

from conftest import require_data

FRAMES = 4
KINDS = {  # what a `track --int8` run caches, by folder under $INT8TRACK_HOME
    "int8 model": "int8/*.onnx",
    "int8 record": "int8/*.json",
    "fitted-size export": "onnx/*.onnx",
}  # the speed table is read only when a model is quantized: see test_a_damaged_speed_table_entry_is_measured_again


def _argv(out) -> list[str]:
    return [str(require_data("MOT17-mini/train/MOT17-05-FRCNN")),
            "--weights", str(require_data("weights/bytetrack_nano_mot17.onnx")), "--int8", "--calib-frames", "4",
            "--max-frames", str(FRAMES), "--threads", "1", "--no-video", "--quiet", "--output-dir", str(out)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("first")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INT8TRACK_HOME", str(home))
        assert main(_argv(out)) == 0
    return home, (out / "MOT17-05-FRCNN.txt").read_bytes()


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _garbage(path) -> None:
    path.write_bytes(b"\x00\xffnot what was cached\n" * 50)


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_damaged_cache_file_is_rebuilt_and_the_tracks_do_not_change(first_run, kind, damage, tmp_path,
                                                                       monkeypatch, capsys):
    home, expected = first_run
    files = sorted(home.glob(KINDS[kind]))
    assert files, f"the first run cached no {kind} ({KINDS[kind]}) under {home}"
    backup = tmp_path / "backup"
    shutil.copytree(home, backup)
    for path in files:
        damage(path)
    monkeypatch.setenv("INT8TRACK_HOME", str(home))
    capsys.readouterr()
    try:
        assert main(_argv(tmp_path / "out")) == 0
        err = capsys.readouterr().err
        assert (tmp_path / "out" / "MOT17-05-FRCNN.txt").read_bytes() == expected
        if kind != "int8 record":  # the record is for people; the model's own metadata is what is read
            warnings = [line for line in err.splitlines() if "warning:" in line]
            assert any(files[0].name in line for line in warnings), err
            assert "Traceback" not in err
    finally:  # the next case starts from the healthy cache
        shutil.rmtree(home)
        shutil.copytree(backup, home)


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
def test_a_damaged_speed_table_entry_is_measured_again(damage, tmp_path, capsys):
    from int8track.quant.speed_table import SpeedTable

    table = SpeedTable(tmp_path / "speed")
    calls = []

    def measure() -> dict[str, float]:
        calls.append(1)
        return {"fp32": 40.0, "int8 from stride 16": 30.0}

    assert table.timings("k", measure) == {"fp32": 40.0, "int8 from stride 16": 30.0} and not table.reused
    assert table.timings("k", measure) == {"fp32": 40.0, "int8 from stride 16": 30.0} and table.reused
    assert len(calls) == 1
    damage(tmp_path / "speed" / "k.json")
    assert table.timings("k", measure) == {"fp32": 40.0, "int8 from stride 16": 30.0} and not table.reused
    assert len(calls) == 2 and "speed table entry" in capsys.readouterr().err
    assert table.timings("k", measure) and table.reused and len(calls) == 2  # healed: stored again
