"""benchmarks/faults.py for real on a few frames: a pool worker SIGKILLed once, every stream compared with the
undisturbed run."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks import faults

from conftest import require_data


def test_one_kill_on_the_pool_leaves_every_stream_as_the_undisturbed_run(tmp_path: Path) -> None:
    args = ["--video", str(require_data("videos/vtest.avi")), "--sequence", str(require_data("MOT15/train/PETS09-S2L1")),
            "--weights", str(require_data("weights/bytetrack_nano_mot17.onnx")), "--imgsz", "256", "--frames", "16",
            "--kills", "1", "--backends", "pool", "--workers", "2", "--threads", "2", "--snapshot-every", "0",
            "--output-dir", str(tmp_path)]
    assert faults.main(args) == 0
    result = json.loads((tmp_path / "faults.json").read_text())
    assert result["targets_met"] == {"pool": True}
    rows = result["rows"]
    assert [row["stream"] for row in rows] == ["vtest", "PETS09-S2L1", "vtest-2", "PETS09-S2L1-2"]
    (kill,) = result["runs"]["pool"]["kills"]
    assert kill["pid"] is not None and kill["noticed_after_s"] is not None  # it did kill, and the driver saw it
    hit = [row for row in rows if row["failovers"]]
    assert len(hit) == 2  # the killed worker's two streams, resumed with every frame once, same ids
    for row in rows:
        assert row["frames_written"] == row["frames_in_source"] == 16 and row["duplicates"] == 0
        assert row["identical"] and row["more_ids"] == 0 and row["mota_vs_undisturbed"] == 100.0
    assert (tmp_path / "faults.csv").read_text().startswith("backend,stream,frames_in_source")
