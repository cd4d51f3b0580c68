"""Checking and cleaning the detections handed to ``ByteTracker.update``.

Policy (documented in ``ByteTracker``):
- structural problems raise ``ValueError`` naming the problem: not numeric,
  wrong number of dimensions, not 5 or 6 columns;
- an empty array of shape (0,), (0, 5) or (0, 6) means "no detections";
- rows with a non-finite value, or a box whose width or height is not above
  ``MIN_BOX_SIDE`` (a degenerate box: its aspect ratio would overflow the
  Kalman filter's state), are dropped (they cannot be tracked); their row numbers are skipped, so
  ``det_index`` in the output always refers to the caller's original rows;
- scores are clipped into [0, 1].
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

NO_CLASS = -1.0
#: Boxes this narrow or short (in the caller's units, pixels or normalised) are degenerate and dropped.
MIN_BOX_SIDE = 1e-6


class CleanDetections(NamedTuple):
    """Valid detections, with the row each came from in the caller's array."""

    boxes: np.ndarray      # (N, 4) float64 x1, y1, x2, y2
    scores: np.ndarray     # (N,) float64 in [0, 1]
    classes: np.ndarray    # (N,) float64, NO_CLASS when the input had no class column
    rows: np.ndarray       # (N,) intp: row index in the input
    match_info: np.ndarray  # (N, 3) float64 score, class, row: what a track keeps of its match
    dropped: int           # rows removed as invalid
    has_class: bool        # the input had a class column


def _as_float_array(detections: object) -> np.ndarray:
    if type(detections) is np.ndarray and detections.dtype == np.float64:
        return detections
    array = np.asarray(detections)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"detections must be a numeric array, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def clean_detections(detections: object) -> CleanDetections:
    """Validate ``detections`` ((N, 5) or (N, 6): x1, y1, x2, y2, score[, class])."""
    array = _as_float_array(detections)
    if array.size == 0 and (array.ndim == 1 or (array.ndim == 2 and array.shape[1] in (0, 5, 6))):
        array = np.empty((0, 5))
    if array.ndim != 2:
        raise ValueError(f"detections must be a 2-D (N, 5) or (N, 6) array, got shape {array.shape}")
    if array.shape[1] not in (5, 6):
        raise ValueError(
            f"detections must have 5 columns (x1, y1, x2, y2, score) or 6 (..., class), got {array.shape[1]}"
        )
    positive = array[:, 2:4] > array[:, :2] + MIN_BOX_SIDE  # width and height above it (False for NaN)
    finite = np.isfinite(array)
    # count_nonzero is a plain C call, several times cheaper than all() on a few dozen values
    if np.count_nonzero(positive) == positive.size and np.count_nonzero(finite) == finite.size:
        rows, kept = np.arange(array.shape[0]), array
    else:
        rows = (positive.all(axis=1) & finite.all(axis=1)).nonzero()[0]
        kept = array[rows]
    info = np.empty((3, rows.shape[0]))  # score, class, row; stored coordinate-major (contiguous columns)
    np.minimum(np.maximum(kept[:, 4], 0.0), 1.0, out=info[0])
    info[1] = kept[:, 5] if array.shape[1] == 6 else NO_CLASS
    info[2] = rows
    scores, classes, match_info = info[0], info[1], info.T
    return CleanDetections(
        boxes=kept[:, :4],
        scores=scores,
        classes=classes,
        rows=rows,
        match_info=match_info,
        dropped=int(array.shape[0] - rows.shape[0]),
        has_class=array.shape[1] == 6,
    )


def check_frame_step(frame_gap: int | None, timestamp: float | None, last_timestamp: float | None,
                     frame_rate: float) -> int:
    """Number of frame periods since the previous update (>= 1).

    ``frame_gap`` is given directly; ``timestamp`` (seconds) is converted with
    ``round((timestamp - last_timestamp) * frame_rate)``, at least 1. Only one may be given.
    """
    if frame_gap is not None and timestamp is not None:
        raise ValueError("give either frame_gap or timestamp, not both")
    if timestamp is not None:
        if not np.isfinite(timestamp):
            raise ValueError(f"timestamp must be finite, got {timestamp}")
        if last_timestamp is None:
            return 1
        if timestamp <= last_timestamp:
            raise ValueError(f"timestamp must increase: {timestamp} after {last_timestamp}")
        return max(1, int(round((timestamp - last_timestamp) * frame_rate)))
    if frame_gap is None:
        return 1
    if isinstance(frame_gap, bool) or not isinstance(frame_gap, (int, np.integer)) or frame_gap < 1:
        raise ValueError(f"frame_gap must be an integer >= 1, got {frame_gap!r}")
    return int(frame_gap)
