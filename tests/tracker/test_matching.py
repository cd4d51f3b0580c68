"""Vectorised IoU, score fusion and thresholded assignment against independent references."""
from __future__ import annotations

import itertools

import lap
import numpy as np
import pytest
from cython_bbox import bbox_overlaps

from int8track.tracker import matching
from int8track.tracker.iou import iou_matrix, iou_one_to_many
from int8track.tracker.matching import fuse_score, mask_classes, overlapping_pairs, sparse_assignment

from tracker_reference import linear_assignment


def random_boxes(rng: np.random.Generator, count: int, scale: float = 100.0) -> np.ndarray:
    corner = rng.uniform(0, scale, (count, 2))
    size = rng.uniform(0.5, scale / 2, (count, 2))
    return np.hstack((corner, corner + size))


def brute_force_iou(a: np.ndarray, b: np.ndarray, inclusive: bool) -> np.ndarray:
    one = 1.0 if inclusive else 0.0
    out = np.zeros((len(a), len(b)))
    for i, j in itertools.product(range(len(a)), range(len(b))):
        w = min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]) + one
        h = min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]) + one
        if w > 0 and h > 0:
            area_a = (a[i, 2] - a[i, 0] + one) * (a[i, 3] - a[i, 1] + one)
            area_b = (b[j, 2] - b[j, 0] + one) * (b[j, 3] - b[j, 1] + one)
            out[i, j] = w * h / (area_a + area_b - w * h)
    return out


@pytest.mark.parametrize("inclusive", [False, True])
def test_iou_matches_brute_force(inclusive: bool) -> None:
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 23), random_boxes(rng, 31)
    np.testing.assert_allclose(iou_matrix(a, b, inclusive), brute_force_iou(a, b, inclusive), rtol=1e-12, atol=0)


def test_one_to_many_iou_is_a_row_of_the_matrix_bit_for_bit() -> None:
    """NMS's shape of the IoU: the same numbers as the tracker's matrix and as brute force."""
    rng = np.random.default_rng(4)
    boxes = np.vstack((random_boxes(rng, 60), [[5.0, 5.0, 5.0, 5.0]]))  # and a degenerate box (no 0/0)
    for i in (0, 17, 60):
        row = iou_one_to_many(boxes[i], boxes)
        np.testing.assert_array_equal(row, iou_matrix(boxes[i:i + 1], boxes)[0])
        np.testing.assert_allclose(row, brute_force_iou(boxes[i:i + 1], boxes, False)[0], rtol=1e-12, atol=0)
    assert iou_one_to_many(boxes[0], np.empty((0, 4))).shape == (0,)


def test_inclusive_iou_equals_cython_bbox_exactly() -> None:
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 40, scale=500), random_boxes(rng, 25, scale=500)
    np.testing.assert_array_equal(iou_matrix(a, b, inclusive=True), bbox_overlaps(a, b))


def test_iou_edge_cases() -> None:
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    touching = np.array([[10.0, 0.0, 20.0, 10.0]])
    assert iou_matrix(box, box)[0, 0] == 1.0
    assert iou_matrix(box, touching)[0, 0] == 0.0
    assert iou_matrix(box, touching, inclusive=True)[0, 0] == pytest.approx(11 / 231)
    assert iou_matrix(box, np.empty((0, 4))).shape == (1, 0)
    degenerate = np.array([[5.0, 5.0, 5.0, 5.0]])
    assert iou_matrix(degenerate, degenerate)[0, 0] == 0.0  # no 0/0


def test_fuse_score_is_official_formula() -> None:
    cost = np.array([[0.2, 0.9], [1.0, 0.5]])
    scores = np.array([0.5, 0.8])
    np.testing.assert_allclose(fuse_score(cost, scores), [[1 - 0.8 * 0.5, 1 - 0.1 * 0.8], [1.0, 1 - 0.5 * 0.8]])


def test_mask_classes_forbids_other_classes() -> None:
    cost = np.zeros((2, 3))
    mask_classes(cost, np.array([0.0, 1.0]), np.array([0.0, 1.0, 1.0]), forbidden=9.0)
    np.testing.assert_array_equal(cost, [[0, 9, 9], [9, 0, 0]])


def official_assignment(cost: np.ndarray, thresh: float) -> set[tuple[int, int]]:
    _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    return {(i, int(j)) for i, j in enumerate(x) if j >= 0}


def brute_force_best_cost(cost: np.ndarray, thresh: float) -> float:
    """Optimal total cost with unmatched rows/columns costing thresh/2 each (lapjv's extension)."""
    rows, cols = cost.shape
    best = (rows + cols) * thresh / 2
    for k in range(1, min(rows, cols) + 1):
        for chosen_rows in itertools.combinations(range(rows), k):
            for chosen_cols in itertools.permutations(range(cols), k):
                pairs = cost[list(chosen_rows), list(chosen_cols)]
                if (pairs <= thresh).all():
                    best = min(best, pairs.sum() + (rows + cols - 2 * k) * thresh / 2)
    return best


