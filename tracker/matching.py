"""Association costs and assignment: vectorised IoU, score fusion, thresholded LAP."""
from __future__ import annotations

import lap
import numpy as np

EMPTY_INDEX = np.empty(0, dtype=np.intp)


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """(A, B) IoU of x1, y1, x2, y2 boxes.

    ``inclusive=True`` counts pixels like ``cython_bbox.bbox_overlaps`` (and hence the
    official ByteTrack): a side is ``x2 - x1 + 1``. ``inclusive=False`` is the
    continuous-geometry IoU (side ``x2 - x1``). Boxes with no overlap get 0.
    """
    if boxes_a.shape[0] == 0 or boxes_b.shape[0] == 0:
        return np.zeros((boxes_a.shape[0], boxes_b.shape[0]))
    one = 1.0 if inclusive else 0.0
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    overlap = np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2])
    if inclusive:
        overlap += one
    np.maximum(overlap, 0.0, out=overlap)
    inter = overlap[..., 0] * overlap[..., 1]
    size_a = boxes_a[:, 2:] - boxes_a[:, :2] + one
    size_b = boxes_b[:, 2:] - boxes_b[:, :2] + one
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + size_b[:, 0] * size_b[:, 1] - inter
    # Where inter > 0 the union is >= inter > 0, so the floor only guards 0/0 for empty boxes.
    return inter / np.maximum(union, np.finfo(np.float64).tiny)


def iou_cost(boxes_a: np.ndarray, boxes_b: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """``1 - IoU``: the official ``matching.iou_distance``."""
    return 1.0 - iou_matrix(boxes_a, boxes_b, inclusive)


def fuse_score(cost: np.ndarray, det_scores: np.ndarray) -> np.ndarray:
    """Official ``fuse_score``: ``1 - (1 - cost) * score`` per detection column."""
    return 1.0 - (1.0 - cost) * det_scores


def mask_classes(cost: np.ndarray, track_classes: np.ndarray, det_classes: np.ndarray, forbidden: float) -> np.ndarray:
    """Set the cost of every track/detection pair of different classes to ``forbidden`` (in place)."""
    cost[track_classes[:, None] != det_classes[None, :]] = forbidden
    return cost


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost matching where no matched pair costs more than ``thresh``.

    Same optimum as the official ``lap.lapjv(cost, extend_cost=True, cost_limit=thresh)``,
    found faster: pairs above the limit are never matched, and a row and a column that
    are each other's only pair within the limit (cost strictly below it) are matched in
    every optimum, so the solver only sees the rows and columns that compete. Returns
    ``(matched_rows, matched_cols, unmatched_rows, unmatched_cols)`` as ascending index
    arrays (matched pairs in row order).
    """
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return EMPTY_INDEX, EMPTY_INDEX, np.arange(rows), np.arange(cols)
    feasible = cost <= thresh
    if not feasible.any():
        return EMPTY_INDEX, EMPTY_INDEX, np.arange(rows), np.arange(cols)
    row_options = feasible.sum(axis=1)
    col_options = feasible.sum(axis=0)
    row_to_col = np.full(rows, -1, dtype=np.intp)
    col_to_row = np.full(cols, -1, dtype=np.intp)
    single_rows = (row_options == 1).nonzero()[0]
    single_cols = feasible[single_rows].argmax(axis=1)
    sole = (col_options[single_cols] == 1) & (cost[single_rows, single_cols] < thresh)
    row_to_col[single_rows[sole]] = single_cols[sole]
    col_to_row[single_cols[sole]] = single_rows[sole]
    compete_rows = ((row_options > 0) & (row_to_col < 0)).nonzero()[0]
    if compete_rows.size:
        compete_cols = ((col_options > 0) & (col_to_row < 0)).nonzero()[0]
        _, sub_rows, sub_cols = lap.lapjv(cost[np.ix_(compete_rows, compete_cols)], extend_cost=True,
                                          cost_limit=thresh)
        matched_sub = (sub_rows >= 0).nonzero()[0]
        row_to_col[compete_rows[matched_sub]] = compete_cols[sub_rows[matched_sub]]
        col_to_row[compete_cols[sub_rows[matched_sub]]] = compete_rows[matched_sub]
    matched = (row_to_col >= 0).nonzero()[0]
    return matched, row_to_col[matched], (row_to_col < 0).nonzero()[0], (col_to_row < 0).nonzero()[0]
