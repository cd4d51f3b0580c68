"""One frozen tracker configuration: both constructor forms agree, settings cannot drift, bad values are named."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from int8track.tracker import ByteTracker, TrackerConfig


def crowd_frames(frames: int = 60, people: int = 25, seed: int = 2) -> list[np.ndarray]:
    """Overlapping people with noisy boxes and scores spanning both association stages."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 600, (people, 2))
    velocity = rng.normal(0, 3, (people, 2))
    out = []
    for _ in range(frames):
        xy += velocity
        boxes = np.column_stack((xy, xy + (40, 100))) + rng.normal(0, 2, (people, 4))
        seen = rng.random(people) > 0.15
        out.append(np.column_stack((boxes, rng.uniform(0.05, 1.0, people)))[seen])
    return out


def run(tracker: ByteTracker, frames: list[np.ndarray]) -> list[np.ndarray]:
    return [tracker.update(frame) for frame in frames]


def test_config_and_keyword_forms_give_the_same_tracks() -> None:
    settings = dict(frame_rate=10, track_high_thresh=0.4, new_track_thresh=0.55, match_thresh=0.9, track_buffer=12,
                    fuse_score=False, id_mode="official")
    frames = crowd_frames()
    by_keywords = run(ByteTracker(**settings), frames)
    by_config = run(ByteTracker(TrackerConfig(**settings)), frames)
    overridden = run(ByteTracker(TrackerConfig(match_thresh=0.1), **settings), frames)  # keywords win
    defaults = run(ByteTracker(), frames)
    for a, b, c in zip(by_keywords, by_config, overridden):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert any(len(a) != len(d) or not np.array_equal(a, d) for a, d in zip(by_keywords, defaults)), \
        "the settings must change the result, or this test compares nothing"


def test_settings_cannot_drift_after_construction() -> None:
    tracker = ByteTracker(frame_rate=10, track_buffer=60)
    assert tracker.max_time_lost == tracker.config.max_time_lost == 20  # 60 frames at 30 fps = 20 at 10 fps
    with pytest.raises(AttributeError):
        tracker.match_thresh = 0.9  # type: ignore[attr-defined]  # no stray attribute the tracker would ignore
    with pytest.raises(AttributeError):
        tracker.config = TrackerConfig()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tracker.config.track_buffer = 1  # type: ignore[misc]
    assert tracker.config.replace(track_buffer=90).max_time_lost == 30


def test_track_buffer_from_the_config_decides_when_a_lost_track_is_dropped() -> None:
    person = np.array([[100.0, 100.0, 140.0, 200.0, 0.9]])
    for buffer in (3, 8):
        tracker = ByteTracker(TrackerConfig(track_buffer=buffer))
        tracker.update(person)
        frames_lost = 0
        while len(tracker.update(np.empty((0, 5)), img=None)) == 0 and tracker.num_tracks:
            frames_lost += 1
            assert frames_lost < 50
        # still held while at most max_time_lost frames old, and for one more frame after timing out (official)
        assert frames_lost == buffer + 1


def test_official_vocabulary() -> None:
    config = TrackerConfig.from_track_thresh(0.6, track_buffer=50)
    assert (config.track_high_thresh, config.new_track_thresh, config.track_buffer) == (0.6, 0.7, 50)
    assert TrackerConfig.from_track_thresh(0.5) == TrackerConfig()


@pytest.mark.parametrize(("field", "value"), [
    ("track_high_thresh", 1.5), ("track_low_thresh", -0.1), ("new_track_thresh", float("nan")),
    ("match_thresh", -1.0), ("frame_rate", 0), ("frame_rate", float("inf")), ("track_buffer", -1),
    ("track_buffer", 2.5), ("track_buffer", True), ("fuse_score", "yes"), ("id_mode", "global"),
    ("duplicate_iou_thresh", "0.1"), ("class_aware", 1),
])
def test_bad_values_are_rejected_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        ByteTracker(**{field: value})


def test_low_threshold_above_high_is_rejected() -> None:
    with pytest.raises(ValueError, match="track_low_thresh"):
        TrackerConfig(track_high_thresh=0.2, track_low_thresh=0.3)
    assert TrackerConfig(track_buffer=np.int64(5), frame_rate=np.float32(25)).max_time_lost == 4  # numpy numbers


def test_positional_settings_and_unknown_names_are_errors() -> None:
    with pytest.raises(TypeError, match="TrackerConfig"):
        ByteTracker(30)  # type: ignore[arg-type]  # the old positional frame_rate
    with pytest.raises(TypeError, match="track_thresh"):
        ByteTracker(track_thresh=0.5)
