"""The peers' side of the identity benchmark: BoT-SORT's frames (a video, or images cropped as the panning variant
is) reach the peer process as plain JSON, and our wrapped modes only run where frames exist."""
from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import identity, identity_data, identity_peers

from conftest import require_data


def test_read_frames_crops_each_image_as_the_spec_says(tmp_path: Path) -> None:
    paths = []
    for index in range(2):
        image = np.zeros((20, 30, 3), np.uint8)
        image[:, :, 0] = np.arange(30, dtype=np.uint8)[None, :] + 100 * index  # column number, per frame
        path = tmp_path / f"{index:06d}.png"
        cv2.imwrite(str(path), image)
        paths.append(str(path))
    spec = tmp_path / "frames.json"
    spec.write_text(json.dumps({"images": paths, "crops": [[3, 2, 10, 8], [5, 0, 10, 8]]}))
    frames = list(identity_peers.read_frames(spec))
    assert [frame.shape for frame in frames] == [(8, 10, 3), (8, 10, 3)]
    assert frames[0][0, :, 0].tolist() == list(range(3, 13))
    assert frames[1][0, :, 0].tolist() == list(range(105, 115))


def test_read_frames_without_a_spec_gives_no_images() -> None:
    assert list(islice(identity_peers.read_frames(None), 3)) == [None, None, None]


def test_peer_options_reach_the_constructor() -> None:
    with pytest.raises(ValueError, match="unknown peer tracker"):
        identity_peers.make_tracker("sort", 30.0, lost_track_buffer=10)


@pytest.mark.parametrize("name", ["PETS09-pan", "PETS09-shake"])
def test_window_frame_source_names_the_variants_own_crops(name: str) -> None:
    require_data("MOT15/train/PETS09-S2L1/img1/000003.jpg")
    spec = identity_data.frame_source(name)
    assert len(spec["images"]) == len(spec["crops"]) == 795
    variant = list(islice(identity_data.VARIANTS[name].frames(), 3))
    for index, frame in enumerate(variant):
        x, y, w, h = spec["crops"][index]
        full = cv2.imread(spec["images"][index])
        np.testing.assert_array_equal(full[y:y + h, x:x + w], frame)
    assert identity_data.frame_source("vtest-fitted") == {"video": str(identity_data.VTEST)}
    with pytest.raises(ValueError, match="no frames"):
        identity_data.frame_source("MOT17-04-FRCNN")


def test_wrapped_modes_skip_sequences_without_images(tmp_path: Path) -> None:
    """``ours+cmc`` reads frames: on a MOT17 public-detection sequence (no images) it has no row, and the plain
    tracker still runs."""
    require_data("MOT17/train/MOT17-05-FRCNN")
    folder = identity_data.build_subsampled("MOT17-05-FRCNN", root=tmp_path / "cache")
    assert folder.is_dir()
    report_path = tmp_path / "report.json"
    assert identity.main(["--trackers", "ours,ours+cmc", "--sequences", "MOT17-05-FRCNN-s3",
                          "--cache-root", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "res"),
                          "--json", str(report_path)]) == 0
    results = json.loads(report_path.read_text())["results"]
    assert "MOT17-05-FRCNN-s3" in results["ours"]
    assert "ours+cmc" not in results
