"""Association costs and assignment: sparse IoU pairs, score fusion, thresholded LAP (IoU itself: ``tracker.iou``)."""
from __future__ import annotations

from collections.abc import Callable
from typing import cast

import lap
import numpy as np

from int8track.tracker.iou import TINY, box_areas, iou_matrix

EMPTY_INDEX = np.empty(0, dtype=np.intp)
DENSE_PAIRS_LIMIT = 2048  # below this many box pairs a dense IoU matrix beats the sweep
# Below this size (candidate pairs + rows + columns) an assignment runs in plain Python:
# a few dozen list operations cost less than the ~30 numpy calls of the vectorised path.
SMALL_ASSIGNMENT = 96
# Two candidate costs closer than this count as tied: the LAP solver decides between them.
TIE_MARGIN = 1e-9
# Up to this many competing pairs, stars are sorted out in Python before calling the LAP solver.
SMALL_COMPETITION = 12


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
    both = np.concatenate((boxes_a.T, boxes_b.T), axis=1)
    widest, tallest = (both[2:] - both[:2]).max(axis=1).tolist()
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
    # Heights first: sweep candidates already come close in x, so most that fail, fail in y.
    inter_h = _overlap(boxes_a.T[1::2], boxes_b.T[1::2], rows, cols, one)
    keep = (inter_h > 0).nonzero()[0]
    rows, cols, inter_h = rows[keep], cols[keep], inter_h[keep]
    inter_w = _overlap(boxes_a.T[::2], boxes_b.T[::2], rows, cols, one)
    keep = (inter_w > 0).nonzero()[0]
    rows, cols = rows[keep], cols[keep]
    inter = inter_w[keep] * inter_h[keep]
    union = box_areas(boxes_a, one)[rows] + box_areas(boxes_b, one)[cols] - inter
    return rows, cols, inter / np.maximum(union, TINY)


def _overlap(edges_a: np.ndarray, edges_b: np.ndarray, rows: np.ndarray, cols: np.ndarray, one: float) -> np.ndarray:
    """``min(hi_a, hi_b) - max(lo_a, lo_b) + one`` of pairs ``(rows, cols)``; edges: (2, N) low and high rows."""
    a, b = edges_a.take(rows, axis=1), edges_b.take(cols, axis=1)
    return np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]) + one


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


