"""Tracks lost across a gap in time (a live stream's outage) found again by the Kalman filter's own uncertainty.

After a gap of a few seconds, a walking person is a body width or more from where the constant-velocity model
predicts them, so IoU, ByteTrack's only cue, is zero and the person starts a new track. But the filter knows how
far off its prediction may be: every predicted step adds process noise, so the predicted measurement's
covariance ``S`` grows with the time elapsed, fastest for the velocity's share (``kalman.predict``). A detection
is admitted for a track when its Mahalanobis distance ``d^2 = sum((z - Hx)^2 / S)`` is inside the 95% chi-square
gate, as in DeepSORT's gating; among admitted pairs the assignment minimises the Gaussian negative
log-likelihood ``d^2 + log det S``, so a track whose prediction is broad (lost longer, or smaller: the noise
scales with the box height) does not take detections from one whose prediction is sharp.

Position and height are compared (``GATE_COORDINATES``): the aspect ratio's noise in this filter does not grow
with time and people's aspect changes with their stride, so it would gate out true matches.
"""
from __future__ import annotations

import lap
import numpy as np

from int8track.tracker import kalman
from int8track.tracker.matching import EMPTY_INDEX

#: (cx, cy, h) of the (cx, cy, a, h) measurement
GATE_COORDINATES = np.array([0, 1, 3])
#: 95% quantile of the chi-square distribution with 3 degrees of freedom (one per gated coordinate)
CHI2_95 = 7.8147
_OUTSIDE = 1e6  # cost of a pair outside the gate: never chosen (the solver's cost limit is below it)


def gap_matches(mean: np.ndarray, cov: np.ndarray, det_xyah: np.ndarray,
                pair_cost: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (track positions, detection positions) of the tracks' Kalman states ``mean`` (T, 8) / ``cov``
    (T, 4, 3) and the (N, 4) xyah detections: the most detections matched inside the gate, then the least
    negative log-likelihood. ``pair_cost`` (T, N), if given, is added to each pair's cost, and a pair where it is
    +inf is excluded (e.g. appearance: ``tracker.reid``)."""
    if mean.shape[0] == 0 or det_xyah.shape[0] == 0:
        return EMPTY_INDEX, EMPTY_INDEX
    variance = kalman.innovation_variance(mean, cov)[:, GATE_COORDINATES]  # (T, 3)
    offset = det_xyah[None, :, GATE_COORDINATES] - mean[:, None, GATE_COORDINATES]  # (T, N, 3)
    distance = np.sum(offset * offset / variance[:, None, :], axis=2)
    cost = distance + np.sum(np.log(variance), axis=1)[:, None]
    inside = distance <= CHI2_95
    if pair_cost is not None:
        extra = np.asarray(pair_cost, dtype=np.float64)
        if extra.shape != distance.shape:
            raise ValueError(f"pair_cost must be ({mean.shape[0]}, {det_xyah.shape[0]}), got {extra.shape}")
        allowed = np.isfinite(extra)
        inside &= allowed
        cost = cost + np.where(allowed, extra, 0.0)
    cost = np.where(inside, cost - cost.min(), _OUTSIDE)  # shifted: the solver wants costs >= 0
    _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=_OUTSIDE / 2)
    rows = (row_to_col >= 0).nonzero()[0]
    return rows, row_to_col[rows]
