"""Global camera motion between two frames: a 2x3 similarity from sparse features (OpenCV).

The estimate is kept apart from its uses: ``tracker.propagation`` moves tracks between detector calls with it,
and camera-motion compensation inside ``ByteTracker`` (before association, as BoT-SORT's CMC) would apply the
same ``CameraMotion`` with ``motion.apply_to(tracker)`` (``ByteTracker.apply_motion``).

How: both frames are converted to grey and shrunk by ``downscale`` (camera motion is a whole-image property, so
half resolution loses little accuracy and saves most of the work), a grid of points of the previous frame (away
from the given object boxes: people moving on their own would pull the estimate) is followed with pyramidal
Lucas-Kanade, and ``cv2.estimateAffinePartial2D`` fits rotation, uniform scale and translation with RANSAC.
The result is in full-resolution pixels.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from int8track.tracker import kalman

if TYPE_CHECKING:
    from int8track.tracker.byte_tracker import ByteTracker

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def to_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 single-channel version of a BGR, BGRA or grey uint8 frame (ValueError for anything else)."""
    image = np.asarray(frame)
    if image.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 images, got dtype {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    raise ValueError(f"frames must be (H, W), (H, W, 3) or (H, W, 4) images, got shape {image.shape}")


@dataclass(frozen=True)
class CameraMotionConfig:
    """Settings of :func:`estimate_camera_motion` (validated; ValueError names the bad field)."""

    downscale: int = 2           # the frames are shrunk by this factor first
    grid: tuple[int, int] = (12, 9)  # background points: columns, rows (about 100 outside the boxes)
    win_size: int = 9            # Lucas-Kanade window (downscaled pixels)
    levels: int = 2              # pyramid levels above the base
    ransac_thresh: float = 1.0   # RANSAC inlier distance, full-resolution pixels
    min_inliers: int = 12        # fewer: the motion is unreliable (``CameraMotion.reliable`` False)

    def __post_init__(self) -> None:
        for name in ("downscale", "win_size", "min_inliers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"CameraMotionConfig.{name} must be an integer >= 1, got {value!r}")
        if self.levels < 0:
            raise ValueError(f"CameraMotionConfig.levels must be >= 0, got {self.levels}")
        if len(self.grid) != 2 or min(self.grid) < 2:
            raise ValueError(f"CameraMotionConfig.grid must be (columns, rows), each >= 2, got {self.grid}")
        if not self.ransac_thresh > 0:
            raise ValueError(f"CameraMotionConfig.ransac_thresh must be > 0, got {self.ransac_thresh}")


@dataclass(frozen=True)
class CameraMotion:
    """Image motion from the previous frame to the current one: ``current = affine @ (x, y, 1)``.

    ``inliers`` of ``points`` followed corners agree with it within the RANSAC threshold; ``residual`` is their
    median distance to it (full-resolution pixels). ``reliable`` says whether to use it (enough inliers).
    """

    affine: np.ndarray = field(default_factory=IDENTITY.copy)  # (2, 3) float64
    inliers: int = 0
    points: int = 0
    residual: float = float("nan")
    min_inliers: int = CameraMotionConfig.min_inliers

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (2, 3) or not np.isfinite(affine).all():
            raise ValueError(f"CameraMotion.affine must be a finite 2x3 matrix, got shape {affine.shape}")
        if not 0 <= self.inliers <= self.points:
            raise ValueError(f"CameraMotion needs 0 <= inliers <= points, got {self.inliers} of {self.points}")
        affine.setflags(write=False)
        object.__setattr__(self, "affine", affine)

    @property
    def reliable(self) -> bool:
        return self.inliers >= self.min_inliers

    @property
    def scale(self) -> float:
        """Area scale of the affine (1 = no zoom)."""
        return float(np.sqrt(abs(np.linalg.det(self.affine[:, :2]))))

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) points of the previous frame mapped into the current one."""
        return np.asarray(points, dtype=np.float64) @ self.affine[:, :2].T + self.affine[:, 2]

    def transform_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 boxes moved by the affine: centre mapped, sides scaled by ``scale``."""
        boxes = np.asarray(boxes, dtype=np.float64)
        centre = self.transform_points((boxes[:, :2] + boxes[:, 2:4]) * 0.5)
        half = (boxes[:, 2:4] - boxes[:, :2]) * (0.5 * self.scale)
        return np.hstack((centre - half, centre + half))

    def apply_to_states(self, mean: np.ndarray, cov: np.ndarray) -> None:
        """Move Kalman states (xyah means (T, 8), block covariances (T, 4, 3)) in place: ``kalman.warp_affine``."""
        kalman.warp_affine(mean, cov, self.affine)

    def apply_to(self, tracker: ByteTracker) -> None:
        """Move every track of a ``ByteTracker`` by this motion (``ByteTracker.apply_motion``)."""
        tracker.apply_motion(self.affine)


def downscaled_gray(frame: np.ndarray, factor: int) -> np.ndarray:
    """:func:`to_gray` of ``frame`` shrunk ``factor`` times (area averaging, so fine texture does not alias)."""
    gray = to_gray(frame)
    if factor == 1:
        return gray
    # A power of two shrinks by successive halvings: OpenCV's 2x INTER_AREA has a fast path, and two of them cost
    # several times less than one 4x (1920x1080: ~0.2 ms against ~1.9 ms on this CPU); both average 4x4 blocks.
    while factor % 2 == 0 and factor > 1 and min(gray.shape) >= 2:
        gray = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
        factor //= 2
    if factor == 1:
        return gray
    size = (max(1, gray.shape[1] // factor), max(1, gray.shape[0] // factor))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def background_points(shape: tuple[int, int], grid: tuple[int, int], exclude_boxes: np.ndarray | None = None,
                      margin: int = 4) -> np.ndarray:
    """(P, 2) float32 points of a ``grid`` (columns, rows) over an image of ``shape`` (height, width), leaving out
    those inside ``exclude_boxes`` (x1, y1, x2, y2 in the same pixels): objects that move on their own would pull
    the camera motion. A fixed grid costs nothing to find, unlike corners (``cv2.goodFeaturesToTrack`` is several
    times the cost of following the points); Lucas-Kanade's eigenvalue test and RANSAC drop flat or moving ones."""
    points = _grid(int(shape[0]), int(shape[1]), int(grid[0]), int(grid[1]), margin)
    if exclude_boxes is not None and len(exclude_boxes):
        boxes = np.asarray(exclude_boxes, dtype=np.float32)
        inside = ((points[:, None, 0] >= boxes[:, 0]) & (points[:, None, 0] <= boxes[:, 2])
                  & (points[:, None, 1] >= boxes[:, 1]) & (points[:, None, 1] <= boxes[:, 3])).any(axis=1)
        points = points[~inside]
    return points


@functools.lru_cache(maxsize=8)
def _grid(height: int, width: int, columns: int, rows: int, margin: int) -> np.ndarray:
    """The grid points of ``background_points`` (read-only: cached, as every frame of a video uses the same)."""
    xs = np.linspace(margin, width - 1 - margin, columns, dtype=np.float32)
    ys = np.linspace(margin, height - 1 - margin, rows, dtype=np.float32)
    points = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    points.setflags(write=False)
    return points


def fit_camera_motion(source: np.ndarray, target: np.ndarray, config: CameraMotionConfig | None = None) -> CameraMotion:
    """Similarity (rotation, uniform scale, translation) taking (P, 2) ``source`` points to ``target`` points,
    fitted with RANSAC (``cv2.estimateAffinePartial2D``); the identity with ``reliable`` False when it cannot be.

    The one fit both :func:`estimate_camera_motion` and ``tracker.propagation`` (which follows its background
    points in the same Lucas-Kanade call as the box points) use."""
    config = config or CameraMotionConfig()
    source = np.asarray(source, dtype=np.float64).reshape(-1, 2)
    target = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    if source.shape != target.shape:
        raise ValueError(f"source and target must both be (P, 2), got {source.shape} and {target.shape}")
    if len(source) < MIN_FIT_POINTS:
        return CameraMotion(points=len(source), min_inliers=config.min_inliers)
    affine, inlier_mask = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC,
                                                      ransacReprojThreshold=config.ransac_thresh)
    if affine is None:
        return CameraMotion(points=len(source), min_inliers=config.min_inliers)
    inlier = inlier_mask.ravel().astype(bool)
    errors = np.linalg.norm(source[inlier] @ affine[:, :2].T + affine[:, 2] - target[inlier], axis=1)
    return CameraMotion(affine=affine, inliers=int(inlier.sum()), points=len(source),
                        residual=median(errors),
                        min_inliers=config.min_inliers)


def median(values: np.ndarray) -> float:
    """Median of a 1-D array (NaN when empty): one sort, several times cheaper than ``np.median`` on the few
    hundred values of a frame (``np.median``'s overhead is most of its cost there)."""
    count = values.size
    if count == 0:
        return float("nan")
    ordered = np.sort(values)
    return float((ordered[(count - 1) // 2] + ordered[count // 2]) * 0.5)


MIN_FIT_POINTS = 3  # a similarity needs 2 points; RANSAC needs a spare


def estimate_camera_motion(previous: np.ndarray, current: np.ndarray, config: CameraMotionConfig | None = None,
                           exclude_boxes: np.ndarray | None = None) -> CameraMotion:
    """Camera motion from frame ``previous`` to frame ``current`` (same size; BGR or grey uint8).

    ``exclude_boxes`` (N, 4) x1, y1, x2, y2 in ``previous`` (full-resolution pixels): objects whose own motion
    should not count. Returns the identity with ``reliable`` False when too few points can be followed.
    """
    config = config or CameraMotionConfig()
    if previous.shape[:2] != current.shape[:2]:
        raise ValueError(f"frames must have one size, got {previous.shape} and {current.shape}")
    factor = config.downscale
    prev_small, cur_small = downscaled_gray(previous, factor), downscaled_gray(current, factor)
    excluded = None if exclude_boxes is None else np.asarray(exclude_boxes, dtype=np.float64) / factor
    points = background_points(prev_small.shape, config.grid, excluded)
    if len(points) < MIN_FIT_POINTS:
        return CameraMotion(points=len(points), min_inliers=config.min_inliers)
    moved, followed = follow_points(prev_small, cur_small, points, config.win_size, config.levels)
    return fit_camera_motion(points[followed] * factor, moved[followed] * factor, config)


def follow_points(previous: np.ndarray, current: np.ndarray, points: np.ndarray, win_size: int,
                  levels: int, initial: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pyramidal Lucas-Kanade from ``previous`` to ``current`` (grey): (P, 2) float32 new positions and a (P,)
    bool mask of the points followed (``initial``: guessed new positions to start from)."""
    if len(points) == 0:
        return np.empty((0, 2), np.float32), np.zeros(0, bool)
    flags = 0
    guess = None
    if initial is not None:
        guess = np.ascontiguousarray(initial, dtype=np.float32).reshape(-1, 1, 2)
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
    moved, status, _ = cv2.calcOpticalFlowPyrLK(
        previous, current, np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 1, 2), guess,
        winSize=(win_size, win_size), maxLevel=levels, flags=flags,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03),
        minEigThreshold=MIN_EIGEN)
    return moved.reshape(-1, 2), status.ravel() == 1


#: Lucas-Kanade's minimum eigenvalue of the window's gradient matrix (normalised by the window area): points on
#: flat image regions, whose motion cannot be told, are reported lost instead of drifting (OpenCV's default 1e-4
#: keeps almost everything).
MIN_EIGEN = 1e-3
