"""Batched constant-velocity Kalman filter for boxes in (cx, cy, a, h) space.

Same model as ByteTrack's (DeepSORT's) ``KalmanFilter``: state
``(cx, cy, a, h, vcx, vcy, va, vh)``, observation ``(cx, cy, a, h)``, process
and measurement noise proportional to the box height with the official weights
and constants. Each of the four coordinates evolves independently of the
others (F, H, Q and R never couple them), so the 8x8 covariance is exactly four
2x2 blocks. We store it as ``(T, 4, 3)`` = ``[P_pos_pos, P_pos_vel, P_vel_vel]``
per coordinate: predicting or updating all T tracks is a handful of
element-wise array operations, and the innovation covariance is diagonal, so
no matrix factorisation is needed.

The functions work on transposed views (coordinates first, tracks last), so
with column-major arrays, as ``TrackTable`` keeps them and ``initiate`` returns
them, every operation is one inner loop over the tracks; on row-major arrays
the results are the same, only slower (numpy would loop over rows of 2 to 4).
"""
from __future__ import annotations

import numpy as np

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160
# Fixed standard deviations of the aspect ratio (official constants).
ASPECT_INIT_STD = (1e-2, 1e-5)   # initiate: position, velocity
ASPECT_PROCESS_STD = (1e-2, 1e-5)  # predict: position, velocity
ASPECT_MEASUREMENT_STD = 1e-1    # project/update

PP, PV, VV = 0, 1, 2  # columns of the block covariance


