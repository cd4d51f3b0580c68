"""FrameSizeWatch: a frame of another size (a live source after a reconnect) rescales the tracks and is reported."""
from __future__ import annotations

import numpy as np

from int8track.apps.pipeline.frame_size import FrameSizeWatch
from int8track.tracker import ByteTracker
from int8track.tracker.reid import ReidTracker


def _people() -> np.ndarray:
    return np.array([[100.0, 100.0, 140.0, 200.0, 0.9], [400.0, 300.0, 440.0, 400.0, 0.9]])


def test_tracks_follow_a_halved_frame_and_keep_their_ids():
    tracker, watch = ByteTracker(frame_rate=10), FrameSizeWatch()
    for frame_id in (1, 2):
        assert not watch.check(frame_id, np.zeros((576, 768, 3), np.uint8), tracker)
        tracker.update(_people())
    assert watch.check(3, np.zeros((288, 384, 3), np.uint8), tracker)
    tracks = tracker.update(_people() * [0.5, 0.5, 0.5, 0.5, 1.0])  # the same people in the new pixels
    assert sorted(tracks[:, 4].tolist()) == [1.0, 2.0]
    np.testing.assert_allclose(tracks[:, :4], _people()[:, :4] * 0.5, atol=1.0)
    assert watch.changes == [{"frame": 3, "from": "768x576", "to": "384x288"}]
    assert not watch.check(4, np.zeros((288, 384, 3), np.uint8), tracker)  # one change, counted once


def test_report_says_letterboxed_only_when_the_size_changed():
    class _Spec:
        input_size = (608, 832)

    class _Detector:
        spec = _Spec()

    watch = FrameSizeWatch()
    watch.check(1, np.zeros((576, 768, 3), np.uint8), None)
    assert watch.info(_Detector()) == {}
    watch.check(2, np.zeros((720, 1280, 3), np.uint8), None)  # no tracker: nothing to rescale, still reported
    info = watch.info(_Detector())
    assert info["frame_size_changes"] == [{"frame": 2, "from": "768x576", "to": "1280x720"}]
    assert info["frame_size_handling"].startswith("letterboxed") and "608x832 (HxW)" in info["frame_size_handling"]


def test_a_wrapped_tracker_is_rescaled_through_its_tracker():
    base = ByteTracker(frame_rate=10)
    wrapped = ReidTracker(base, embedder=lambda crops: np.ones((len(crops), 4), np.float32))
    watch = FrameSizeWatch()
    watch.check(1, np.zeros((100, 200, 3), np.uint8), wrapped)
    base.update(_people())
    watch.check(2, np.zeros((200, 400, 3), np.uint8), wrapped)
    np.testing.assert_allclose(base.predict()[:, :4], _people()[:, :4] * 2.0, atol=1.0)
