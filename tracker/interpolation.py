"""Offline gap filling of tracker results: ``interpolate_results(rows, config) -> rows``.

Input and output are MOTChallenge result rows ``frame, id, x, y, w, h, score, ...`` (any number of columns
from 6 on; extra columns are carried along). A track that disappears for at most ``max_gap`` frames and
comes back gets boxes on the missing frames:

- ``method="linear"``: every column after ``id`` interpolated linearly between the two ends of the gap;
- ``method="gsi"``: linear filling, then each track's coordinates smoothed over time (Gaussian-smoothed
  interpolation, as in StrongSORT; see ``smooth_track``) with smoothing length ``tau`` frames.

Which gaps are filled (``bridgeable_gaps``): ``max_gap`` alone does not decide. A straight line is only
a good guess when the track moved in a straight line; on a moving camera, and for small boxes, it often
does not, and blind interpolation then adds boxes beside the person (false positives) instead of on them
(``bridge_error`` explains the estimate). Filled boxes that land on a box of another track are left out too
(``duplicates``). benchmarks/README.md has the measurements.

Boxes no detection placed (``track --detect-every``'s frames between detector calls) can be redrawn the same
way: ``interpolate_results(rows, config, propagated=mask)`` treats them as a gap where a line is trusted.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate1d

from int8track.tracker.iou import iou_matrix

METHODS = ("linear", "gsi")
FRAME, ID, X, Y, W, H = 0, 1, 2, 3, 4, 5
BOX = slice(X, H + 1)
POLY_DEGREE = 2  # GSI fits parabolas (see smooth_track)


@dataclass(frozen=True)
class InterpolationConfig:
    """Options of ``interpolate_results``; every field is validated (``ValueError`` naming it).

    - ``method``: ``"linear"`` or ``"gsi"`` (linear, then Gaussian smoothing of each track over time).
    - ``max_gap``: longest gap, in frames missing, that may be filled (>= 1).
    - ``tau``: GSI smoothing length in frames (> 0): the Gaussian kernel's standard deviation.
    - ``max_error``: a gap is filled only if the straight line's expected error, as a fraction of the box's
      width (horizontally) and height (vertically), is at most this (see ``bridge_error``); None fills every
      gap up to ``max_gap`` (blind interpolation). 0.15 keeps the bridged box's IoU with where the track
      should be above about 0.74 ((1 - e) / (1 + e) for a shift of e box sizes).
    - ``window``: frames on each side of a gap whose rows give the track's velocity and jitter there (>= 2).
    - ``max_overlap``: a filled box overlapping another track's box on the same frame by at least this IoU
      is left out (``duplicates``); None keeps them. 0.5 is the evaluation's matching threshold.
    """

    method: str = "linear"
    max_gap: int = 20
    tau: float = 5.0
    max_error: float | None = 0.15
    window: int = 5
    max_overlap: float | None = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"interpolation method must be one of {METHODS}, got {self.method!r}")
        _check_int("max_gap", self.max_gap, 1)
        _check_int("window", self.window, 2)
        _check_positive("tau", self.tau)
        if self.max_error is not None:
            _check_positive("max_error", self.max_error)
        if self.max_overlap is not None:
            _check_positive("max_overlap", self.max_overlap)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_rows(rows: object) -> np.ndarray:
    """``rows`` as a float64 (N, C) array, C >= 6, after checking it is a valid MOT results table."""
    try:
        table = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"MOT rows must be numeric: {error}") from None
    if table.size == 0:
        return table.reshape(0, max(table.shape[-1] if table.ndim == 2 else 10, 6))
    if table.ndim != 2 or table.shape[1] < 6:
        raise ValueError(f"MOT rows must be an (N, >=6) array frame, id, x, y, w, h, ...; got shape {table.shape}")
    if not np.isfinite(table[:, :6]).all():
        raise ValueError("MOT rows: frame, id and box columns must be finite")
    for column, name in ((FRAME, "frame"), (ID, "id")):
        if (table[:, column] != np.round(table[:, column])).any():
            raise ValueError(f"MOT rows: the {name} column must hold integers")
    if (table[:, FRAME] < 1).any():
        raise ValueError("MOT rows: frames start at 1")
    if (table[:, W:H + 1] < 0).any():
        raise ValueError("MOT rows: box width and height must be >= 0")
    if len(np.unique(table[:, :2], axis=0)) != len(table):
        raise ValueError("MOT rows: an id appears twice on the same frame")
    return table


def interpolate_results(rows: object, config: InterpolationConfig | None = None,
                        propagated: object = None) -> np.ndarray:
    """``rows`` with the gaps of at most ``config.max_gap`` frames filled; sorted by frame, then id.

    Rows of filled frames copy every column after the box from linear interpolation too (for a tracker's
    ``score, -1, -1, -1`` that is the interpolated score and the constant -1s). Tracks without gaps come back
    unchanged with ``linear``; ``gsi`` also smooths their boxes.

    ``propagated``: one bool per row, True where no detection placed the box (``track --detect-every``: the
    frames between detector calls, boxes carried there by optical flow or the Kalman prediction). Those rows
    are redrawn: set aside, the gaps they leave filled from the detections on both sides like any other gap,
    and put back where that gap is not filled (too long, not a straight line, or on another track's box).
    Offline only: a box between two detector calls then depends on the later one.
    """
    return interpolate_table(rows, config, propagated).rows


@dataclass(frozen=True)
class Interpolated:
    """``interpolate_table``'s result: the rows, how many were added in gaps and how many propagated rows were
    redrawn (the others were put back as they were)."""

    rows: np.ndarray
    added: int
    redrawn: int


def interpolate_table(rows: object, config: InterpolationConfig | None = None,
                      propagated: object = None) -> Interpolated:
    """``interpolate_results`` with its counts."""
    config = InterpolationConfig() if config is None else config
    if not isinstance(config, InterpolationConfig):
        raise ValueError(f"config must be an InterpolationConfig, got {type(config).__name__}")
    table = check_rows(rows)
    if propagated is None:
        filled = _fill(table, config)
        return Interpolated(filled, len(filled) - len(table), 0)
    mask = np.asarray(propagated)
    if mask.dtype != np.bool_ or mask.shape != (len(table),):
        raise ValueError(f"propagated must be one bool per row ({len(table)}), got {mask.dtype} {mask.shape}")
    filled = _fill(table[~mask], config)
    spare = table[mask]
    kept = spare[_is_new(spare, filled)] if len(filled) and len(spare) else spare
    result = np.concatenate((filled, kept))
    return Interpolated(result[np.lexsort((result[:, ID], result[:, FRAME]))], len(result) - len(table),
                        len(spare) - len(kept))


def _fill(table: np.ndarray, config: InterpolationConfig) -> np.ndarray:
    """``interpolate_results`` of a checked table."""
    if len(table) == 0:
        return table.copy()
    table = table[np.lexsort((table[:, FRAME], table[:, ID]))]
    starts = np.flatnonzero(np.diff(table[:, ID])) + 1
    result = np.concatenate([fill_gaps(track, bridgeable_gaps(track, config)) for track in np.split(table, starts)])
    if config.max_overlap is not None and len(result) > len(table):
        result = result[~duplicates(result, _is_new(result, table), config.max_overlap)]
    if config.method == "gsi":
        # Each run of consecutive frames of a track alone: a gap left open is one a line was not trusted across.
        breaks = (np.diff(result[:, FRAME]) != 1) | (np.diff(result[:, ID]) != 0)
        for run in np.split(np.arange(len(result)), np.flatnonzero(breaks) + 1):
            result[run, BOX] = smooth_track(result[run, FRAME], result[run, BOX], config.tau)
    return result[np.lexsort((result[:, ID], result[:, FRAME]))]


def _is_new(result: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Rows of ``result`` whose (frame, id) is not in ``original`` (both hold integer frames and ids)."""
    return ~rows_in(result, original[:, [FRAME, ID]])


def rows_in(rows: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Bool per MOT row: whether its (frame, id) is one of ``pairs`` ((N, 2) integer frame, id)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    frames, ids = rows[:, FRAME].astype(np.int64), rows[:, ID].astype(np.int64)
    span = int(max(frames.max(initial=0), pairs[:, 0].max(initial=0))) + 1
    return np.isin(ids * span + frames, pairs[:, 1] * span + pairs[:, 0])


def duplicates(rows: np.ndarray, is_new: np.ndarray, max_overlap: float) -> np.ndarray:
    """Filled rows (``is_new``) overlapping a tracker row of another id on their frame by IoU >= ``max_overlap``.

    Why: in our outputs a person is sometimes held by two tracks in turn (one is lost while the other has the
    detection, then the other way round), and each track's gap is then exactly where the other track is.
    Filling it puts a second box on a person already boxed; at the evaluation's IoU 0.5 only one of them can
    match, so the filled one would be a false positive.
    """
    flagged = np.zeros(len(rows), dtype=bool)
    real = rows[~is_new]
    real = real[np.argsort(real[:, FRAME], kind="stable")]
    new_rows = np.flatnonzero(is_new)
    for frame in np.unique(rows[new_rows, FRAME]):
        mine = new_rows[rows[new_rows, FRAME] == frame]
        low, high = np.searchsorted(real[:, FRAME], [frame, frame + 1])
        others = real[low:high]
        if len(others) == 0:
            continue
        iou = iou_matrix(_corners(rows[mine, BOX]), _corners(others[:, BOX]))
        iou[rows[mine, ID][:, None] == others[:, ID][None, :]] = 0.0  # a track never duplicates itself
        flagged[mine[iou.max(1) >= max_overlap]] = True
    return flagged


def _corners(boxes: np.ndarray) -> np.ndarray:
    """x, y, w, h -> x1, y1, x2, y2."""
    return np.concatenate((boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]), axis=1)


def bridgeable_gaps(track: np.ndarray, config: InterpolationConfig) -> np.ndarray:
    """Boolean per gap between consecutive rows of one track (sorted by frame): fill it or not.

    A gap qualifies when 1..``max_gap`` frames are missing and (unless ``max_error`` is None) the straight
    line across it is expected to stay within ``max_error`` box sizes of the track (``bridge_error``).
    """
    frames = track[:, FRAME]
    missing = np.diff(frames) - 1
    fill = (missing >= 1) & (missing <= config.max_gap)
    if config.max_error is None:
        return fill
    centres = track[:, X:Y + 1] + track[:, W:H + 1] / 2
    for gap in np.flatnonzero(fill):
        fill[gap] = bridge_error(frames, centres, track[:, W:H + 1], int(gap), config.window) <= config.max_error
    return fill


def bridge_error(frames: np.ndarray, centres: np.ndarray, sizes: np.ndarray, gap: int, window: int) -> float:
    """Expected error of the straight line between rows ``gap`` and ``gap + 1``, in box sizes.

    Why a gate: blind interpolation of our MOT17 output loses MOTA on the moving-camera sequences because
    their bridges miss the person (best IoU with any ground-truth box mostly 0.2-0.5, not 0), and mostly on
    small, far people: the image path of a person filmed by a turning or shaking camera bends, and a
    few pixels of bend or detector jitter is a large part of a small box. So two errors are estimated per
    axis, both from the track itself, and compared with the box's width (x) and height (y):

    - bend: the velocity at each end (least-squares line through the rows within ``window`` frames) against
      the chord's velocity; a path whose velocity changes evenly from v0 to v1 over T frames leaves the chord
      by at most ``|v0 - v1| T / 8 = |v0 - chord| T / 4``, and the larger end's value is used;
    - jitter: the standard deviation of the rows about those lines (where an end has >= 3 rows).

    Returns the larger axis's (bend + jitter) / box size, the box being the smaller of the two ends; inf when
    neither end has two rows in the window (nothing says the line fits).
    """
    before = (frames <= frames[gap]) & (frames > frames[gap] - window)
    after = (frames >= frames[gap + 1]) & (frames < frames[gap + 1] + window)
    span = frames[gap + 1] - frames[gap]
    chord = (centres[gap + 1] - centres[gap]) / span
    bend, jitter, known = np.zeros(2), np.zeros(2), False
    for rows in (before, after):
        if np.count_nonzero(rows) < 2:
            continue
        known = True
        velocity, spread = _line_fit(frames[rows], centres[rows])
        bend = np.maximum(bend, np.abs(velocity - chord) * span / 4)
        jitter = np.maximum(jitter, spread)
    if not known:
        return math.inf
    size = np.minimum(sizes[gap], sizes[gap + 1])
    if (size <= 0).any():  # a box rounded to zero size in a results file: nothing to measure the error against
        return math.inf
    return float(np.max((bend + jitter) / size))


def _line_fit(frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope (K,) of the least-squares line through ``points`` (N, K) over ``frames`` (N,), and the residual
    standard deviation per column (zeros with only two points, where the line fits exactly)."""
    t = frames - frames.mean()
    slope = t @ (points - points.mean(0)) / (t @ t)
    if len(frames) < 3:
        return slope, np.zeros(points.shape[1])
    residual = points - points.mean(0) - t[:, None] * slope
    return slope, np.sqrt(np.square(residual).sum(0) / (len(frames) - 2))


def fill_gaps(track: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """One track's rows (sorted by frame) plus linearly interpolated rows inside the gaps where ``fill``."""
    gaps = np.flatnonzero(fill)
    if gaps.size == 0:
        return track.copy()
    new = []
    for gap in gaps:
        before, after = track[gap], track[gap + 1]
        frames = np.arange(before[FRAME] + 1, after[FRAME])
        weight = ((frames - before[FRAME]) / (after[FRAME] - before[FRAME]))[:, None]
        rows = before + weight * (after - before)
        rows[:, FRAME], rows[:, ID] = frames, before[ID]
        new.append(rows)
    merged = np.concatenate((track, *new))
    return merged[np.argsort(merged[:, FRAME], kind="stable")]


def smooth_track(frames: np.ndarray, values: np.ndarray, tau: float) -> np.ndarray:
    """Gaussian-kernel smoothing of ``values`` (T, K) on consecutive ``frames`` (T,): local quadratic regression.

    Each output is the value at that frame of a parabola fitted by least squares to the samples within
    ``4 * tau`` frames, weighted ``exp(-(dt / tau)^2 / 2)``. Straight lines and parabolas are fixed points, so
    a track that turns or accelerates (a panning camera) is not pulled off its path and the ends do not
    shrink inwards, as they would with a weighted mean; the noise is still averaged over ~``2.5 * tau`` frames.
    ``interpolate_results`` calls it on each run of consecutive frames; gaps in ``frames`` are allowed (the
    samples are placed on a frame grid).
    """
    frames = np.asarray(frames, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if frames.size <= POLY_DEGREE + 1:
        return values.copy()
    grid = (frames - frames[0]).astype(np.int64)
    present = np.zeros(int(grid[-1]) + 1)
    present[grid] = 1.0
    dense = np.zeros((present.size, values.shape[1]))
    dense[grid] = values
    radius = max(1, int(math.ceil(4 * tau)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * np.square(offsets / tau))
    # Sums over neighbours j of w(j - i) (j - i)^k [* y_j], for every i at once (correlation, zero outside).
    moments = [correlate1d(present, kernel * offsets ** k, mode="constant")[grid] for k in range(2 * POLY_DEGREE + 1)]
    targets = [correlate1d(dense, kernel * offsets ** k, axis=0, mode="constant")[grid] for k in range(POLY_DEGREE + 1)]
    normal = np.stack([np.stack(moments[r:r + POLY_DEGREE + 1], -1) for r in range(POLY_DEGREE + 1)], -2)
    rhs = np.stack(targets, -2)  # (T, degree + 1, K)
    neighbours = correlate1d(present, np.ones(offsets.size), mode="constant")[grid]
    smoothed = values.copy()
    # A parabola needs three samples in reach; with fewer the value is kept as it is.
    fits = neighbours > POLY_DEGREE
    smoothed[fits] = np.linalg.solve(normal[fits], rhs[fits])[:, 0, :]
    return smoothed
