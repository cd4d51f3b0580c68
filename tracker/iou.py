"""Box IoU, the one implementation: the tracker's association, detector NMS and detection AP all use it.

Boxes are float64 x1, y1, x2, y2 rows. Numpy only (the tracker stays standalone; detectors import it).
"""
from __future__ import annotations

import numpy as np

TINY = np.finfo(np.float64).tiny


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """(A, B) IoU of x1, y1, x2, y2 boxes.

    ``inclusive=True`` counts pixels like ``cython_bbox.bbox_overlaps`` (and hence the
    official ByteTrack): a side is ``x2 - x1 + 1``. ``inclusive=False`` is the
    continuous-geometry IoU (side ``x2 - x1``). Boxes with no overlap get 0.
    """
    if boxes_a.shape[0] == 0 or boxes_b.shape[0] == 0:
        return np.zeros((boxes_a.shape[0], boxes_b.shape[0]))
    one = 1.0 if inclusive else 0.0
    # Both sets' coordinate rows side by side: the areas of all boxes take one call per step,
    # and (2, A, B) broadcasting gives the widths and heights of all pairs in one call per step.
    count_a = boxes_a.shape[0]
    both = np.concatenate((boxes_a.T, boxes_b.T), axis=1)
    a, b = both[:, :count_a, None], both[:, None, count_a:]
    sides = np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2])
    if inclusive:
        sides += one
    np.maximum(sides, 0.0, out=sides)
    inter = sides[0] * sides[1]
    areas = box_areas(both.T, one)
    union = areas[:count_a, None] + areas[count_a:] - inter
    # Where inter > 0 the union is >= inter > 0, so the floor only guards 0/0 for empty boxes.
    return inter / np.maximum(union, TINY)


def buffered(boxes: np.ndarray, ratio: float) -> np.ndarray:
    """(N, 4) boxes grown by ``ratio`` of their width and height on every side (Buffered IoU, Yang et al. WACV 2023).

    The same ratio on both sets keeps IoU in [0, 1] and scale-invariant, but makes boxes that moved by a fraction
    of their size still overlap: what a small person walking at 7 fps needs. ``ratio == 0`` returns ``boxes``.
    """
    if ratio == 0:
        return boxes
    sides = boxes[:, 2:] - boxes[:, :2]
    margin = ratio * sides
    return np.concatenate((boxes[:, :2] - margin, boxes[:, 2:] + margin), axis=1)


def box_areas(boxes: np.ndarray, one: float = 0.0) -> np.ndarray:
    """``(x2 - x1 + one) * (y2 - y1 + one)`` of (N, 4) boxes."""
    sides = boxes.T[2:] - boxes.T[:2]
    sides += one
    return sides[0] * sides[1]


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) continuous-geometry IoU of one box against (N, 4) boxes; bit for bit ``iou_matrix(box[None], boxes)[0]``.

    Same formula, shaped for greedy NMS, which calls it once per kept box: scalar-against-column arithmetic
    is cheaper there than ``iou_matrix``'s (2, 1, N) broadcasting, more so the more candidates there are
    (benchmarks/README.md, "Measurements behind design choices").
    """
    inter_w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    inter_h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    np.maximum(inter_w, 0.0, out=inter_w)
    np.maximum(inter_h, 0.0, out=inter_h)
    inter = inter_w * inter_h
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(area + box_areas(boxes) - inter, TINY)
