"""Detection accuracy: COCO-style average precision (101-point interpolation) and gt recall.

Follows pycocotools' bbox evaluation for one category and area range "all": per frame, detections
sorted by score (at most ``max_dets``) are greedily matched to the unmatched gt box of highest IoU
(>= threshold); over all frames, detections are merged by score, precision is made monotone and read
at recall 0, 0.01, ..., 1. No ignore regions/crowd boxes (PETS gt has none).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from int8track.tracker.iou import iou_matrix as _iou_matrix

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes ``a`` (N, >=4) and ``b`` (M, >=4), in float64 (``tracker.iou.iou_matrix``)."""
    return _iou_matrix(np.asarray(a, dtype=np.float64)[:, :4], np.asarray(b, dtype=np.float64)[:, :4])


def boxes_by_frame(frames: np.ndarray, xywh: np.ndarray, num_frames: int) -> list[np.ndarray]:
    """MOT-style rows (frame numbers 1..num_frames, x, y, w, h) -> per-frame (K, 4) xyxy arrays."""
    frames = np.asarray(frames, dtype=np.int64)
    xyxy = np.asarray(xywh, dtype=np.float64).copy()
    xyxy[:, 2:4] += xyxy[:, :2]
    return [xyxy[frames == f] for f in range(1, num_frames + 1)]


def _match_frame(dets: np.ndarray, gts: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(T, D) bool: detection d (sorted by score) is a true positive at threshold t (COCO greedy matching)."""
    tp = np.zeros((len(thresholds), len(dets)), dtype=bool)
    if len(dets) == 0 or len(gts) == 0:
        return tp
    ious = iou_matrix(dets, gts)
    for t, thresh in enumerate(thresholds):
        taken = np.zeros(len(gts), dtype=bool)
        for d in range(len(dets)):
            candidates = np.where(taken, -1.0, ious[d])
            best = int(candidates.argmax())
            if candidates[best] >= thresh:
                taken[best] = True
                tp[t, d] = True
    return tp


def average_precision(detections: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray],
                      iou_thresholds: np.ndarray = COCO_IOU_THRESHOLDS, max_dets: int = 100) -> np.ndarray:
    """AP per IoU threshold. ``detections[i]``: (D, >=5) x1,y1,x2,y2,score of frame i; ``ground_truth[i]``: (G, 4)."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} frames of detections but {len(ground_truth)} frames of gt")
    thresholds = np.atleast_1d(np.asarray(iou_thresholds, dtype=np.float64))
    scores, hits = [], []
    for dets, gts in zip(detections, ground_truth):
        dets = np.asarray(dets, dtype=np.float64)
        dets = dets.reshape(0, 5) if dets.size == 0 else dets
        order = np.argsort(-dets[:, 4], kind="mergesort")[:max_dets]
        scores.append(dets[order, 4])
        hits.append(_match_frame(dets[order], np.asarray(gts, dtype=np.float64).reshape(-1, 4), thresholds))
    num_gt = sum(len(np.asarray(g).reshape(-1, 4)) for g in ground_truth)
    if num_gt == 0:
        raise ValueError("no ground-truth boxes: AP undefined")
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-all_scores, kind="mergesort")
    tp = np.concatenate(hits, axis=1)[:, order] if hits else np.zeros((len(thresholds), 0), dtype=bool)
    ap = np.zeros(len(thresholds))
    for t in range(len(thresholds) if len(all_scores) else 0):
        tp_cum = np.cumsum(tp[t])
        fp_cum = np.cumsum(~tp[t])
        recall = tp_cum / num_gt
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone non-increasing envelope
        idx = np.searchsorted(recall, RECALL_POINTS, side="left")
        sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
        ap[t] = sampled.mean()
    return ap


def coco_summary(detections: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray],
                 max_dets: int = 100) -> dict[str, float]:
    """{"AP50", "AP75", "AP50:95"} over the COCO IoU thresholds 0.50:0.05:0.95."""
    ap = average_precision(detections, ground_truth, COCO_IOU_THRESHOLDS, max_dets)
    return {"AP50": float(ap[0]), "AP75": float(ap[5]), "AP50:95": float(ap.mean())}


def gt_recall(detections: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], iou: float = 0.5) -> float:
    """Fraction of gt boxes matched (one-to-one, greedy by score) by a detection at IoU >= ``iou``."""
    matched = sum(int(_match_frame(d[np.argsort(-d[:, 4], kind="mergesort")], g, np.array([iou])).sum())
                  for d, g in zip(detections, ground_truth))
    total = sum(len(g) for g in ground_truth)
    return matched / total if total else float("nan")
