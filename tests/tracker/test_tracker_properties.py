"""Property test: random (partly invalid) frames never break the tracker's invariants."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from int8track.tracker import ByteTracker, byte_tracker, matching

LOW_THRESH = 0.1

# Rows are noisy sightings of a few overlapping objects (so tracks persist, compete and switch
# classes), plus free random boxes, degenerate boxes, NaNs and out-of-range scores.
OBJECTS = np.array([[i * 25.0, (i % 2) * 20.0, i * 25.0 + 40.0, (i % 2) * 20.0 + 80.0] for i in range(5)])
score = st.one_of(st.floats(0, 1), st.just(0.5), st.just(1.3), st.just(-0.2))
label = st.sampled_from([0.0, 1.0, 2.0])
jitter = st.floats(-6, 6)
sighting = st.tuples(st.integers(0, len(OBJECTS) - 1), jitter, jitter, score, label).map(
    lambda r: (*(OBJECTS[r[0]] + [r[1], r[2], r[1], r[2]]), r[3], r[4]))
free_box = st.tuples(st.floats(0, 120), st.floats(0, 120), st.floats(-5, 60), st.floats(-5, 60), score, label).map(
    lambda r: (r[0], r[1], r[0] + r[2], r[1] + r[3], r[4], r[5]))
bad_row = st.tuples(st.sampled_from([np.nan, np.inf]), st.floats(0, 100), score, label).map(
    lambda r: (r[0], r[1], 50.0, r[1] + 50, r[2], r[3]))
frame = st.lists(st.one_of(sighting, sighting, sighting, free_box, bad_row), max_size=8)
stream = st.lists(st.tuples(frame, st.integers(1, 3)), min_size=1, max_size=25)


def to_array(rows: list[tuple]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


@settings(max_examples=120, deadline=None)
@given(stream=stream, class_aware=st.booleans(), id_mode=st.sampled_from(["compact", "official"]),
       return_lost=st.booleans(), track_buffer=st.integers(0, 5))
def test_invariants_hold_on_random_streams(stream, class_aware: bool, id_mode: str, return_lost: bool,
                                           track_buffer: int) -> None:
    tracker = ByteTracker(class_aware=class_aware, id_mode=id_mode, return_lost=return_lost,
                          track_buffer=track_buffer)
    gone: set[int] = set()
    alive: set[int] = set()
    ever: set[int] = set()
    classes: dict[int, float] = {}
    for rows, gap in stream:
        dets = to_array(rows)
        out = tracker.update(dets, frame_gap=gap)
        assert out.shape[1] == 8 and out.dtype == np.float64
        matched = out[out[:, 7] >= 0]
        ids = out[:, 4].astype(int)
        assert len(set(ids)) == len(ids), "an id appears twice on one frame"
        assert not gone & set(ids), "an id came back after its track was removed"

        rows_used = matched[:, 7].astype(int)
        assert len(set(rows_used)) == len(rows_used), "two tracks matched one detection"
        assert ((rows_used >= 0) & (rows_used < len(dets))).all()
        used = dets[rows_used]
        assert np.isfinite(used).all() and (used[:, 2] > used[:, 0]).all() and (used[:, 3] > used[:, 1]).all()
        np.testing.assert_array_equal(matched[:, 5], np.clip(used[:, 4], 0, 1))
        assert (matched[:, 5] > LOW_THRESH).all()
        np.testing.assert_array_equal(matched[:, 6], used[:, 5])  # class of the matched detection
        if class_aware:  # ... which then never changes for a track
            for track_id, cls in zip(ids, out[:, 6]):
                assert classes.setdefault(track_id, cls) == cls, "a track matched another class"

        lost_ids = set(tracker.lost_tracks()[:, 4].astype(int))
        if not return_lost:
            assert not lost_ids & set(ids), "a lost track is also output as tracked"
        now = set(ids) | lost_ids
        gone |= alive - now
        alive = now
        ever |= set(ids)
        if id_mode == "compact":
            assert ever == set(range(1, len(ever) + 1)), "compact ids skipped a number"
        assert tracker.num_tracks <= 8 * (len(stream) + 1)


@pytest.mark.parametrize("class_aware", [False, True])
def test_small_frame_python_path_equals_vectorised_path(class_aware: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames with few boxes are associated in plain Python; the result must not change."""
    rng = np.random.default_rng(7)
    stream = []
    for _ in range(60):
        count = rng.integers(0, 9)
        sightings = OBJECTS[rng.integers(0, len(OBJECTS), count)] + rng.normal(0, 4, (count, 1))
        stream.append(np.column_stack((sightings, rng.uniform(0, 1, count), rng.integers(0, 2, count))))

    def run() -> list[np.ndarray]:
        tracker = ByteTracker(class_aware=class_aware, return_lost=True, track_buffer=5)
        return [tracker.update(dets) for dets in stream]

    small = run()
    monkeypatch.setattr(byte_tracker, "SMALL_ASSIGNMENT", 0)
    monkeypatch.setattr(matching, "SMALL_ASSIGNMENT", 0)
    for got, expected in zip(small, run()):
        np.testing.assert_array_equal(got, expected)
