"""Association costs and assignment: vectorised IoU, score fusion, thresholded LAP."""
from __future__ import annotations

from typing import Callable

import lap
import numpy as np

EMPTY_INDEX = np.empty(0, dtype=np.intp)
DENSE_PAIRS_LIMIT = 2048  # below this many box pairs a dense IoU matrix beats the sweep
# Below this size (candidate pairs + rows + columns) an assignment runs in plain Python:
# a few dozen list operations cost less than the ~30 numpy calls of the vectorised path.
SMALL_ASSIGNMENT = 96


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """(A, B) IoU of x1, y1, x2, y2 boxes.

    ``inclusive=True`` counts pixels like ``cython_bbox.bbox_overlaps`` (and hence the
    official ByteTrack): a side is ``x2 - x1 + 1``. ``inclusive=False`` is the
    continuous-geometry IoU (side ``x2 - x1``). Boxes with no overlap get 0.
    """
    if boxes_a.shape[0] == 0 or boxes_b.shape[0] == 0:
        return np.zeros((boxes_a.shape[0], boxes_b.shape[0]))
    one = 1.0 if inclusive else 0.0
    # (A, B, 2) broadcasting: widths and heights of all pairs in one call per step.
    boxes_a, boxes_b = boxes_a[:, None, :], boxes_b[None, :, :]
    sides = np.minimum(boxes_a[..., 2:], boxes_b[..., 2:]) - np.maximum(boxes_a[..., :2], boxes_b[..., :2])
    if inclusive:
        sides += one
    np.maximum(sides, 0.0, out=sides)
    inter = sides[..., 0] * sides[..., 1]
    sides_a = boxes_a[..., 2:] - boxes_a[..., :2] + one
    sides_b = boxes_b[..., 2:] - boxes_b[..., :2] + one
    union = sides_a[..., 0] * sides_a[..., 1] + sides_b[..., 0] * sides_b[..., 1] - inter
    # Where inter > 0 the union is >= inter > 0, so the floor only guards 0/0 for empty boxes.
    return inter / np.maximum(union, np.finfo(np.float64).tiny)