def _std_rows(weight: float, aspect_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows (w, w, 0, w) and (0, 0, c, 0): std = h * first + second for (cx, cy, a, h)."""
    return np.array([weight, weight, 0.0, weight]), np.array([0.0, 0.0, aspect_value, 0.0])


INIT_POS = _std_rows(2 * STD_WEIGHT_POSITION, ASPECT_INIT_STD[0])
INIT_VEL = _std_rows(10 * STD_WEIGHT_VELOCITY, ASPECT_INIT_STD[1])
_PROCESS_POS = _std_rows(STD_WEIGHT_POSITION, ASPECT_PROCESS_STD[0])
_PROCESS_VEL = _std_rows(STD_WEIGHT_VELOCITY, ASPECT_PROCESS_STD[1])
MEASUREMENT = _std_rows(STD_WEIGHT_POSITION, ASPECT_MEASUREMENT_STD)


def _pair_rows(pos: tuple[np.ndarray, np.ndarray], vel: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Position and velocity std rows stacked as (2, 4, 1) arrays (the P_pp, P_vv blocks, per coordinate)."""
    return np.stack((pos[0], vel[0]))[..., None], np.stack((pos[1], vel[1]))[..., None]


INIT = _pair_rows(INIT_POS, INIT_VEL)
PROCESS = _pair_rows(_PROCESS_POS, _PROCESS_VEL)
_MEASUREMENT_COLUMNS = MEASUREMENT[0][:, None], MEASUREMENT[1][:, None]


def _variance(height: np.ndarray, rows: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Variances (squared std ``height * rows[0] + rows[1]``), coordinates first, tracks last."""
    return np.square(height * rows[0] + rows[1])


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start tracks from (T, 4) xyah measurements: zero velocity, height-scaled covariance."""
    count = measurements.shape[0]
    mean = np.zeros((8, count))
    mean[:4] = measurements.T
    cov = np.zeros((3, 4, count))
    cov[::2] = _variance(mean[3], INIT)
    return mean.T, cov.T


def predict(mean: np.ndarray, cov: np.ndarray, steps: int = 1,
            velocity_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Advance (T, 8) means and (T, 4, 3) covariances by ``steps`` unit time steps, in place.

    One step is exactly the official ``multi_predict``: x' = F x, P' = F P F^T + Q
    with Q computed from the height before the step. ``steps > 1`` applies that
    step repeatedly (the noise model is defined per frame). ``velocity_scale`` multiplies
    the standard deviations of the velocities' process noise (``velocity_noise_scale``). Returns the same arrays.
    """
    state, blocks = mean.T, cov.T  # (8, T) and (3, 4, T) views: contiguous rows for column-major input
    for _ in range(steps):
        q = _variance(state[3], PROCESS)
        if velocity_scale != 1.0:
            q[1] *= velocity_scale * velocity_scale
        state[:4] += state[4:]
        # Same summation order as F P F^T: (Ppp + Ppv) + (Ppv + Pvv). The first addition
        # updates (Ppp, Ppv) from the old (Ppv, Pvv) at once (numpy buffers the overlap).
        blocks[PP:VV] += blocks[PV:]
        blocks[PP] += blocks[PV]
        blocks[::2] += q
    return mean, cov


def velocity_noise_scale(frame_rate: float, exponent: float, reference_rate: float = 30.0) -> float:
    """``(reference_rate / frame_rate) ** exponent``: the velocity process noise's scale at ``frame_rate``.

    The official constants are per 30 fps frame and velocities are in pixels per frame. A person's velocity
    in pixels per second wanders like a random walk, its variance growing with the time elapsed, so per frame
    its standard deviation grows as the square root of the frame period; converting to pixels per frame
    multiplies it by the period again: exponent 1.5 (8.9x at 7 fps). ``TrackerConfig`` defaults to the milder
    1.0, which costs static scenes nothing (benchmarks/README.md). The position noise is not scaled:
    in this filter it stands for the box's own jitter (pose, detector), which does not grow with the period.
    """
    if not frame_rate > 0:
        raise ValueError(f"frame_rate must be > 0, got {frame_rate!r}")
    return float((reference_rate / frame_rate) ** exponent)


def update(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray,
           keep_size: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Correct (T, 8) means / (T, 4, 3) covariances with (T, 4) xyah measurements.

    S is diagonal (one variance per coordinate), so the gain of each block is
    ``(Ppp, Ppv) / S`` and P - K S K^T is ``(K_a S) K_b`` per block, in the official order.
    """
    count = mean.shape[0]
    state, blocks = mean.T, cov.T
    innovation_cov = blocks[PP] + _variance(state[3], _MEASUREMENT_COLUMNS)  # (4, T)
    gain = blocks[PP:VV] / innovation_cov  # (2, 4, T): position, velocity gain
    if keep_size is not None and keep_size.any():
        # Aspect and height unobserved on these rows: zero gain leaves their mean and covariance as they were.
        gain[:, 2:, keep_size] = 0.0
    new_mean = state.reshape(2, 4, count) + gain * (measurements.T - state[:4])
    scaled = gain * innovation_cov  # (K_pos S, K_vel S)
    new_cov = blocks - scaled.take(_LEFT, axis=0) * gain.take(_RIGHT, axis=0)
    return new_mean.reshape(8, count).T, new_cov.T


def innovation_variance(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """(T, 4) variances of the predicted measurement (cx, cy, a, h) of each track: ``H P H^T + R``, the ``S`` of
    ``update`` (diagonal: the four coordinates are independent in this filter)."""
    return (cov.T[PP] + _variance(mean.T[3], _MEASUREMENT_COLUMNS)).T


# P_pp, P_pv, P_vv blocks: (K_pos S) K_pos, (K_pos S) K_vel, (K_vel S) K_vel
_LEFT, _RIGHT = np.array([0, 0, 1]), np.array([0, 1, 1])


def xyah_to_tlbr(mean: np.ndarray) -> np.ndarray:
    """(T, 4) x1, y1, x2, y2 boxes from the (cx, cy, a, h) part of (T, 8) means.

    Same operation order as the official ``STrack.tlwh``/``tlbr`` so boxes agree bit for bit
    (halving is exact, so ``* 0.5`` equals the official ``/ 2``).
    """
    box = mean.T[:4].copy()  # (4, T): coordinates first
    box[2] *= box[3]
    box[:2] -= box[2:] * 0.5
    box[2:] += box[:2]
    return box.T


def measure(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Detections as the official tracker sees them: (x1, y1, x1 + w, y1 + h) boxes and xyah.

    The official tracker stores a detection as tlwh, so its box is ``x1 + (x2 - x1)``
    (not always ``x2`` in floating point); both results share the one subtraction.
    """
    xyah = boxes.T.copy()  # (4, N): coordinates first
    xyah[2:] -= xyah[:2]
    tlbr = xyah.copy()
    tlbr[2:] += tlbr[:2]
    xyah[:2] += xyah[2:] * 0.5
    xyah[2] /= xyah[3]
    return tlbr.T, xyah.T


def warp_affine(mean: np.ndarray, cov: np.ndarray, affine: np.ndarray) -> None:
    """Move (T, 8) means / (T, 4, 3) covariances by the 2x3 image affine ``affine``, in place.

    For camera motion: ``(cx, cy)`` are mapped as points, ``(vcx, vcy)`` as vectors (the linear part only),
    and ``h``, ``vh`` scale by ``s = sqrt(|det|)``, the affine's area scale; the aspect ratio is kept (a
    similarity, as ``cv2.estimateAffinePartial2D`` returns, keeps it exactly). The position and velocity
    variances of ``cx``, ``cy``, ``h`` scale by ``s**2``; the rotation part cannot be carried by the
    block-diagonal covariance (no ``cx``-``cy`` terms) and is left out, which is small for frame-to-frame
    camera motion (a few degrees at most).
    """
    linear, shift = affine[:, :2], affine[:, 2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    state, blocks = mean.T, cov.T  # (8, T), (3, 4, T)
    cx, cy = state[0].copy(), state[1].copy()
    state[0] = linear[0, 0] * cx + linear[0, 1] * cy + shift[0]
    state[1] = linear[1, 0] * cx + linear[1, 1] * cy + shift[1]
    vx, vy = state[4].copy(), state[5].copy()
    state[4] = linear[0, 0] * vx + linear[0, 1] * vy
    state[5] = linear[1, 0] * vx + linear[1, 1] * vy
    state[3] *= scale
    state[7] *= scale
    if scale != 1.0:
        blocks[:, [0, 1, 3]] *= scale * scale