@pytest.mark.parametrize("seed", range(30))
def test_assignment_equals_official_lapjv(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(1, 40, 2)
    # Sparse IoU-like costs: most pairs infeasible, some rows/columns competing.
    cost = np.where(rng.random((rows, cols)) < 0.08, rng.uniform(0, 1, (rows, cols)), 1.0)
    matched_rows, matched_cols, free_rows, free_cols = linear_assignment(cost, 0.8)
    assert set(zip(matched_rows.tolist(), matched_cols.tolist())) == official_assignment(cost, 0.8)
    assert np.all(np.diff(matched_rows) > 0)
    assert sorted([*matched_rows, *free_rows]) == list(range(rows))
    assert sorted([*matched_cols, *free_cols]) == list(range(cols))


@pytest.mark.parametrize("seed", range(15))
def test_assignment_is_optimal_by_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    rows, cols = rng.integers(1, 5, 2)
    cost = rng.uniform(0, 1.2, (rows, cols))
    thresh = 0.7
    matched_rows, matched_cols, free_rows, free_cols = linear_assignment(cost, thresh)
    assert (cost[matched_rows, matched_cols] <= thresh).all()
    total = cost[matched_rows, matched_cols].sum() + (len(free_rows) + len(free_cols)) * thresh / 2
    assert total == pytest.approx(brute_force_best_cost(cost, thresh), abs=1e-12)


def test_assignment_empty_and_infeasible() -> None:
    m_rows, m_cols, f_rows, f_cols = linear_assignment(np.empty((3, 0)), 0.5)
    assert m_rows.size == 0 and m_cols.size == 0 and list(f_rows) == [0, 1, 2] and f_cols.size == 0
    m_rows, _, f_rows, f_cols = linear_assignment(np.full((2, 2), 0.9), 0.5)
    assert m_rows.size == 0 and list(f_rows) == [0, 1] and list(f_cols) == [0, 1]


@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("sizes", [(5, 7), (90, 70), (300, 1)])  # dense path and sort-and-sweep path
def test_overlapping_pairs_are_exactly_the_positive_iou_entries(inclusive: bool, sizes: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(sizes))
    a, b = random_boxes(rng, sizes[0], scale=400), random_boxes(rng, sizes[1], scale=400)
    b[: len(b) // 3, :2] = np.floor(b[: len(b) // 3, :2])  # boxes touching edge to edge
    b[: len(b) // 3, 2:] = b[: len(b) // 3, :2] + 10
    dense = iou_matrix(a, b, inclusive)
    rows, cols, iou = overlapping_pairs(a, b, inclusive)
    expected_rows, expected_cols = dense.nonzero()
    order = np.lexsort((cols, rows))
    np.testing.assert_array_equal(rows[order], expected_rows)
    np.testing.assert_array_equal(cols[order], expected_cols)
    np.testing.assert_array_equal(iou[order], dense[expected_rows, expected_cols])


def test_sparse_assignment_equals_dense_on_iou_costs() -> None:
    rng = np.random.default_rng(11)
    a, b = random_boxes(rng, 60, scale=300), random_boxes(rng, 50, scale=300)
    cost = fuse_score(1.0 - iou_matrix(a, b, True), rng.uniform(0.5, 1.0, 50))
    rows, cols, iou = overlapping_pairs(a, b, True)
    sparse = sparse_assignment(rows, cols, cost[rows, cols], cost.shape, 0.8,
                               lambda r, c: cost[np.ix_(r, c)])
    assert set(zip(sparse[0].tolist(), sparse[1].tolist())) == official_assignment(cost, 0.8)


@pytest.mark.parametrize("seed", range(20))
def test_small_python_assignment_equals_vectorised_path(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(200 + seed)
    rows, cols = rng.integers(1, 9, 2)
    cost = np.where(rng.random((rows, cols)) < 0.4, rng.uniform(0, 1, (rows, cols)), 1.0)
    cost[rng.random((rows, cols)) < 0.1] = 0.8  # exactly at the limit: lapjv decides
    small = linear_assignment(cost, 0.8)
    monkeypatch.setattr(matching, "SMALL_ASSIGNMENT", 0)
    vectorised = linear_assignment(cost, 0.8)
    for got, expected in zip(small, vectorised):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("sizes", [(6, 4), (90, 70)])  # window test and sort-and-sweep
@pytest.mark.parametrize("min_iou", [0.3, 0.85])
def test_overlapping_pairs_with_min_iou_keep_every_pair_above_it(inclusive: bool, sizes: tuple[int, int],
                                                                 min_iou: float) -> None:
    rng = np.random.default_rng(sizes[0] + int(min_iou * 100))
    a = random_boxes(rng, sizes[0], scale=300)
    b = np.concatenate((a + rng.normal(0, 1.5, a.shape), random_boxes(rng, sizes[1], scale=300)))
    dense = iou_matrix(a, b, inclusive)
    rows, cols, iou = overlapping_pairs(a, b, inclusive, min_iou=min_iou)
    np.testing.assert_array_equal(iou, dense[rows, cols])
    assert (iou > 0).all() and len(set(zip(rows.tolist(), cols.tolist()))) == rows.size
    expected = set(zip(*(dense > min_iou).nonzero()))
    assert expected and expected <= set(zip(rows.tolist(), cols.tolist()))
    if min_iou > 0.5:
        assert rows.size < (dense > 0).sum()  # pairs that cannot reach min_iou were skipped
