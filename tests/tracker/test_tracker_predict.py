"""ByteTracker.predict / correct_predicted / apply_motion: tracking the frames the detector skips."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from int8track.apps.io.motchallenge import load_sequence
from int8track.tracker import ByteTracker, kalman

from conftest import require_data

# Noisy sightings of a few moving objects (tracks persist, get lost, come back, expire), plus clutter.
OBJECTS = np.array([[i * 30.0, (i % 2) * 25.0, i * 30.0 + 40.0, (i % 2) * 25.0 + 90.0] for i in range(5)])
score = st.one_of(st.floats(0, 1), st.just(0.5), st.just(0.95))
jitter = st.floats(-5, 5)
sighting = st.tuples(st.integers(0, len(OBJECTS) - 1), jitter, jitter, score)
free_box = st.tuples(st.floats(0, 150), st.floats(0, 150), st.floats(1, 60), st.floats(1, 60), score).map(
    lambda r: (r[0], r[1], r[0] + r[2], r[1] + r[3], r[4]))
frame = st.lists(st.one_of(sighting, sighting, sighting, free_box), max_size=7)


def frame_rows(rows: list[tuple], t: int) -> np.ndarray:
    """Sightings move 2 px per frame to the right, so tracks get a velocity the skipped steps extrapolate."""
    out = []
    for row in rows:
        if len(row) == 4:  # a sighting (object, dx, dy, score)
            obj, dx, dy, s = row
            box = OBJECTS[obj] + [dx + 2.0 * t, dy, dx + 2.0 * t, dy]
            out.append((*box, s))
        else:
            out.append(row)
    return np.array(out, dtype=np.float64).reshape(-1, 5)


def assert_same(a: np.ndarray, b: np.ndarray, where: str) -> None:
    assert a.shape == b.shape, where
    assert a.tobytes() == b.tobytes(), where  # bit for bit, ids included


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(frame, min_size=2, max_size=14), gap=st.integers(2, 6), track_buffer=st.integers(0, 6),
       official=st.booleans(), return_lost=st.booleans())
def test_predict_calls_then_update_equal_update_with_frame_gap(frames, gap: int, track_buffer: int, official: bool,
                                                                return_lost: bool) -> None:
    settings_ = dict(track_buffer=track_buffer, return_lost=return_lost,
                     **(dict(iou_inclusive=True, id_mode="official") if official else {}))
    with_gap, with_predict = ByteTracker(**settings_), ByteTracker(**settings_)
    for i, rows in enumerate(frames):
        dets = frame_rows(rows, i * gap)
        expected = with_gap.update(dets, frame_gap=1 if i == 0 else gap)
        if i:
            for _ in range(gap - 1):
                predicted = with_predict.predict()
                assert (predicted[:, 7] == -1).all() and with_predict.last_predicted.all()
        assert_same(expected, with_predict.update(dets), f"detection frame {i}")
        assert with_gap.frame_id == with_predict.frame_id
        assert_same(with_gap.lost_tracks(), with_predict.lost_tracks(), f"lost tracks, frame {i}")


@pytest.mark.parametrize("gap", [2, 3, 4, 5, 6])
def test_predict_equals_frame_gap_on_mot17_public_detections(gap: int) -> None:
    """Real crowded detections (MOT17-09, 300 frames): lost tracks, refinds, expiry with a short buffer."""
    sequence = load_sequence(require_data("MOT17/train/MOT17-09-FRCNN"))
    detections = sequence.detections()[:300]
    for settings_ in ({}, {"iou_inclusive": True, "id_mode": "official", "track_buffer": 4}):
        with_gap, with_predict = ByteTracker(frame_rate=30, **settings_), ByteTracker(frame_rate=30, **settings_)
        ids_seen: set[int] = set()
        for f in range(0, len(detections), gap):
            expected = with_gap.update(detections[f], frame_gap=1 if f == 0 else gap)
            for _ in range(gap - 1 if f else 0):
                predicted = with_predict.predict()
                # Only confirmed tracks already shown on a detection frame are predicted.
                assert set(predicted[:, 4].astype(int)) <= ids_seen
            got = with_predict.update(detections[f])
            assert_same(expected, got, f"frame {f + 1}, {settings_}")
            ids_seen |= set(got[:, 4].astype(int))


def walkers(t: int) -> np.ndarray:
    x = 10.0 + 4.0 * t
    return np.array([[x, 20, x + 40, 120, 0.9], [x + 200, 20, x + 240, 120, 0.9]])


def test_predicted_boxes_extrapolate_and_new_tracks_wait_for_confirmation() -> None:
    tracker = ByteTracker()
    for t in range(6):
        tracker.update(walkers(t))
    before = tracker.update(walkers(6))
    predicted = tracker.predict()
    assert predicted.shape == (2, 8)
    np.testing.assert_array_equal(predicted[:, 4:7], before[:, 4:7])  # same ids, last score and class
    assert (predicted[:, 7] == -1).all()
    moved = predicted[:, 0] - before[:, 0]
    assert np.all(np.abs(moved - 4.0) < 0.5)  # the learned 4 px/frame
    assert tracker.frame_id == 8 and tracker.update_count == 7

    # A track created on a later detection frame is not predicted before it is confirmed.
    newcomer = np.array([[500.0, 300, 540, 400, 0.9]])
    tracker.update(np.vstack((walkers(8), newcomer)))
    assert len(tracker.predict()) == 2
    out = tracker.update(np.vstack((walkers(10), newcomer)))
    assert len(out) == 3
    assert len(tracker.predict()) == 3


def test_predict_clips_to_the_frame_and_leaves_out_tracks_outside() -> None:
    tracker = ByteTracker()
    for t in range(12):
        x = 400.0 + 15.0 * t  # running off the right edge of a 640-wide frame
        tracker.update(np.array([[x, 10, x + 60, 110, 0.9], [100, 10, 150, 110, 0.9]]))
    rows = [tracker.predict(frame_size=(640, 480)) for _ in range(6)]
    assert rows[1].shape[0] == 2 and rows[1][:, 2].max() == 640.0 and rows[1][:, :4].min() >= 0
    assert rows[-1].shape[0] == 1  # the runner is wholly outside by then; the standing track stays
    assert tracker.num_tracks == 2  # leaving the frame is not losing the track
    with pytest.raises(ValueError, match="frame_size"):
        tracker.predict(frame_size=(0, 480))


def test_predict_on_an_empty_tracker() -> None:
    tracker = ByteTracker()
    assert tracker.predict().shape == (0, 8)
    assert tracker.frame_id == 1 and tracker.last_predicted.shape == (0,)


def test_correct_predicted_moves_the_state_and_the_next_association() -> None:
    tracker, untouched = ByteTracker(), ByteTracker()
    for t in range(5):
        tracker.update(walkers(t))
        untouched.update(walkers(t))
    predicted = tracker.predict()
    untouched.predict()
    truth = predicted[:, :4] + [30.0, 0, 30.0, 0]  # the flow says both moved 30 px more than predicted
    truth[1] = np.nan  # no measurement for the second: it keeps its prediction
    assert tracker.correct_predicted(truth[:, :4]) == 1
    again = tracker.lost_tracks()  # nothing lost
    assert again.shape == (0, 8)
    corrected = tracker.predict()
    # The corrected track moved most of the 30 px (Kalman gain) plus a faster velocity; the other did not.
    assert corrected[0, 0] - predicted[0, 0] > 20.0
    assert corrected[1].tobytes() == untouched.predict()[1].tobytes()
    # The next detection frame associates the corrected box: the detection 30 px ahead is matched.
    ahead = walkers(7)[:1] + [30.0, 0, 30.0, 0, 0]
    assert tracker.update(ahead)[:, 4].tolist() == [predicted[0, 4]]


def test_correct_predicted_refuses_stale_rows_and_bad_shapes() -> None:
    tracker = ByteTracker()
    tracker.update(walkers(0))
    with pytest.raises(ValueError, match="predict"):
        tracker.correct_predicted(np.zeros((2, 4)))
    predicted = tracker.predict()
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        tracker.correct_predicted(np.zeros((3, 4)))
    tracker.update(walkers(2))
    with pytest.raises(ValueError, match="update"):
        tracker.correct_predicted(predicted[:, :4])


def test_apply_motion_moves_positions_velocities_and_heights() -> None:
    tracker = ByteTracker()
    for t in range(5):
        tracker.update(walkers(t))
    mean_before = tracker._tracks.mean.copy()
    angle, scale = np.deg2rad(3.0), 1.1
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = np.column_stack((linear, [12.0, -5.0]))
    tracker.apply_motion(affine)
    mean = tracker._tracks.mean
    np.testing.assert_allclose(mean[:, :2], mean_before[:, :2] @ linear.T + affine[:, 2])
    np.testing.assert_allclose(mean[:, 4:6], mean_before[:, 4:6] @ linear.T)
    np.testing.assert_allclose(mean[:, 3], mean_before[:, 3] * scale)
    np.testing.assert_allclose(mean[:, 2], mean_before[:, 2])  # aspect kept
    with pytest.raises(ValueError, match="2x3"):
        tracker.apply_motion(np.eye(3))


def test_warp_affine_identity_changes_nothing() -> None:
    mean, cov = kalman.initiate(np.array([[50.0, 60, 0.4, 100], [10, 20, 0.5, 40]]))
    mean[:, 4:] = 1.5
    before = mean.copy(), cov.copy()
    kalman.warp_affine(mean, cov, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    np.testing.assert_array_equal(mean, before[0])
    np.testing.assert_array_equal(cov, before[1])


def test_include_missed_adds_tracks_missed_by_one_detector_call_only() -> None:
    tracker = ByteTracker(track_buffer=30)
    for t in range(4):
        tracker.update(walkers(t))
    first_only = walkers(4)[:1]  # the second walker's detection flickers off
    shown = tracker.update(first_only)
    assert len(shown) == 1
    assert len(tracker.predict()) == 1
    with_missed = tracker.predict(include_missed=True)
    assert with_missed.shape == (2, 8) and (with_missed[:, 7] == -1).all()
    assert with_missed[1, 4] not in shown[:, 4]  # the missed track comes after the tracked ones
    assert walkers(3)[1, 0] + 4.0 < with_missed[1, 0] <= walkers(6)[1, 0] + 1.0  # moved on with its velocity
    tracker.update(first_only)  # missed by a second call: no longer included
    assert len(tracker.predict(include_missed=True)) == 1



def test_predict_counts_one_frame_period_of_timestamps() -> None:
    """With timestamps, the update after K-1 predict() calls takes the same K Kalman steps in all."""
    with_gap, with_predict = ByteTracker(frame_rate=10), ByteTracker(frame_rate=10)
    for t in range(0, 15, 3):
        expected = with_gap.update(walkers(t), timestamp=t / 10)
        if t:
            with_predict.predict()
            with_predict.predict()
        assert_same(expected, with_predict.update(walkers(t), timestamp=t / 10), f"t={t}")
        assert with_gap.frame_id == with_predict.frame_id
