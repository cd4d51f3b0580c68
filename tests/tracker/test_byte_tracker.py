"""ByteTracker behaviour users rely on: API, ids, reset, det_index, lost tracks, classes, gaps, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from int8track.tracker import OUTPUT_COLUMNS, ByteTracker


def walker_frames(frames: int, people: int = 3, seed: int = 0) -> list[np.ndarray]:
    """People moving right at constant speed, well separated, scores 0.9."""
    rng = np.random.default_rng(seed)
    start = np.column_stack((rng.uniform(0, 50, people), np.arange(people) * 300.0 + 10))
    out = []
    for t in range(frames):
        x, y = start[:, 0] + 3.0 * t, start[:, 1]
        out.append(np.column_stack((x, y, x + 40, y + 100, np.full(people, 0.9))))
    return out


def run(tracker: ByteTracker, frames: list[np.ndarray]) -> list[np.ndarray]:
    return [tracker.update(f) for f in frames]


def test_output_layout_and_dtype() -> None:
    tracker = ByteTracker()
    out = tracker.update(walker_frames(1)[0])
    assert OUTPUT_COLUMNS == ("x1", "y1", "x2", "y2", "track_id", "score", "class", "det_index")
    assert out.shape == (3, 8) and out.dtype == np.float64
    assert (out[:, 6] == -1).all()  # no class column in the input
    assert set(tracker.last_stage_ns) == {"predict", "iou", "assignment", "bookkeeping"}
    assert all(isinstance(v, int) and v >= 0 for v in tracker.last_stage_ns.values())


@pytest.mark.parametrize("empty", [np.empty((0, 5)), np.empty((0,)), np.empty((0, 6)), []])
def test_empty_detections_are_no_detections(empty) -> None:
    assert ByteTracker().update(empty).shape == (0, 8)
    tracker = ByteTracker()
    assert len(tracker.update(walker_frames(1)[0])) == 3
    assert tracker.update(empty).shape == (0, 8)  # the tracks are lost, not output
    assert tracker.lost_tracks().shape == (3, 8)


def test_det_index_points_at_the_matched_input_row() -> None:
    tracker = ByteTracker()
    rng = np.random.default_rng(3)
    for frame in walker_frames(20, people=5):
        shuffled = frame[rng.permutation(len(frame))]
        shuffled[:, 4] = rng.uniform(0.65, 1.0, len(frame))
        out = tracker.update(shuffled)
        rows = out[:, 7].astype(int)
        np.testing.assert_array_equal(out[:, 5], shuffled[rows, 4])
        np.testing.assert_allclose(out[:, :4], shuffled[rows, :4], atol=15)
    assert len(out) == 5


def test_ids_are_per_instance_and_reset_restarts_them() -> None:
    frames = walker_frames(10)
    first, second = ByteTracker(), ByteTracker()
    interleaved_a, interleaved_b = [], []
    for f in frames:
        interleaved_a.append(first.update(f))
        interleaved_b.append(second.update(f[::-1].copy()))
    assert sorted(np.unique(interleaved_a[-1][:, 4])) == [1, 2, 3]
    assert sorted(np.unique(interleaved_b[-1][:, 4])) == [1, 2, 3]
    first.reset()
    again = run(first, frames)
    for a, b in zip(again, interleaved_a):
        np.testing.assert_array_equal(a, b)


def test_compact_ids_never_skip_while_official_ids_do() -> None:
    # Frame 2 adds a one-frame false positive: it becomes an unconfirmed track that dies.
    frames = walker_frames(8)
    frames[1] = np.vstack((frames[1], [[900, 900, 940, 1000, 0.95]]))
    frames[3] = np.vstack((frames[3], [[1500, 100, 1540, 200, 0.95]]))  # a real newcomer from frame 4 on
    for t in range(4, 8):
        frames[t] = np.vstack((frames[t], [[1500 + 3 * (t - 3), 100, 1540 + 3 * (t - 3), 200, 0.95]]))
    official = run(ByteTracker(id_mode="official"), frames)
    compact = run(ByteTracker(id_mode="compact"), frames)
    official_ids = np.unique(np.concatenate(official)[:, 4])
    compact_ids = np.unique(np.concatenate(compact)[:, 4])
    assert list(official_ids) == [1, 2, 3, 5]  # id 4 went to the dead false positive
    assert list(compact_ids) == [1, 2, 3, 4]
    for a, b in zip(official, compact):
        np.testing.assert_array_equal(a[:, [0, 1, 2, 3, 5, 6, 7]], b[:, [0, 1, 2, 3, 5, 6, 7]])


def test_lost_tracks_are_returned_and_then_forgotten() -> None:
    tracker = ByteTracker(track_buffer=5, return_lost=True)
    frames = walker_frames(5)
    run(tracker, frames)
    seen = frames[-1][:2]  # the third person disappears
    out = tracker.update(seen)
    lost = out[out[:, 7] == -1]
    assert len(out) == 3 and len(lost) == 1
    np.testing.assert_array_equal(lost, tracker.lost_tracks())
    lost_id = lost[0, 4]
    for _ in range(4):  # frames 7..10: lost for 2..5 frames
        out = tracker.update(seen)
        assert lost_id in out[out[:, 7] == -1, 4]
    out = tracker.update(seen)  # frame 11: frame_id - last_frame = 6 > max_time_lost = 5: timed out,
    assert lost_id in out[:, 4]  # but (official) still matchable for this one frame
    out = tracker.update(seen)
    assert lost_id not in out[:, 4]
    assert len(tracker.lost_tracks()) == 0


def test_lost_track_is_recovered_with_its_id() -> None:
    tracker = ByteTracker()
    frames = walker_frames(12)
    outputs = run(tracker, frames[:6])
    ids = set(outputs[-1][:, 4])
    for f in frames[6:9]:
        tracker.update(f[:2])
    out = tracker.update(frames[9])
    assert set(out[:, 4]) == ids


def test_class_aware_tracks_only_match_the_same_class() -> None:
    box = np.array([100.0, 100.0, 140.0, 200.0])
    frames = [np.array([[*box + 2 * t, 0.9, 0.0]]) for t in range(4)]
    frames += [np.array([[*box + 2 * t, 0.9, 1.0]]) for t in range(4, 8)]  # same place, class changes
    aware = run(ByteTracker(class_aware=True), frames)
    blind = run(ByteTracker(class_aware=False), frames)
    assert len(np.unique(np.concatenate(blind)[:, 4])) == 1
    aware_all = np.concatenate(aware)
    assert len(np.unique(aware_all[:, 4])) == 2
    for out, frame in zip(aware, frames):
        np.testing.assert_array_equal(out[:, 6], frame[out[:, 7].astype(int), 5])


def test_class_aware_needs_a_class_column() -> None:
    with pytest.raises(ValueError, match="class column"):
        ByteTracker(class_aware=True).update(walker_frames(1)[0])


def test_score_equal_to_high_threshold_is_used_by_neither_stage() -> None:
    tracker = ByteTracker()
    frames = walker_frames(4, people=1)
    run(tracker, frames[:3])
    at_threshold = frames[3].copy()
    at_threshold[:, 4] = 0.5
    assert len(tracker.update(at_threshold)) == 0  # official quirk: dropped from both stages
    tracker.reset()
    run(tracker, frames[:3])
    just_below = frames[3].copy()
    just_below[:, 4] = 0.4999
    assert len(tracker.update(just_below)) == 1  # second stage keeps the track


def test_frame_gap_predicts_several_steps_and_ages_lost_tracks() -> None:
    frames = walker_frames(8, people=1)
    stepwise, gapped = ByteTracker(), ByteTracker()
    run(stepwise, frames[:5])
    run(gapped, frames[:5])
    # Same frame 8 reached by two empty frames vs one update with frame_gap=3: the track is
    # predicted three steps either way (it is lost during the empty frames, so its height
    # velocity is zeroed there; with a gap it keeps it), then matched at the same place.
    stepwise.update(np.empty((0, 5)))
    stepwise.update(np.empty((0, 5)))
    a = stepwise.update(frames[7])
    b = gapped.update(frames[7], frame_gap=3)
    assert gapped.frame_id == stepwise.frame_id == 8
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=0.5)
    assert a[0, 4] == b[0, 4]

    lost = ByteTracker(track_buffer=30)
    run(lost, frames[:2])
    lost.update(np.empty((0, 5)))
    lost.update(np.empty((0, 5)), frame_gap=29)  # 30 frames since the last match: kept
    assert len(lost.lost_tracks()) == 1
    lost.update(np.empty((0, 5)), frame_gap=2)  # 32 > 30: removed (kept one more frame, official)
    lost.update(np.empty((0, 5)))
    assert lost.num_tracks == 0


def test_timestamps_convert_to_frame_gaps() -> None:
    frames = walker_frames(10, people=2)
    by_time, by_gap = ByteTracker(frame_rate=10), ByteTracker(frame_rate=10)
    times = [0.0, 0.1, 0.2, 0.5, 0.6, 0.9]
    gaps = [1, 1, 1, 3, 1, 3]
    for t, gap, frame_index in zip(times, gaps, np.cumsum(gaps) - 1):
        np.testing.assert_array_equal(by_time.update(frames[frame_index], timestamp=t),
                                      by_gap.update(frames[frame_index], frame_gap=gap))
    with pytest.raises(ValueError, match="increase"):
        by_time.update(frames[0], timestamp=0.9)
    with pytest.raises(ValueError, match="frame_gap"):
        by_gap.update(frames[0], frame_gap=0)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 4)), "5 columns"),
    (np.zeros((2, 7)), "5 columns"),
    (np.zeros((2, 5, 1)), "2-D"),
    (np.zeros(5), "2-D"),
    (np.array([["a", "b", "c", "d", "e"]]), "numeric"),
    (np.array([[1, 2, 3, 4, 0.5]], dtype=object), "numeric"),
    (np.ones((1, 5), dtype=bool), "numeric"),
])
def test_structural_problems_raise(bad, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ByteTracker().update(bad)


def test_invalid_rows_are_dropped_and_scores_clipped() -> None:
    tracker = ByteTracker()
    dets = np.array([
        [np.nan, 0, 10, 10, 0.9],
        [0, 0, 40, 100, 1.7],          # score clipped to 1
        [50, 0, 40, 100, 0.9],         # x2 < x1
        [300, 0, 340, np.inf, 0.9],
        [600, 0, 640, 100, -0.3],      # score clipped to 0: ignored
        [900, 0, 940, 100, 0.8],
    ])
    out = tracker.update(dets)
    assert tracker.last_dropped == 3
    assert sorted(out[:, 7]) == [1, 5]
    assert out[out[:, 7] == 1, 5] == 1.0
    out = tracker.update(np.array([[0, 0, 40, 100, 0.9]], dtype=np.float32))  # other float dtypes accepted
    assert len(out) == 1


def test_degenerate_boxes_are_dropped_without_overflow() -> None:
    """A box a denormal high or wide would give an infinite aspect ratio, and NaN in the Kalman state."""
    tracker = ByteTracker()
    dets = np.array([[0, 0, 10, 5e-324, 0.9], [0, 0, 5e-324, 30, 0.9], [100, 0, 100 + 1e-7, 30, 0.9],
                     [200, 0, 240, 100, 0.9]])
    with np.errstate(all="raise"):
        for _ in range(3):
            out = tracker.update(dets)
    assert tracker.last_dropped == 3 and out[:, 7].tolist() == [3]
    assert np.isfinite(tracker.state_dict().tracks["mean"]).all()


def test_constructor_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="id_mode"):
        ByteTracker(id_mode="global")
    with pytest.raises(ValueError, match="frame_rate"):
        ByteTracker(frame_rate=0)


def test_memory_stays_bounded_on_an_endless_stream() -> None:
    """100,000 frames of churn: pairs of people appear for 4 frames, leave, and new ones come.

    Every 20-frame cycle starts 2 tracks that are later lost and removed; removed tracks
    must not be kept, so the number held stays small however long the stream runs.
    """
    rng = np.random.default_rng(5)
    tracker = ByteTracker(track_buffer=1)  # max_time_lost = 1
    no_detections = np.empty((0, 5))
    most = 0
    for _ in range(5_000):
        x, y = rng.uniform(0, 1000, 2)
        people = np.array([[x, y, x + 20, y + 40, 0.9], [x + 100, y, x + 120, y + 40, 0.8]])
        for t in range(20):
            tracker.update(people + [t, 0, t, 0, 0] if t < 4 else no_detections)
            most = max(most, tracker.num_tracks)
    assert tracker.frame_id == 100_000
    assert tracker.num_tracks == 0
    assert most == 2
    tracker.update(people)
    assert tracker.update(people)[:, 4].min() == 10_001  # 2 tracks per cycle were really created and shown
