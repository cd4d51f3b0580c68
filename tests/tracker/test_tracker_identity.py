"""Mechanisms beyond the official ByteTrack that keep identities (benchmarks/identity.py measures them):
frame-rate-scaled velocity noise and size kept on low-score matches (default on), Buffered IoU (opt-in), and
parity mode switching them off."""
from __future__ import annotations

import numpy as np
import pytest

from int8track.tracker import ByteTracker, TrackerConfig, kalman
from int8track.tracker.config import DEFAULT_VELOCITY_NOISE_EXPONENT
from int8track.tracker.iou import buffered, iou_matrix

from tracker_reference import block_to_full

SPEED = 16.0  # px per frame at 7 fps: a brisk walk for a 40x100 px person


def turn_then_hide(speed: float = SPEED, still: int = 8, moving: int = 6, hidden: int = 3, after: int = 3
                   ) -> list[np.ndarray]:
    """One person standing, then walking right at ``speed``, then undetected for ``hidden`` frames, then seen
    again exactly where constant velocity puts them."""
    frames, x = [], 100.0
    for t in range(still + moving + hidden + after):
        if t >= still:
            x += speed
        hidden_now = still + moving <= t < still + moving + hidden
        frames.append(np.empty((0, 5)) if hidden_now else np.array([[x, 200.0, x + 40, 300.0, 0.9]]))
    return frames


def ids_per_frame(tracker: ByteTracker, frames: list[np.ndarray]) -> list[list[int]]:
    return [tracker.update(frame)[:, 4].astype(int).tolist() for frame in frames]


# ---- configuration -------------------------------------------------------------------------------------------

def test_velocity_noise_is_automatic_off_in_parity_mode_and_explicit_values_win() -> None:
    assert TrackerConfig().velocity_noise_exponent is None
    assert TrackerConfig().effective_velocity_noise_exponent == DEFAULT_VELOCITY_NOISE_EXPONENT > 0
    # iou_inclusive=True reproduces the official tracker (whatever the id numbering): the mechanism is off.
    for config in (TrackerConfig(iou_inclusive=True), TrackerConfig(iou_inclusive=True, id_mode="compact"),
                   TrackerConfig.parity()):
        assert config.parity_mode and config.effective_velocity_noise_exponent == 0.0
    assert TrackerConfig.parity(velocity_noise_exponent=1.5).effective_velocity_noise_exponent == 1.5
    assert TrackerConfig(velocity_noise_exponent=0).effective_velocity_noise_exponent == 0.0
    assert TrackerConfig().effective_freeze_size_on_low_score
    assert not TrackerConfig(iou_inclusive=True).effective_freeze_size_on_low_score
    assert TrackerConfig.parity(freeze_size_on_low_score=True).effective_freeze_size_on_low_score
    parity = TrackerConfig.parity()
    assert (parity.iou_inclusive, parity.id_mode, parity.buffer_ratio, parity.second_buffer_ratio) == \
        (True, "official", 0.0, 0.0)


@pytest.mark.parametrize(("field", "value"), [
    ("velocity_noise_exponent", -0.5), ("velocity_noise_exponent", 4.0), ("velocity_noise_exponent", "1"),
    ("velocity_noise_exponent", float("nan")), ("buffer_ratio", -0.1), ("buffer_ratio", 5.0),
    ("second_buffer_ratio", None), ("second_buffer_ratio", True), ("freeze_size_on_low_score", 1),
])
def test_bad_mechanism_settings_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: value})


# ---- velocity noise scaled to the frame rate ------------------------------------------------------------------

def test_velocity_noise_scale() -> None:
    assert kalman.velocity_noise_scale(30.0, 1.5) == 1.0
    assert kalman.velocity_noise_scale(7.0, 0.0) == 1.0
    assert kalman.velocity_noise_scale(10.0, 1.5) == pytest.approx(3.0 ** 1.5)
    assert kalman.velocity_noise_scale(60.0, 1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="frame_rate"):
        kalman.velocity_noise_scale(0.0, 1.0)


