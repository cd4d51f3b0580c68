"""Camera motion compensation (CMC) for ``ByteTracker``: move the Kalman states by the camera's motion between
consecutive frames before the association, so a panning camera does not read as every person jumping.

The motion estimate is ``tracker.camera_motion``'s (one implementation, shared with the detect-every-K
propagation): a grid of background points, outside the tracked boxes, followed by pyramidal Lucas-Kanade on
downscaled grey frames and a RANSAC similarity fit. :class:`CameraMotionCompensator` keeps the previous frame's
downscaled grey image, so each frame is converted and shrunk once. :class:`CmcTracker` wraps a ``ByteTracker``
with BoxMOT's ``update(detections, frame)`` call. An unreliable estimate (too few points followed, e.g. a
blank frame or a cut) is not applied: a wrong warp would cost more than none.
"""
from __future__ import annotations

import io
from time import perf_counter_ns
from typing import Any

import numpy as np

from int8track.tracker.byte_tracker import ByteTracker
from int8track.tracker.camera_motion import (
    MIN_FIT_POINTS,
    CameraMotion,
    CameraMotionConfig,
    background_points,
    downscaled_gray,
    fit_camera_motion,
    follow_points,
)

#: Format of ``CmcTracker.motion_state`` bytes.
MOTION_STATE_VERSION = 1
#: CMC's default: frames shrunk 4 times (1920x1080 -> 480x270) and one pyramid level above that, which keeps the
#: cost near 1 ms a frame on one core (benchmarks/README.md); camera motion is a whole-image property, RANSAC's fit
#: over ~100 points recovers it to a fraction of a pixel, and one level still follows ~35 px a frame at 1080p.
DEFAULT_CMC_CONFIG = CameraMotionConfig(downscale=4, levels=1)


class CameraMotionCompensator:
    """Estimates each frame's camera motion from the previous frame and applies it to a tracker's tracks.

    ``compensate(tracker, frame)``: the motion from the previous frame given to this one (identity, unreliable,
    on the first frame or after a size change), applied with ``tracker.apply_motion`` when reliable;
    ``exclude_boxes`` (x1, y1, x2, y2 in the previous frame) are left out of the estimate (moving objects).
    ``last_motion`` holds the last estimate; ``reset()`` forgets the previous frame (between videos).
    """

    def __init__(self, config: CameraMotionConfig | None = None) -> None:
        if config is not None and not isinstance(config, CameraMotionConfig):
            raise ValueError(f"config must be a CameraMotionConfig, got {type(config).__name__}")
        self.config = config or DEFAULT_CMC_CONFIG
        self.last_motion = CameraMotion(min_inliers=self.config.min_inliers)
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        self._previous = None
        self.last_motion = CameraMotion(min_inliers=self.config.min_inliers)

    @property
    def previous_frame(self) -> np.ndarray | None:
        """The last frame seen, downscaled grey (what the next estimate starts from), or None."""
        return self._previous

    def restore(self, previous: np.ndarray | None) -> None:
        """Continue from ``previous_frame`` as another compensator saved it."""
        if previous is not None and (not isinstance(previous, np.ndarray) or previous.ndim != 2
                                     or previous.dtype != np.uint8):
            raise ValueError("a compensator's previous frame is a 2-D uint8 array (previous_frame)")
        self._previous = previous

    def estimate(self, frame: np.ndarray, exclude_boxes: np.ndarray | None = None) -> CameraMotion:
        """Motion from the previous frame to ``frame`` (BGR or grey uint8); ``frame`` becomes the previous one."""
        config = self.config
        factor = config.downscale
        current = downscaled_gray(frame, factor)
        previous, self._previous = self._previous, current
        motion = CameraMotion(min_inliers=config.min_inliers)
        if previous is not None and previous.shape == current.shape:
            excluded = None
            if exclude_boxes is not None and len(exclude_boxes):
                excluded = np.asarray(exclude_boxes, dtype=np.float64)[:, :4] / factor
            points = background_points(previous.shape, config.grid, excluded)
            if len(points) >= MIN_FIT_POINTS:
                moved, followed = follow_points(previous, current, points, config.win_size, config.levels)
                motion = fit_camera_motion(points[followed] * factor, moved[followed] * factor, config)
        self.last_motion = motion
        return motion

    def compensate(self, tracker: ByteTracker, frame: np.ndarray,
                   exclude_boxes: np.ndarray | None = None) -> CameraMotion:
        """:meth:`estimate`, then ``tracker.apply_motion`` when the estimate is reliable."""
        motion = self.estimate(frame, exclude_boxes)
        if motion.reliable:
            tracker.apply_motion(motion.affine)
        return motion


