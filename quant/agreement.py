"""Detection agreement between two box sets (e.g. int8 vs fp32 detections of the same frame)."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from int8track.detectors.evaluation import iou_matrix


def match_count(reference: np.ndarray, candidate: np.ndarray, iou_thresh: float = 0.5) -> int:
    """Greedy one-to-one matches (highest IoU first) between boxes of the same class with IoU >= ``iou_thresh``.

    Boxes are (N,6) x1,y1,x2,y2,score,class (a missing class column means one class).
    """
    ref, cand = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if len(ref) == 0 or len(cand) == 0:
        return 0
    iou = iou_matrix(ref[:, :4], cand[:, :4])
    if ref.shape[1] > 5 and cand.shape[1] > 5:
        iou = np.where(ref[:, None, 5] == cand[None, :, 5], iou, 0.0)
    matches = 0
    order = np.argsort(-iou, axis=None, kind="stable")
    used_r, used_c = set(), set()
    for flat in order:
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < iou_thresh:
            break
        if i in used_r or j in used_c:
            continue
        used_r.add(i)
        used_c.add(j)
        matches += 1
    return matches


def detection_f1(references: Iterable[np.ndarray], candidates: Iterable[np.ndarray], iou_thresh: float = 0.5) -> float:
    """F1 of ``candidates`` against ``references`` over all frames: ``2 * matches / (n_ref + n_cand)``.

    1.0 when both sets are empty on every frame (perfect agreement on "nothing there").
    """
    matches = total = 0
    for ref, cand in zip(references, candidates, strict=True):
        matches += match_count(ref, cand, iou_thresh)
        total += len(ref) + len(cand)
    return 1.0 if total == 0 else 2.0 * matches / total
