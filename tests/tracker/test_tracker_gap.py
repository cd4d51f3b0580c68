"""Tracks found again across a gap in time (a live stream's outage): ``TrackerConfig.gap_reacquire_s``."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from int8track.tracker import ByteTracker, TrackerConfig
from int8track.tracker.gap import gap_matches
from int8track.tracker.kalman import initiate

FPS = 10.0


def walkers(t: float, slowed_from: float | None = None) -> np.ndarray:
    """Three people 40 px wide, 150 px apart, walking right at 30 px/s (3 px per frame at 10 fps); from
    ``slowed_from`` seconds on at 10 px/s."""
    x = 100.0 + 30.0 * t
    if slowed_from is not None and t > slowed_from:
        x = 100.0 + 30.0 * slowed_from + 10.0 * (t - slowed_from)
    return np.array([[x + k * 150.0, 100.0, x + k * 150.0 + 40.0, 200.0, 0.9] for k in range(3)])


def ids_across_gap(gap_s: float, **settings_) -> tuple[list[int], list[int]]:
    """IDs of the walkers before a gap of ``gap_s`` and on the first frame after it (live: timestamps)."""
    tracker = ByteTracker(frame_rate=FPS, track_buffer=300, **settings_)
    for frame in range(20):
        before = tracker.update(walkers(frame / FPS), timestamp=frame / FPS)
    # They slowed down during the gap: after 3 s they are 60 px (1.5 widths) behind the constant-velocity
    # prediction and 30 px ahead of where they were last seen, overlapping neither enough for IoU.
    last, t = 19 / FPS, 19 / FPS + gap_s
    tracker.update(walkers(t, slowed_from=last), timestamp=t)
    # new tracks are shown from their second frame
    after = tracker.update(walkers(t + 0.1, slowed_from=last), timestamp=t + 0.1)
    return sorted(before[:, 4].astype(int).tolist()), sorted(after[:, 4].astype(int).tolist())


def test_walkers_keep_their_ids_across_a_3_s_gap():
    # IoU alone cannot match them (next test); the prediction can, given the uncertainty the filter gives it
    # after 30 steps.
    before, after = ids_across_gap(3.0)
    assert after == before == [1, 2, 3]


def test_without_the_gap_stage_iou_alone_gives_new_ids():
    before, after = ids_across_gap(3.0, gap_reacquire_s=0)
    assert before == [1, 2, 3] and after == [4, 5, 6]  # the contrast the stage exists for


def test_a_gap_shorter_than_the_setting_is_untouched():
    # 0.5 s apart is no outage for gap_reacquire_s=1: same output as with the stage off
    assert ids_across_gap(0.5) == ids_across_gap(0.5, gap_reacquire_s=0)


# Random frames of walkers with clutter and frame gaps below the setting: output identical with the stage on and off.
clutter = st.tuples(st.floats(0, 600), st.floats(0, 300), st.floats(5, 80), st.floats(5, 120), st.floats(0, 1)).map(
    lambda r: (r[0], r[1], r[0] + r[2], r[1] + r[3], r[4]))
step = st.tuples(st.lists(st.booleans(), min_size=3, max_size=3), st.lists(clutter, max_size=3), st.integers(1, 9))


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(step, min_size=2, max_size=25))
def test_output_is_identical_without_gaps_of_the_set_length(frames):
    on, off = ByteTracker(frame_rate=FPS), ByteTracker(frame_rate=FPS, gap_reacquire_s=0)
    t = 0
    for visible, extra, gap in frames:  # gaps of 1-9 frames: under 1 s at 10 fps
        t += gap
        rows = [row for row, seen in zip(walkers(t / FPS).tolist(), visible) if seen] + [list(e) for e in extra]
        dets = np.array(rows, dtype=np.float64).reshape(-1, 5)
        a, b = on.update(dets, frame_gap=gap), off.update(dets, frame_gap=gap)
        assert a.tobytes() == b.tobytes()


def test_gap_is_measured_from_the_last_update_so_predict_calls_count():
    """``predict()`` K-1 times then ``update`` equals ``update(frame_gap=K)``, also across a gap."""
    with_gap, with_predict = ByteTracker(frame_rate=FPS), ByteTracker(frame_rate=FPS)
    for frame in range(10):
        with_gap.update(walkers(frame / FPS))
        with_predict.update(walkers(frame / FPS))
    expected = with_gap.update(walkers(4.0), frame_gap=31)
    for _ in range(30):
        with_predict.predict()
    assert with_predict.update(walkers(4.0)).tobytes() == expected.tobytes()
    assert sorted(expected[:, 4].tolist()) == [1, 2, 3]


def test_restored_tracker_sees_the_same_gap():
    tracker = ByteTracker(frame_rate=FPS, track_buffer=300)
    for frame in range(20):
        tracker.update(walkers(frame / FPS), timestamp=frame / FPS)
    restored = ByteTracker.from_state(tracker.state_dict())
    for t in (4.9, 5.0):
        assert restored.update(walkers(t), timestamp=t).tobytes() == tracker.update(walkers(t), timestamp=t).tobytes()


def test_setting_is_validated_and_off_in_parity_mode():
    assert TrackerConfig().effective_gap_reacquire_s == 1.0
    assert TrackerConfig.parity().effective_gap_reacquire_s == 0.0
    assert TrackerConfig.parity(gap_reacquire_s=2.0).effective_gap_reacquire_s == 2.0
    for bad in (-1.0, float("nan"), "1", True):
        with pytest.raises(ValueError, match="gap_reacquire_s"):
            TrackerConfig(gap_reacquire_s=bad)


def test_gate_prefers_the_likely_pair_and_leaves_far_ones_out():
    mean, cov = initiate(np.array([[100.0, 100.0, 0.4, 100.0], [300.0, 100.0, 0.4, 100.0]]))
    dets = np.array([[302.0, 101.0, 0.4, 100.0], [5000.0, 100.0, 0.4, 100.0], [98.0, 100.0, 0.4, 101.0]])
    rows, cols = gap_matches(mean, cov, dets)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 2, 1: 0}  # the far detection is outside every gate


def test_pair_cost_weighs_the_pairs_and_inf_excludes_one():
    # two tracks 12 px apart: each detection is inside both gates (position std 10 px at height 100)
    mean, cov = initiate(np.array([[100.0, 100.0, 0.4, 100.0], [112.0, 100.0, 0.4, 100.0]]))
    dets = np.array([[101.0, 100.0, 0.4, 100.0], [111.0, 100.0, 0.4, 100.0]])
    pairs = lambda cost=None: dict(zip(*(a.tolist() for a in gap_matches(mean, cov, dets, cost))))  # noqa: E731
    assert pairs() == {0: 0, 1: 1}  # by motion
    assert pairs(np.array([[50.0, 0.0], [0.0, 50.0]])) == {0: 1, 1: 0}  # a cost (e.g. looks) outweighs it
    assert pairs(np.array([[np.inf, 0.0], [0.0, 0.0]])) == {0: 1, 1: 0}  # the most pairs, the excluded one not
    assert pairs(np.array([[np.inf, np.inf], [0.0, 0.0]])) == {1: 1}  # track 0 excluded from both
    with pytest.raises(ValueError, match="pair_cost must be"):
        gap_matches(mean, cov, dets, np.zeros((2, 3)))


def ids_when_one_walker_returns_late(late_s: float, pair_cost: bool) -> tuple[list[int], int]:
    """IDs before a 3 s gap, and the ID of walker 0, whom the detector misses after the gap until ``late_s``
    seconds later (the other two are found on the first frame). ``pair_cost``: a (zero) ``gap_pair_cost``."""
    tracker = ByteTracker(frame_rate=FPS, track_buffer=300)
    if pair_cost:
        tracker.gap_pair_cost = lambda ids, boxes: np.zeros((ids.size, len(boxes)))
    for frame in range(20):
        before = tracker.update(walkers(frame / FPS), timestamp=frame / FPS)
    last = 19 / FPS
    t0 = last + 3.0
    tracker.update(walkers(t0, slowed_from=last)[1:], timestamp=t0)
    t = t0
    while t < t0 + late_s - 1e-9:
        t += 0.1
        tracker.update(walkers(t, slowed_from=last)[1:], timestamp=t)
    tracker.update(walkers(t + 0.1, slowed_from=last), timestamp=t + 0.1)
    after = tracker.update(walkers(t + 0.2, slowed_from=last), timestamp=t + 0.2)  # new tracks show on frame 2
    return sorted(before[:, 4].astype(int).tolist()), int(after[after[:, 7] == 0, 4][0])


def test_after_an_outage_a_person_found_late_keeps_the_id_within_the_window():
    """With a pair cost (appearance: ``tracker.reid``), the updates within ``gap_reacquire_s`` after an outage
    still look for its tracks not found yet; after that window, or without a pair cost, it is a new track."""
    before, late = ids_when_one_walker_returns_late(0.3, pair_cost=True)
    assert before == [1, 2, 3] and late == 1
    assert ids_when_one_walker_returns_late(0.3, pair_cost=False)[1] == 4
    assert ids_when_one_walker_returns_late(1.5, pair_cost=True)[1] == 4  # past the 1 s window


def test_a_restore_inside_the_window_after_an_outage_changes_nothing():
    zero = lambda ids, boxes: np.zeros((ids.size, len(boxes)))  # noqa: E731
    tracker = ByteTracker(frame_rate=FPS, track_buffer=300)
    tracker.gap_pair_cost = zero
    for frame in range(20):
        tracker.update(walkers(frame / FPS), timestamp=frame / FPS)
    tracker.update(walkers(4.9, slowed_from=1.9)[1:], timestamp=4.9)  # the outage; walker 0 not seen yet
    restored = ByteTracker.from_state(tracker.state_dict())
    restored.gap_pair_cost = zero
    for t in (5.0, 5.1, 5.2):
        dets = walkers(t, slowed_from=1.9)
        assert restored.update(dets, timestamp=t).tobytes() == tracker.update(dets, timestamp=t).tobytes()
    assert 1 in tracker.update(walkers(5.3, slowed_from=1.9), timestamp=5.3)[:, 4]
