"""Greedy non-maximum suppression in numpy (no torchvision), class-aware via the coordinate-offset trick."""
from __future__ import annotations

import numpy as np

from int8track.tracker.iou import iou_one_to_many


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Indices of kept boxes, by decreasing score; a box is dropped when IoU > iou_thresh with a kept one.

    Same rule as torchvision.ops.nms. Each step removes all boxes overlapping the current best at once,
    so the loop runs once per kept box, not per candidate.
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes.astype(np.float64, copy=False)
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= iou_thresh]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Each class is shifted by ``class * (max coordinate + 1)`` so boxes of different classes cannot overlap,
    then one NMS runs over all of them.
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = boxes.astype(np.float64)
    offset = classes.astype(np.float64)[:, None] * (boxes.max() - boxes.min() + 1.0)
    return nms(boxes + offset, scores, iou_thresh)
