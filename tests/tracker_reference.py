"""Reference helpers for the tracker tests (not needed by the tracker itself)."""
from __future__ import annotations

import numpy as np

from int8track.tracker.kalman import PP, PV, VV
from int8track.tracker.matching import sparse_assignment


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost matching of a dense cost matrix where no matched pair costs more than ``thresh``.

    Same optimum as the official ``lap.lapjv(cost, extend_cost=True, cost_limit=thresh)``;
    see ``sparse_assignment``. Returns ``(matched_rows, matched_cols, unmatched_rows,
    unmatched_cols)`` as ascending index arrays (matched pairs in row order).
    """
    rows, cols = (cost <= thresh).nonzero()
    return sparse_assignment(rows, cols, cost[rows, cols], cost.shape, thresh,
                             lambda sub_rows, sub_cols: cost[np.ix_(sub_rows, sub_cols)])


def block_to_full(cov: np.ndarray) -> np.ndarray:
    """Expand the tracker's (T, 4, 3) block covariances to the equivalent (T, 8, 8) matrices."""
    full = np.zeros((cov.shape[0], 8, 8))
    dims = np.arange(4)
    full[:, dims, dims] = cov[:, :, PP]
    full[:, dims, dims + 4] = cov[:, :, PV]
    full[:, dims + 4, dims] = cov[:, :, PV]
    full[:, dims + 4, dims + 4] = cov[:, :, VV]
    return full
