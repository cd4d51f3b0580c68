"""``TrackerConfig.shared_shift``: when every matched track's prediction is off the same way (the camera moved),
the tracks IoU left are tried again moved by that shift; a static scene is untouched."""
from __future__ import annotations

import numpy as np
import pytest

from int8track.tracker import ByteTracker, TrackerConfig
from int8track.tracker.config import DEFAULT_SHARED_SHIFT

NEAR = [(100.0, 200.0, 80.0, 200.0), (300.0, 210.0, 80.0, 200.0), (500.0, 190.0, 80.0, 200.0)]
FAR = [(150.0, 60.0, 20.0, 50.0), (420.0, 70.0, 20.0, 50.0)]  # x, y, w, h: small, distant people


def jolted_scene(frames: int = 16, jolt_at: int = 8, jolt: float = 18.0) -> list[np.ndarray]:
    """Five people standing still; from frame ``jolt_at`` on the camera has turned: every box ``jolt`` px right.
    That keeps the near people's boxes overlapping their tracks (IoU ~0.6) and the far ones' not (~0.05)."""
    out = []
    for t in range(frames):
        dx = jolt if t >= jolt_at else 0.0
        out.append(np.array([[x + dx, y, x + dx + w, y + h, 0.9] for x, y, w, h in NEAR + FAR]))
    return out


def far_ids(tracker: ByteTracker, frames: list[np.ndarray]) -> list[set[int]]:
    """Per frame, the ids of the tracks on the far people (boxes less than 40 px wide)."""
    result = []
    for dets in frames:
        rows = tracker.update(dets)
        result.append({int(r[4]) for r in rows if r[2] - r[0] < 40})
    return result


def test_a_camera_jolt_keeps_the_far_peoples_ids() -> None:
    frames = jolted_scene()
    shifted = far_ids(ByteTracker(frame_rate=10), frames)
    assert shifted[7] and all(ids == shifted[7] for ids in shifted[8:])  # the same two ids before and after
    plain = far_ids(ByteTracker(frame_rate=10, shared_shift=0.0), frames)
    assert plain[7] == shifted[7] and not plain[8]  # without it, both are lost at the jolt ...
    assert plain[-1] and plain[-1].isdisjoint(plain[7])  # ... and come back with new ids


def test_a_static_scene_is_untouched() -> None:
    """Walkers in all directions with detection jitter: the median of their innovations stays near zero, below
    the threshold, so the output is identical with the mechanism off."""
    rng = np.random.default_rng(3)
    starts = rng.uniform(50, 600, size=(12, 2))
    velocity = rng.uniform(-6, 6, size=(12, 2))
    frames = []
    for t in range(60):
        centre = starts + velocity * t + rng.normal(0, 1.5, size=(12, 2))
        visible = rng.random(12) > 0.15  # some detections missing: tracks left to the second chance
        boxes = np.column_stack((centre - [20, 50], centre + [20, 50], np.full(12, 0.9)))[visible]
        frames.append(boxes)
    default, off = ByteTracker(frame_rate=10), ByteTracker(frame_rate=10, shared_shift=0.0)
    for dets in frames:
        np.testing.assert_array_equal(default.update(dets), off.update(dets))


def test_shared_shift_is_automatic_off_in_parity_and_checked() -> None:
    assert TrackerConfig().effective_shared_shift == DEFAULT_SHARED_SHIFT > 0
    assert TrackerConfig.parity().effective_shared_shift == 0.0
    assert TrackerConfig.parity(shared_shift=0.1).effective_shared_shift == 0.1
    for bad in (-0.1, 1.5, float("nan"), "0.05", True):
        with pytest.raises(ValueError, match="shared_shift"):
            TrackerConfig(shared_shift=bad)
