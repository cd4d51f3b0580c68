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
    ax1, ay1, ax2, ay2 = (boxes_a[:, i : i + 1] for i in range(4))
    bx1, by1, bx2, by2 = (boxes_b[:, i] for i in range(4))
    inter_w = np.minimum(ax2, bx2) - np.maximum(ax1, bx1) + one
    inter_h = np.minimum(ay2, by2) - np.maximum(ay1, by1) + one
    np.maximum(inter_w, 0.0, out=inter_w)
    np.maximum(inter_h, 0.0, out=inter_h)
    inter = inter_w * inter_h
    area_a = (ax2 - ax1 + one) * (ay2 - ay1 + one)
    area_b = (bx2 - bx1 + one) * (by2 - by1 + one)
    union = area_a + area_b - inter
    # inter > 0 implies union > 0; elsewhere the IoU is 0 (avoids 0/0 for degenerate boxes).
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


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

    Same solver call as the official code: ``lap.lapjv(cost, extend_cost=True,
    cost_limit=thresh)``. Returns ``(matched_rows, matched_cols, unmatched_rows,
    unmatched_cols)`` as ascending index arrays (matched pairs in row order).
    """
    rows, cols = cost.shape
    if rows == 0 or cols == 0 or cost.min() > thresh:
        # Nothing can be matched (pairs above the limit never are): skip the solver.
        return EMPTY_INDEX, EMPTY_INDEX, np.arange(rows), np.arange(cols)
    _, row_to_col, col_to_row = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    matched = (row_to_col >= 0).nonzero()[0]
    return matched, row_to_col[matched], (row_to_col < 0).nonzero()[0], (col_to_row < 0).nonzero()[0]