def test_predict_scales_only_the_velocity_process_noise() -> None:
    """Against the dense textbook step P' = F P F^T + Q, with Q's velocity block scaled by s^2."""
    rng = np.random.default_rng(3)
    mean, cov = kalman.initiate(np.column_stack((rng.uniform(50, 500, (3, 2)), rng.uniform(0.3, 0.6, 3),
                                                 rng.uniform(50, 200, 3))))
    mean[:, 4:] = rng.normal(0, 3, (3, 4))
    scale = 2.5
    before = block_to_full(cov)
    expected_cov = []
    for row in range(3):
        height = mean[row, 3]
        pos = kalman.STD_WEIGHT_POSITION * height
        vel = kalman.STD_WEIGHT_VELOCITY * height * scale
        q = np.diag(np.square([pos, pos, kalman.ASPECT_PROCESS_STD[0], pos, vel, vel,
                               kalman.ASPECT_PROCESS_STD[1] * scale, vel]))
        f = np.eye(8) + np.eye(8, k=4)
        expected_cov.append(f @ before[row] @ f.T + q)
    expected_mean = mean.copy()
    expected_mean[:, :4] += mean[:, 4:]
    kalman.predict(mean, cov, velocity_scale=scale)
    np.testing.assert_allclose(mean, expected_mean)
    np.testing.assert_allclose(block_to_full(cov), np.array(expected_cov), rtol=1e-12)


def test_low_frame_rate_track_follows_a_turn_through_an_occlusion() -> None:
    """At 7 fps the official filter has learned under half the new speed after 6 frames, so the hidden person
    comes back far from where the lost track coasted and gets a new id; with the scaled noise it keeps id 1."""
    official = ids_per_frame(ByteTracker(frame_rate=7, velocity_noise_exponent=0), turn_then_hide())
    scaled = ids_per_frame(ByteTracker(frame_rate=7), turn_then_hide())
    assert official[-2:] == [[2], [2]]
    assert scaled[-3:] == [[1], [1], [1]]
    assert all(ids == [1] for ids in scaled[:14])


def test_velocity_noise_changes_nothing_at_30_fps() -> None:
    rng = np.random.default_rng(5)
    frames = [np.column_stack((xy := rng.uniform(0, 800, (12, 2)) + 4.0 * t, xy + rng.uniform(30, 90, (12, 2)),
                               rng.uniform(0.05, 1.0, 12))) for t in range(30)]
    a, b = ByteTracker(frame_rate=30), ByteTracker(frame_rate=30, velocity_noise_exponent=0)
    for frame in frames:
        np.testing.assert_array_equal(a.update(frame), b.update(frame))


def test_parity_mode_switches_the_velocity_noise_off() -> None:
    """iou_inclusive=True at 7 fps behaves as the official filter (new id), compact ids or official ones."""
    for settings in ({"iou_inclusive": True}, {"iou_inclusive": True, "id_mode": "official"}):
        ids = ids_per_frame(ByteTracker(frame_rate=7, **settings), turn_then_hide())
        assert ids[-1] != [1]


# ---- size kept on low-score matches ----------------------------------------------------------------------------

def test_update_keeps_size_rows_unobserved_in_aspect_and_height() -> None:
    rng = np.random.default_rng(9)
    mean, cov = kalman.initiate(np.column_stack((rng.uniform(50, 500, (4, 2)), rng.uniform(0.3, 0.6, 4),
                                                 rng.uniform(50, 200, 4))))
    mean[:, 4:] = rng.normal(0, 3, (4, 4))
    kalman.predict(mean, cov)
    measured = mean[:, :4] + rng.normal(0, 5, (4, 4))
    keep = np.array([True, False, True, False])
    full_mean, full_cov = kalman.update(mean, cov, measured)
    kept_mean, kept_cov = kalman.update(mean, cov, measured, keep)
    np.testing.assert_array_equal(kept_mean[~keep], full_mean[~keep])
    np.testing.assert_array_equal(kept_cov[~keep], full_cov[~keep])
    position = [0, 1, 4, 5]  # cx, cy and their velocities: updated as usual
    size = [2, 3, 6, 7]      # a, h and their velocities: as predicted
    np.testing.assert_array_equal(kept_mean[keep][:, position], full_mean[keep][:, position])
    np.testing.assert_array_equal(kept_mean[keep][:, size], mean[keep][:, size])
    np.testing.assert_array_equal(kept_cov[keep][:, 2:], cov[keep][:, 2:])
    np.testing.assert_array_equal(kept_cov[keep][:, :2], full_cov[keep][:, :2])