def overlapping_pairs(boxes_a: np.ndarray, boxes_b: np.ndarray, inclusive: bool = False,
                      min_iou: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs with IoU > 0 as ``(rows, cols, iou)``, rows ascending.

    Sort-and-sweep on x: only boxes of ``b`` whose left edge lies within reach of a box of
    ``a`` are compared, so crowds cost about O(A + B + pairs) instead of O(A * B). The IoU
    values are bit-identical to ``iou_matrix`` (same formula, element by element).

    ``min_iou > 0``: the caller only needs pairs with IoU > ``min_iou``; pairs that cannot
    reach it are skipped (others with IoU in (0, min_iou] may still be returned). IoU > t
    needs the left edges within (1 - t) * width of each other: the union is at least either
    box's area, so IoU <= overlap width / width <= 1 - |x1_a - x1_b| / width; likewise the
    top edges within (1 - t) * height.
    """
    if boxes_a.shape[0] == 0 or boxes_b.shape[0] == 0:
        return EMPTY_INDEX, EMPTY_INDEX, np.empty(0)
    one = 1.0 if inclusive else 0.0
    small = boxes_a.shape[0] * boxes_b.shape[0] <= DENSE_PAIRS_LIMIT
    if min_iou > 0:
        rows, cols = _near_pairs(boxes_a, boxes_b, one, min_iou, small)
    elif small:  # the dense matrix is cheaper
        iou = iou_matrix(boxes_a, boxes_b, inclusive)
        rows, cols = iou.nonzero()
        return rows, cols, iou[rows, cols]
    else:  # overlap in x needs a.x1 - width(b) - one < b.x1 < a.x2 + one
        widest = (boxes_b[:, 2] - boxes_b[:, 0]).max()
        rows, cols = _window_pairs(boxes_b[:, 0], boxes_a[:, 0] - widest - one, boxes_a[:, 2] + one)
    return _positive_iou(boxes_a, boxes_b, rows, cols, one)


def _near_pairs(boxes_a: np.ndarray, boxes_b: np.ndarray, one: float, min_iou: float,
                small: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose left and top edges are close enough for IoU > ``min_iou`` (see ``overlapping_pairs``)."""
    both = np.concatenate((boxes_a, boxes_b))
    widest, tallest = (both[:, 2:] - both[:, :2]).max(axis=0).tolist()
    scale = (1.0 - min_iou) * (1.0 + 1e-6)  # relative margin far above rounding error
    reach_x = scale * (widest + one)
    if small:  # a few numpy calls decide, and usually nothing is near
        rows, cols = (np.abs(boxes_a[:, 0, None] - boxes_b[:, 0]) <= reach_x).nonzero()
    else:
        rows, cols = _window_pairs(boxes_b[:, 0], boxes_a[:, 0] - reach_x, boxes_a[:, 0] + reach_x)
    if rows.size == 0:
        return rows, cols
    reach_y = scale * (tallest + one)
    near = (np.abs(boxes_a[rows, 1] - boxes_b[cols, 1]) <= reach_y).nonzero()[0]
    return rows[near], cols[near]


def _window_pairs(keys: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)`` with ``low[i] <= keys[j] <= high[i]``, i ascending (sort and binary search)."""
    order = np.argsort(keys, kind="stable")
    keys_sorted = keys[order]
    lo = np.searchsorted(keys_sorted, low, side="left")
    counts = np.maximum(np.searchsorted(keys_sorted, high, side="right") - lo, 0)
    rows = np.repeat(np.arange(low.size), counts)
    return rows, order[np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(rows.size)]


def _positive_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  one: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs ``(rows, cols)`` that overlap, with their IoU (``iou_matrix``'s formula)."""
    if rows.size == 0:
        return EMPTY_INDEX, EMPTY_INDEX, np.empty(0)
    ax1, ay1, ax2, ay2 = boxes_a.T
    bx1, by1, bx2, by2 = boxes_b.T
    # Heights first: sweep candidates already come close in x, so most that fail, fail in y.
    inter_h = np.minimum(ay2[rows], by2[cols]) - np.maximum(ay1[rows], by1[cols]) + one
    keep = (inter_h > 0).nonzero()[0]
    rows, cols, inter_h = rows[keep], cols[keep], inter_h[keep]
    inter_w = np.minimum(ax2[rows], bx2[cols]) - np.maximum(ax1[rows], bx1[cols]) + one
    keep = (inter_w > 0).nonzero()[0]
    rows, cols = rows[keep], cols[keep]
    inter = inter_w[keep] * inter_h[keep]
    area_a = (ax2 - ax1 + one) * (ay2 - ay1 + one)
    area_b = (bx2 - bx1 + one) * (by2 - by1 + one)
    union = area_a[rows] + area_b[cols] - inter
    return rows, cols, inter / np.maximum(union, np.finfo(np.float64).tiny)


def iou_pairs(boxes_a: np.ndarray, boxes_b: np.ndarray, inclusive: bool, include_disjoint: bool,
              min_iou: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, iou)`` of the overlapping pairs, or of all pairs if ``include_disjoint``.

    Callers whose cost limit admits IoU 0 (a limit >= 1) need the disjoint pairs too.
    ``min_iou``: see ``overlapping_pairs``.
    """
    if not include_disjoint:
        return overlapping_pairs(boxes_a, boxes_b, inclusive, min_iou)
    rows, cols = np.indices((boxes_a.shape[0], boxes_b.shape[0])).reshape(2, -1)
    return rows, cols, iou_matrix(boxes_a, boxes_b, inclusive).ravel()


def fuse_score(cost: np.ndarray, det_scores: np.ndarray) -> np.ndarray:
    """Official ``fuse_score``: ``1 - (1 - cost) * score`` per detection column."""
    return 1.0 - (1.0 - cost) * det_scores


def mask_classes(cost: np.ndarray, track_classes: np.ndarray, det_classes: np.ndarray, forbidden: float) -> np.ndarray:
    """Set the cost of every track/detection pair of different classes to ``forbidden`` (in place)."""
    cost[track_classes[:, None] != det_classes[None, :]] = forbidden
    return cost


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost matching of a dense cost matrix where no matched pair costs more than ``thresh``.

    Same optimum as the official ``lap.lapjv(cost, extend_cost=True, cost_limit=thresh)``;
    see ``sparse_assignment``. Returns ``(matched_rows, matched_cols, unmatched_rows,
    unmatched_cols)`` as ascending index arrays (matched pairs in row order).
    """
    rows, cols = (cost <= thresh).nonzero()
    return sparse_assignment(rows, cols, cost[rows, cols], cost.shape, thresh,
                             lambda sub_rows, sub_cols: cost[np.ix_(sub_rows, sub_cols)])


def sparse_assignment(rows: np.ndarray, cols: np.ndarray, costs: np.ndarray, shape: tuple[int, int], thresh: float,
                      dense_cost: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thresholded minimum-cost matching from candidate pairs ``(rows, cols, costs)``.

    Every pair of the (n_rows, n_cols) problem whose cost is <= ``thresh`` must be among the
    candidates. Pairs above the limit are never matched, and a row and a column that are
    each other's only candidate (cost strictly below the limit) are matched in every
    optimum. Only the remaining, competing rows and columns go to the official solver,
    ``lap.lapjv(extend_cost=True, cost_limit=thresh)``, on their exact dense sub-matrix
    ``dense_cost(sub_rows, sub_cols)``. The result is the official optimum.
    Returns ``(matched_rows, matched_cols, unmatched_rows, unmatched_cols)``, ascending.
    """
    n_rows, n_cols = shape
    if rows.size + n_rows + n_cols <= SMALL_ASSIGNMENT:
        return small_sparse_assignment(rows.tolist(), cols.tolist(), costs.tolist(), shape, thresh, dense_cost)
    feasible = costs <= thresh
    rows, cols, costs = rows[feasible], cols[feasible], costs[feasible]
    if rows.size == 0:
        return EMPTY_INDEX, EMPTY_INDEX, np.arange(n_rows), np.arange(n_cols)
    row_options = np.bincount(rows, minlength=n_rows)
    col_options = np.bincount(cols, minlength=n_cols)
    row_to_col = np.full(n_rows, -1, dtype=np.intp)
    col_to_row = np.full(n_cols, -1, dtype=np.intp)
    sole = (row_options[rows] == 1) & (col_options[cols] == 1) & (costs < thresh)
    row_to_col[rows[sole]] = cols[sole]
    col_to_row[cols[sole]] = rows[sole]
    compete_rows = ((row_options > 0) & (row_to_col < 0)).nonzero()[0]
    if compete_rows.size:
        compete_cols = ((col_options > 0) & (col_to_row < 0)).nonzero()[0]
        _, sub_row_to_col, _ = lap.lapjv(dense_cost(compete_rows, compete_cols), extend_cost=True, cost_limit=thresh)
        matched_sub = (sub_row_to_col >= 0).nonzero()[0]
        row_to_col[compete_rows[matched_sub]] = compete_cols[sub_row_to_col[matched_sub]]
        col_to_row[compete_cols[sub_row_to_col[matched_sub]]] = compete_rows[matched_sub]
    matched = (row_to_col >= 0).nonzero()[0]
    return matched, row_to_col[matched], (row_to_col < 0).nonzero()[0], (col_to_row < 0).nonzero()[0]


def small_sparse_assignment(rows: list[int], cols: list[int], costs: list[float], shape: tuple[int, int],
                            thresh: float, dense_cost: Callable[[np.ndarray, np.ndarray], np.ndarray],
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``sparse_assignment`` for small problems given as Python lists (same rules, same result)."""
    n_rows, n_cols = shape
    feasible = [(row, col, cost) for row, col, cost in zip(rows, cols, costs) if cost <= thresh]
    row_options, col_options = [0] * n_rows, [0] * n_cols
    for row, col, _ in feasible:
        row_options[row] += 1
        col_options[col] += 1
    row_to_col, col_to_row = [-1] * n_rows, [-1] * n_cols
    for row, col, cost in feasible:
        if row_options[row] == 1 and col_options[col] == 1 and cost < thresh:
            row_to_col[row], col_to_row[col] = col, row
    compete_rows = [row for row in range(n_rows) if row_options[row] and row_to_col[row] < 0]
    if compete_rows:
        compete_cols = [col for col in range(n_cols) if col_options[col] and col_to_row[col] < 0]
        sub_cost = dense_cost(np.array(compete_rows, dtype=np.intp), np.array(compete_cols, dtype=np.intp))
        _, sub_row_to_col, _ = lap.lapjv(sub_cost, extend_cost=True, cost_limit=thresh)
        for row, sub_col in zip(compete_rows, sub_row_to_col.tolist()):
            if sub_col >= 0:
                row_to_col[row] = compete_cols[sub_col]
                col_to_row[compete_cols[sub_col]] = row
    matched = [row for row in range(n_rows) if row_to_col[row] >= 0]
    return (np.array(matched, dtype=np.intp), np.array([row_to_col[row] for row in matched], dtype=np.intp),
            np.array([row for row in range(n_rows) if row_to_col[row] < 0], dtype=np.intp),
            np.array([col for col in range(n_cols) if col_to_row[col] < 0], dtype=np.intp))
