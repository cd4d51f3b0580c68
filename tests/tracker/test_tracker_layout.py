"""Column-major track storage and the shortcut checks give exactly the results of the plain formulation."""
from __future__ import annotations

import numpy as np
import pytest

from int8track.tracker import kalman
from int8track.tracker.track_table import take_rows
from int8track.tracker.validation import clean_detections


def random_state(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    measurements = np.column_stack((rng.uniform(0, 1920, (count, 2)), rng.uniform(0.3, 0.6, count),
                                    rng.uniform(30, 300, count)))
    mean, cov = kalman.initiate(measurements)
    mean[:, 4:] = rng.normal(0, 2, (count, 4))
    cov += rng.uniform(0, 1, cov.shape)
    return mean, cov, measurements + rng.normal(0, 2, measurements.shape)


@pytest.mark.parametrize("count", [1, 7, 60])
def test_kalman_is_bit_identical_in_row_and_column_major_layouts(count: int) -> None:
    rng = np.random.default_rng(count)
    mean, cov, measurements = random_state(rng, count)
    assert mean.flags.f_contiguous and cov.flags.f_contiguous  # initiate returns the tracker's layout
    row_mean, row_cov = mean.copy(order="C"), cov.copy(order="C")
    kalman.predict(mean, cov, 2)
    kalman.predict(row_mean, row_cov, 2)
    np.testing.assert_array_equal(mean, row_mean)
    np.testing.assert_array_equal(cov, row_cov)
    for got, expected in zip(kalman.update(mean, cov, np.asfortranarray(measurements)),
                             kalman.update(row_mean, row_cov, measurements)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(kalman.xyah_to_tlbr(mean), kalman.xyah_to_tlbr(row_mean))


def test_box_conversions_follow_the_official_operation_order() -> None:
    rng = np.random.default_rng(3)
    boxes = np.column_stack((rng.uniform(0, 1000, (50, 2)), rng.uniform(1000, 2000, (50, 2))))
    tlbr, xyah = kalman.measure(boxes)
    tlwh = boxes.copy()  # official STrack: tlwh from the detection, then tlwh_to_xyah / tlbr
    tlwh[:, 2:] -= tlwh[:, :2]
    expected_xyah = tlwh.copy()
    expected_xyah[:, :2] += expected_xyah[:, 2:] / 2
    expected_xyah[:, 2] /= expected_xyah[:, 3]
    np.testing.assert_array_equal(xyah, expected_xyah)
    np.testing.assert_array_equal(tlbr, np.column_stack((tlwh[:, :2], tlwh[:, :2] + tlwh[:, 2:])))
    state = np.zeros((50, 8))
    state[:, :4] = xyah
    box = state[:, :4].copy()  # official STrack.tlwh then tlbr
    box[:, 2] *= box[:, 3]
    box[:, :2] -= box[:, 2:] / 2
    box[:, 2:] += box[:, :2]
    np.testing.assert_array_equal(kalman.xyah_to_tlbr(state), box)


@pytest.mark.parametrize("shape", [(9,), (9, 8), (9, 4, 3)])
def test_take_rows_equals_fancy_indexing_and_keeps_column_major(shape: tuple[int, ...]) -> None:
    array = np.asfortranarray(np.arange(np.prod(shape), dtype=float).reshape(shape))
    index = np.array([4, 0, 8, 4])
    taken = take_rows(array, index)
    np.testing.assert_array_equal(taken, array[index])
    assert taken.flags.f_contiguous


def test_valid_rows_keep_their_values_and_rows_in_the_match_info() -> None:
    dets = np.array([[0.0, 0.0, 1e308, 1e308, 0.9], [1e308, 0.0, 1.7e308, 10.0, 0.8], [0.0, 0.0, np.inf, 5.0, 0.9],
                     [0.0, np.nan, 5.0, 5.0, 0.9]])
    clean = clean_detections(dets)
    np.testing.assert_array_equal(clean.rows, [0, 1])
    assert clean.dropped == 2
    np.testing.assert_array_equal(clean.boxes, dets[:2, :4])
    np.testing.assert_array_equal(clean.match_info, [[0.9, -1.0, 0.0], [0.8, -1.0, 1.0]])