def half_hidden_frames() -> list[np.ndarray]:
    """A person walking right (full box, score 0.9), seen for three frames only down to the waist (score 0.3)."""
    frames = []
    for t in range(12):
        x = 100 + 3.0 * t
        partial = 6 <= t < 9
        frames.append(np.array([[x, 200.0, x + 40, 262.0 if partial else 300.0, 0.3 if partial else 0.9]]))
    return frames


def test_low_score_match_moves_the_track_but_keeps_its_size() -> None:
    kept = run(ByteTracker(frame_rate=7), half_hidden_frames())
    taken = run(ByteTracker(frame_rate=7, freeze_size_on_low_score=False), half_hidden_frames())
    for out in kept:
        assert out[:, 4].tolist() == [1]
        assert out[0, 3] - out[0, 1] == pytest.approx(100.0)
    assert taken[7][0, 3] - taken[7][0, 1] < 70  # the track shrank to the visible part
    # the position still follows the low-score detections (the person keeps walking)
    np.testing.assert_allclose((kept[8][0, 0] + kept[8][0, 2]) / 2, 144.0, atol=0.5)
    assert kept[8][0, 7] == 0  # matched to that detection


# ---- Buffered IoU (opt-in) ---------------------------------------------------------------------------------

def test_buffered_boxes_grow_by_the_ratio_of_their_own_size() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [0.0, 0.0, 2.0, 4.0]])
    np.testing.assert_array_equal(buffered(boxes, 0.25), [[0.0, -5.0, 60.0, 145.0], [-0.5, -1.0, 2.5, 5.0]])
    assert buffered(boxes, 0.0) is boxes
    # Two 40 px wide boxes 10 px apart: IoU 0; buffered by 0.3 they are 64 px wide and overlap by 14 px.
    a, b = np.array([[0.0, 0.0, 40.0, 100.0]]), np.array([[50.0, 0.0, 90.0, 100.0]])
    assert iou_matrix(a, b)[0, 0] == 0.0
    assert iou_matrix(buffered(a, 0.3), buffered(b, 0.3))[0, 0] == pytest.approx(14.0 * 160 / (2 * 64 * 160 - 14 * 160))


def jump_frames(score: float, shift: float) -> list[np.ndarray]:
    """A confident 40 px wide detection, then one of ``score`` ``shift`` px to the right."""
    return [np.array([[100.0, 100.0, 140.0, 200.0, 0.9]]),
            np.array([[100.0 + shift, 100.0, 140.0 + shift, 200.0, score]])]


def test_buffer_ratio_matches_a_detection_that_jumped_past_the_box() -> None:
    """A 44 px jump: no plain overlap; buffered by 0.5 the IoU is 36 / 124, fused 0.26 > 0.2 (cost < 0.8)."""
    plain, buffered_tracker = ByteTracker(), ByteTracker(buffer_ratio=0.5)
    (first, second), (first_b, second_b) = run(plain, jump_frames(0.9, 44)), run(buffered_tracker, jump_frames(0.9, 44))
    assert first[:, 4].tolist() == first_b[:, 4].tolist() == [1]
    assert second.shape[0] == 0  # track 1 lost; the detection starts an unconfirmed track (not output)
    assert second_b[:, [4, 7]].tolist() == [[1, 0]]
    # the second-stage buffer does not reach the first stage
    assert run(ByteTracker(second_buffer_ratio=0.5), jump_frames(0.9, 44))[1].shape[0] == 0


def test_second_buffer_ratio_applies_to_low_score_detections() -> None:
    """A low-score detection (second stage, IoU >= 0.5 needed) 20 px off: plain IoU 1/3, buffered by 0.5 0.6."""
    low = 0.3  # between the low and high thresholds
    assert run(ByteTracker(), jump_frames(low, 20))[1].shape[0] == 0
    assert run(ByteTracker(buffer_ratio=0.5), jump_frames(low, 20))[1].shape[0] == 0
    assert run(ByteTracker(second_buffer_ratio=0.5), jump_frames(low, 20))[1][:, [4, 7]].tolist() == [[1, 0]]


def run(tracker: ByteTracker, frames: list[np.ndarray]) -> list[np.ndarray]:
    return [tracker.update(frame) for frame in frames]