class CmcTracker:
    """A ``ByteTracker`` with camera motion compensation: ``update(detections, frame)`` (BoxMOT's call) moves the
    tracks by the camera's motion since the previous frame, then runs ``tracker.update``.

    The boxes of the last output are left out of the motion estimate (people walking would pull it).
    ``last_stage_ns`` adds ``cmc`` to the tracker's stages; ``last_motion`` is the frame's estimate.
    """

    def __init__(self, tracker: ByteTracker, config: CameraMotionConfig | None = None) -> None:
        if not isinstance(tracker, ByteTracker):
            raise ValueError(f"CmcTracker wraps a ByteTracker, got {type(tracker).__name__}")
        self.tracker = tracker
        self.compensator = CameraMotionCompensator(config)
        self._last_boxes: np.ndarray | None = None
        self._cmc_ns = 0

    @property
    def last_motion(self) -> CameraMotion:
        return self.compensator.last_motion

    @property
    def last_stage_ns(self) -> dict[str, int]:
        return {**self.tracker.last_stage_ns, "cmc": self._cmc_ns}

    def reset(self) -> None:
        self.tracker.reset()
        self.compensator.reset()
        self._last_boxes = None

    def motion_state(self) -> bytes:
        """What the next update needs besides the tracker's state (``ByteTracker.state_dict``): the previous frame,
        downscaled grey, and the last output boxes. With ``load_motion_state`` on a new ``CmcTracker`` around the
        restored tracker, a stream resumed after a frame gives the same tracks as one never interrupted."""
        buffer = io.BytesIO()
        previous = self.compensator.previous_frame
        np.savez(buffer, version=np.int64(MOTION_STATE_VERSION),
                 previous=previous if previous is not None else np.zeros((0, 0), np.uint8),
                 boxes=self._last_boxes if self._last_boxes is not None else np.zeros((0, 4)))
        return buffer.getvalue()

    def load_motion_state(self, data: bytes) -> None:
        """Continue from ``motion_state()`` bytes; ValueError when they are not such bytes."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                version, previous, boxes = int(stored["version"]), stored["previous"], stored["boxes"]
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise ValueError(f"not a camera motion state: {exc}") from None
        if version != MOTION_STATE_VERSION or boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"camera motion state of version {version} with boxes {boxes.shape}: expected version "
                             f"{MOTION_STATE_VERSION} and (N, 4) boxes")
        self.compensator.restore(previous if previous.size else None)
        self._last_boxes = boxes.astype(np.float64) if previous.size else None

    def update(self, detections: object, frame: np.ndarray, **kwargs: Any) -> np.ndarray:
        """``tracker.update(detections, **kwargs)`` after compensating the camera motion into ``frame``."""
        if frame is None:
            raise ValueError("CmcTracker.update needs the frame image (camera motion is measured on it)")
        start = perf_counter_ns()
        self.compensator.compensate(self.tracker, frame, self._last_boxes)
        self._cmc_ns = perf_counter_ns() - start
        output = self.tracker.update(detections, **kwargs)
        self._last_boxes = output[:, :4]
        return output