def sparse_assignment(rows: np.ndarray, cols: np.ndarray, costs: np.ndarray, shape: tuple[int, int], thresh: float,
                      dense_cost: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thresholded minimum-cost matching from candidate pairs ``(rows, cols, costs)``.

    Every pair of the (n_rows, n_cols) problem whose cost is <= ``thresh`` must be among the
    candidates. Pairs above the limit are never matched, and a row and a column that are
    each other's only candidate (cost strictly below the limit) are matched in every
    optimum. Of the remaining, competing pairs, a few are sorted out by ``star_matches``;
    the rest go to the official solver, ``lap.lapjv(extend_cost=True, cost_limit=thresh)``,
    on their exact dense sub-matrix ``dense_cost(sub_rows, sub_cols)``. The result is the
    official optimum. Returns ``(matched_rows, matched_cols, unmatched_rows,
    unmatched_cols)``, ascending.
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
    compete = (~sole).nonzero()[0]
    if 0 < compete.size <= SMALL_COMPETITION:
        compete_rows, compete_cols = rows[compete].tolist(), cols[compete].tolist()
        stars, hard = star_matches(compete_rows, compete_cols, costs[compete].tolist(), thresh)
        for row, col in stars:
            row_to_col[row], col_to_row[col] = col, row
        hard_rows, hard_cols = _lines_of(hard, compete_rows, compete_cols)
    else:
        hard_rows = ((row_options > 0) & (row_to_col < 0)).nonzero()[0]
        hard_cols = ((col_options > 0) & (col_to_row < 0)).nonzero()[0]
    if hard_rows.size:
        solved_rows, solved_cols = lapjv_matches(hard_rows, hard_cols, thresh, dense_cost)
        row_to_col[solved_rows] = solved_cols
        col_to_row[solved_cols] = solved_rows
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
    compete = []
    for pair in feasible:
        row, col, cost = pair
        if row_options[row] == 1 and col_options[col] == 1 and cost < thresh:
            row_to_col[row], col_to_row[col] = col, row
        else:
            compete.append(pair)
    if compete:
        compete_rows, compete_cols, compete_costs = (list(part) for part in zip(*compete))
        stars, hard = star_matches(compete_rows, compete_cols, compete_costs, thresh)
        if hard:
            solved = lapjv_matches(*_lines_of(hard, compete_rows, compete_cols), thresh, dense_cost)
            stars.extend(zip(*(part.tolist() for part in solved)))
        for row, col in stars:
            row_to_col[row], col_to_row[col] = col, row
    matched = [row for row in range(n_rows) if row_to_col[row] >= 0]
    return (np.array(matched, dtype=np.intp), np.array([row_to_col[row] for row in matched], dtype=np.intp),
            np.array([row for row in range(n_rows) if row_to_col[row] < 0], dtype=np.intp),
            np.array([col for col in range(n_cols) if col_to_row[col] < 0], dtype=np.intp))


def _lines_of(pairs: list[int], rows: list[int], cols: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Ascending distinct rows and columns of the pairs with indices ``pairs``."""
    return (np.array(sorted({rows[k] for k in pairs}), dtype=np.intp),
            np.array(sorted({cols[k] for k in pairs}), dtype=np.intp))


def lapjv_matches(rows: np.ndarray, cols: np.ndarray, thresh: float,
                  dense_cost: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Matched (rows, cols) of the official solver on the dense sub-problem of ascending ``rows`` x ``cols``."""
    _, sub_row_to_col, _ = lap.lapjv(dense_cost(rows, cols), extend_cost=True, cost_limit=thresh)
    solved = (sub_row_to_col >= 0).nonzero()[0]
    return rows[solved], cols[sub_row_to_col[solved]]


def star_matches(rows: list[int], cols: list[int], costs: list[float], thresh: float,
                 ) -> tuple[list[tuple[int, int]], list[int]]:
    """Pairs (cost <= ``thresh``) that are in every optimum, found in stars, and the pairs left to the solver.

    A star is a row whose columns see no other row, or a column whose rows see no other
    column (one pair alone is a star). Its cheapest pair is in every optimum when it is below
    the limit and beats every other pair of the star by more than ``TIE_MARGIN`` (so the
    solver's rounding cannot matter); otherwise, like every pair of a larger component, its
    pairs are returned (as indices) for the solver. Returns ``(matches, hard pair indices)``.
    """
    row_count: dict[int, int] = {}
    col_count: dict[int, int] = {}
    for row, col in zip(rows, cols):
        row_count[row] = row_count.get(row, 0) + 1
        col_count[col] = col_count.get(col, 0) + 1
    groups: dict[tuple[int, int] | None, list[int]] = {}
    for k, (row, col) in enumerate(zip(rows, cols)):
        key = (0, row) if col_count[col] == 1 else (1, col) if row_count[row] == 1 else None
        groups.setdefault(key, []).append(k)
    hard = groups.pop(None, [])
    matches = []
    for (axis, index), pairs in cast("dict[tuple[int, int], list[int]]", groups).items():  # None popped above
        whole = len(pairs) == (col_count if axis else row_count)[index]
        best = _clear_winner(pairs, costs, thresh) if whole else None
        if best is None:
            hard.extend(pairs)
        else:
            matches.append((rows[best], cols[best]))
    return matches, hard


def _clear_winner(pairs: list[int], costs: list[float], thresh: float) -> int | None:
    """The pair of a star in every optimum: the cheapest, below the limit and not tied; else None."""
    best = min(pairs, key=costs.__getitem__)
    if not costs[best] < thresh:
        return None
    runner_up = min((costs[k] for k in pairs if k != best), default=thresh)
    return best if runner_up >= thresh or runner_up - costs[best] > TIE_MARGIN else None
