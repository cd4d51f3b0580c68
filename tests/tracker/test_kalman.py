"""The batched block-covariance Kalman filter equals a textbook 8x8 filter (filterpy)."""
from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

from int8track.tracker import kalman

from tracker_reference import block_to_full

W_POS, W_VEL = 1.0 / 20, 1.0 / 160


def official_process_noise(height: float) -> np.ndarray:
    std = [W_POS * height, W_POS * height, 1e-2, W_POS * height, W_VEL * height, W_VEL * height, 1e-5, W_VEL * height]
    return np.diag(np.square(std))


def official_measurement_noise(height: float) -> np.ndarray:
    return np.diag(np.square([W_POS * height, W_POS * height, 1e-1, W_POS * height]))


def reference_filter(measurement: np.ndarray) -> KalmanFilter:
    """filterpy filter set up like the official ``KalmanFilter.initiate``."""
    kf = KalmanFilter(dim_x=8, dim_z=4)
    kf.F = np.eye(8)
    kf.F[:4, 4:] = np.eye(4)
    kf.H = np.eye(4, 8)
    kf.x = np.r_[measurement, np.zeros(4)].reshape(8, 1)
    h = measurement[3]
    std = [2 * W_POS * h, 2 * W_POS * h, 1e-2, 2 * W_POS * h, 10 * W_VEL * h, 10 * W_VEL * h, 1e-5, 10 * W_VEL * h]
    kf.P = np.diag(np.square(std))
    return kf


def random_measurements(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.column_stack((rng.uniform(0, 1920, count), rng.uniform(0, 1080, count),
                            rng.uniform(0.3, 0.6, count), rng.uniform(30, 300, count)))


def test_matches_filterpy_over_random_sequences() -> None:
    rng = np.random.default_rng(7)
    tracks = 6
    start = random_measurements(rng, tracks)
    mean, cov = kalman.initiate(start)
    references = [reference_filter(m) for m in start]
    for step in range(40):
        steps = 1 + step % 3  # also exercise multi-step prediction
        for kf in references:
            for _ in range(steps):
                kf.predict(Q=official_process_noise(kf.x[3, 0]))
        mean, cov = kalman.predict(mean, cov, steps)
        updated = rng.random(tracks) < 0.7  # some tracks miss a measurement
        measurement = mean[:, :4] + rng.normal(0, 3, (tracks, 4)) * [1, 1, 0.01, 1]
        rows = np.flatnonzero(updated)
        mean[rows], cov[rows] = kalman.update(mean[rows], cov[rows], measurement[rows])
        for i in rows:
            references[i].update(measurement[i], R=official_measurement_noise(references[i].x[3, 0]))
        expected_mean = np.array([kf.x[:, 0] for kf in references])
        expected_cov = np.array([kf.P for kf in references])
        np.testing.assert_allclose(mean, expected_mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(block_to_full(cov), expected_cov, rtol=1e-9, atol=1e-9)


def test_initiate_covariance_is_official_diagonal() -> None:
    measurement = np.array([[100.0, 50.0, 0.5, 120.0]])
    mean, cov = kalman.initiate(measurement)
    expected = reference_filter(measurement[0])
    np.testing.assert_array_equal(mean[0], expected.x[:, 0])
    np.testing.assert_allclose(block_to_full(cov)[0], expected.P, rtol=1e-15)


def test_box_conversions_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [0.5, 0.25, 3.5, 9.75]])
    xyah = kalman.measure(boxes)[1]
    np.testing.assert_allclose(xyah[0], [30.0, 70.0, 0.4, 100.0])
    state = np.zeros((2, 8))
    state[:, :4] = xyah
    np.testing.assert_allclose(kalman.xyah_to_tlbr(state), boxes, atol=1e-12)
