"""Acceptance test: ByteTracker reproduces the official ByteTrack outputs row for row.

Reference: ``shared/data/reference/bytetrack/<set>/`` (see its README.md), produced by the
official tracker (track_thresh 0.5, buffer 30, match 0.8, mot20 False) on fixed detections.
"""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import numpy as np
import pytest

from int8track.tracker import ByteTracker

from conftest import require_data

REFERENCE = "reference/bytetrack"
SETS = [
    "MOT17-02-FRCNN", "MOT17-04-FRCNN", "MOT17-05-FRCNN", "MOT17-09-FRCNN", "MOT17-10-FRCNN",
    "MOT17-11-FRCNN", "MOT17-13-FRCNN", "synthetic-n50", "synthetic-n200",
]
_NUMPY_REPR = re.compile(r"np\.float64\(([^)]*)\)")


def read_reference_dets(path: Path) -> np.ndarray:
    """(N, 6) ``frame, x1, y1, x2, y2, score`` in file order.

    The reference files write values as ``np.float64(18.6)``; that wrapper (a quirk of how
    this data was written, not MOT format) is stripped before parsing.
    """
    text = _NUMPY_REPR.sub(r"\1", path.read_text())
    table = np.loadtxt(text.splitlines(), delimiter=",", ndmin=2)
    x, y, w, h = table[:, 2], table[:, 3], table[:, 4], table[:, 5]
    return np.column_stack((table[:, 0], x, y, x + w, y + h, table[:, 6]))


def frame_rate_of(name: str) -> float:
    """Frame rate from MOT17 ``seqinfo.ini``; the synthetic scenes are 30 fps."""
    if name.startswith("synthetic"):
        return 30.0
    ini = configparser.ConfigParser()
    ini.read(require_data(f"MOT17/train/{name}/seqinfo.ini"))
    return float(ini["Sequence"]["frameRate"])


def run_tracker(dets: np.ndarray, last_frame: int, **options) -> np.ndarray:
    """Feed every frame 1..last_frame; returns (M, 9) ``frame`` + the tracker's 8 columns."""
    tracker = ByteTracker(track_high_thresh=0.5, track_low_thresh=0.1, new_track_thresh=0.6, match_thresh=0.8,
                          track_buffer=30, fuse_score=True, iou_inclusive=True, **options)
    frames = dets[:, 0].astype(int)
    starts = np.searchsorted(frames, np.arange(1, last_frame + 2))
    outputs = []
    for frame in range(1, last_frame + 1):
        rows = tracker.update(dets[starts[frame - 1] : starts[frame], 1:])
        outputs.append(np.column_stack((np.full(len(rows), frame), rows)))
    return np.concatenate(outputs)


@pytest.mark.parametrize("name", SETS)
def test_matches_official_bytetrack(name: str) -> None:
    folder = require_data(f"{REFERENCE}/{name}")
    dets = read_reference_dets(folder / "dets.txt")
    official = np.loadtxt(folder / "official.txt", delimiter=",", ndmin=2)
    assert np.all(np.diff(dets[:, 0]) >= 0), "dets.txt must be grouped by frame"
    last_frame = int(max(dets[:, 0].max(), official[:, 0].max()))
    frame_rate = frame_rate_of(name)

    ours = run_tracker(dets, last_frame, frame_rate=frame_rate, id_mode="official")
    ours_keys = [(int(f), int(i)) for f, i in ours[:, [0, 5]]]
    official_keys = [(int(f), int(i)) for f, i in official[:, :2]]
    assert len(set(ours_keys)) == len(ours_keys)
    assert set(ours_keys) == set(official_keys), f"{len(set(ours_keys) ^ set(official_keys))} (frame, id) differ"

    ours_sorted = ours[np.lexsort((ours[:, 5], ours[:, 0]))]
    official_sorted = official[np.lexsort((official[:, 1], official[:, 0]))]
    np.testing.assert_allclose(ours_sorted[:, 1:5], official_sorted[:, 2:6], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours_sorted[:, 6], official_sorted[:, 6], atol=5e-7, rtol=0)  # written with 6 decimals

    # Compact ids: same tracks, ids relabelled by rank of the official id (never skipping).
    compact = run_tracker(dets, last_frame, frame_rate=frame_rate, id_mode="compact")
    np.testing.assert_array_equal(compact[:, [0, 1, 2, 3, 4, 6, 7, 8]], ours[:, [0, 1, 2, 3, 4, 6, 7, 8]])
    distinct = np.unique(ours[:, 5])
    expected = np.searchsorted(distinct, ours[:, 5]) + 1
    np.testing.assert_array_equal(compact[:, 5], expected)
