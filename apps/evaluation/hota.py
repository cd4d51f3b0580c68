"""HOTA (Higher Order Tracking Accuracy, Luiten et al., IJCV 2021) with its detection and association parts.

Input is what the MOTChallenge protocol leaves per frame (``apps.evaluation.scored_frames``): the scored gt
ids, the tracker ids and their IoU matrix. For each localisation threshold alpha in 0.05..0.95:

* per frame, gt and tracker boxes are paired by Hungarian assignment maximising IoU weighted by how often the
  pair's ids align over the whole sequence (the global alignment score); pairs with IoU >= alpha count as TP;
* DetA = TP / (TP + FN + FP);
* AssA = mean over TPs of |TPA| / (|TPA| + |FNA| + |FPA|) for the TP's (gt id, tracker id) pair;
* HOTA = sqrt(DetA * AssA).

Each score is the mean over the 19 alphas. Sequences combine by summing TP/FN/FP and weighting AssA and LocA
by TP, as TrackEval does; ``tests/apps/evaluation/test_evaluation.py`` checks the result against TrackEval on
real sequences.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(float).eps

#: One frame: gt ids (G,), tracker ids (T,), IoU (G, T).
Frame = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class HotaCounts:
    """Per-alpha counts and association scores of one sequence (or several combined)."""

    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    assa: np.ndarray  # per alpha
    loca: np.ndarray  # mean IoU of the TPs, per alpha

    @property
    def deta_alpha(self) -> np.ndarray:
        return self.tp / np.maximum(1.0, self.tp + self.fn + self.fp)

    @property
    def hota(self) -> float:
        return float(np.mean(np.sqrt(self.deta_alpha * self.assa)))

    @property
    def deta(self) -> float:
        return float(np.mean(self.deta_alpha))

    @property
    def ass_a(self) -> float:
        return float(np.mean(self.assa))

    @property
    def loc_a(self) -> float:
        return float(np.mean(self.loca))

    @staticmethod
    def combine(parts: Sequence[HotaCounts]) -> HotaCounts:
        """Counts summed; AssA and LocA averaged weighted by each part's TP (TrackEval's combine_sequences)."""
        tp = np.sum([p.tp for p in parts], axis=0)
        weight = np.maximum(1e-10, tp)
        return HotaCounts(
            tp=tp, fn=np.sum([p.fn for p in parts], axis=0), fp=np.sum([p.fp for p in parts], axis=0),
            assa=np.sum([p.assa * p.tp for p in parts], axis=0) / weight,
            loca=np.sum([p.loca * p.tp for p in parts], axis=0) / weight,
        )


def _dense_ids(frames: list[Frame]) -> tuple[list[Frame], int, int]:
    """Ids renumbered 0..n-1 (gt and tracker separately), so counts can live in small matrices."""
    gt_all = np.unique(np.concatenate([f[0] for f in frames] or [np.empty(0)])).astype(np.int64)
    tr_all = np.unique(np.concatenate([f[1] for f in frames] or [np.empty(0)])).astype(np.int64)
    dense = [(np.searchsorted(gt_all, g), np.searchsorted(tr_all, t), iou) for g, t, iou in frames]
    return dense, len(gt_all), len(tr_all)


def _global_alignment(frames: list[Frame], num_gt: int, num_tr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Alignment score of every (gt id, tracker id) pair, and how many boxes each gt and tracker id has."""
    potential = np.zeros((num_gt, num_tr))
    gt_count = np.zeros((num_gt, 1))
    tr_count = np.zeros((1, num_tr))
    for g, t, iou in frames:
        denominator = iou.sum(0)[np.newaxis, :] + iou.sum(1)[:, np.newaxis] - iou
        soft = np.zeros_like(iou)
        positive = denominator > _EPS
        soft[positive] = iou[positive] / denominator[positive]
        potential[g[:, np.newaxis], t[np.newaxis, :]] += soft
        gt_count[g] += 1
        tr_count[0, t] += 1
    return potential / (gt_count + tr_count - potential), gt_count, tr_count


def hota_counts(frames: Iterable[Frame]) -> HotaCounts:
    """HOTA counts of one sequence from its per-frame (gt ids, tracker ids, IoU)."""
    frames, num_gt, num_tr = _dense_ids(list(frames))
    n = len(ALPHAS)
    tp, fn, fp, loc = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    if num_gt == 0 or num_tr == 0:  # nothing can match: every box is a miss or a false positive
        fn[:] = sum(len(g) for g, _, _ in frames)
        fp[:] = sum(len(t) for _, t, _ in frames)
        return HotaCounts(tp, fn, fp, np.zeros(n), np.ones(n))
    alignment, gt_count, tr_count = _global_alignment(frames, num_gt, num_tr)
    matches = np.zeros((n, num_gt, num_tr))
    for g, t, iou in frames:
        if len(g) == 0 or len(t) == 0:
            fn += len(g)
            fp += len(t)
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, np.newaxis], t[np.newaxis, :]] * iou))
        for a, alpha in enumerate(ALPHAS):
            ok = iou[rows, cols] >= alpha - _EPS
            hit_rows, hit_cols = rows[ok], cols[ok]
            tp[a] += len(hit_rows)
            fn[a] += len(g) - len(hit_rows)
            fp[a] += len(t) - len(hit_rows)
            loc[a] += iou[hit_rows, hit_cols].sum()
            matches[a, g[hit_rows], t[hit_cols]] += 1
    union = np.maximum(1.0, gt_count[np.newaxis] + tr_count[np.newaxis] - matches)
    assa = np.sum(matches * (matches / union), axis=(1, 2)) / np.maximum(1.0, tp)
    loca = np.maximum(1e-10, loc) / np.maximum(1e-10, tp)
    return HotaCounts(tp, fn, fp, assa, loca)
