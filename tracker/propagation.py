"""Tracking between detector calls: image-based correction of the tracker's predictions (optical flow).

When the detector runs on every K-th frame only, ``ByteTracker.predict()`` extrapolates the tracks on the frames
in between with the constant-velocity Kalman model. ``IntervalTracker.step(frame)`` instead looks at the image:
a few points per track box are followed from the previous frame with pyramidal Lucas-Kanade (forward and
backward: a point whose backward track does not return within ``fb_thresh`` pixels is dropped; so is a point
that also lies in another box, which may follow the other object), and each box is moved by its points' median
displacement and, with ``max_scale_change`` > 0 (off by default), scaled by the median ratio of their distances
to the points' median. A box with too few good points keeps the Kalman prediction, which already includes the
camera motion (estimated from a background grid in the same Lucas-Kanade call, ``tracker.camera_motion``). The
boxes found this way correct the tracker's Kalman states (``ByteTracker.correct_predicted``; unconfirmed tracks:
``correct_unconfirmed``), so the next detection frame associates with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from int8track.tracker.byte_tracker import ByteTracker
from int8track.tracker.camera_motion import (
    CameraMotion,
    CameraMotionConfig,
    background_points,
    downscaled_gray,
    fit_camera_motion,
    follow_points,
    median,
)


@dataclass(frozen=True)
class PropagationConfig:
    """Settings of ``FlowPropagator`` (validated; ValueError names the bad field)."""

    downscale: int = 2            # flow runs on frames shrunk by this factor (4x fewer pixels)
    points_per_side: int = 4      # a points_per_side x points_per_side grid in each box
    inner_width: float = 0.5      # the grid spans this fraction of the box width (people: the torso, less background)
    inner_height: float = 0.6     # and of its height
    win_size: int = 9             # Lucas-Kanade window (downscaled pixels)
    levels: int = 2               # pyramid levels above the base
    fb_thresh: float = 1.0        # forward-backward error above this (full-resolution pixels): the point is dropped
    min_points: int = 4           # fewer good points in a box: it keeps the Kalman prediction
    # Box scale change per frame, from the points' spread, is clamped to 1 +- this. Off (0) by default: a walker's
    # apparent size changes by 1-2% a frame at 7-14 fps, less than the spread of 16 points on moving limbs says
    # by chance, and a camera's zoom moves every track through the camera motion. Off was as good or better on
    # every sequence at K=2 and 3 (benchmarks/README.md: PETS09 K=3 MOTA -2.5 -> -1.8, MOT17-05 -8.4 -> -6.5).
    max_scale_change: float = 0.0
    camera_motion: bool = True    # estimate camera motion and move every track by it (moving cameras)
    camera: CameraMotionConfig = field(default_factory=CameraMotionConfig)

    def __post_init__(self) -> None:
        for name in ("downscale", "points_per_side", "win_size", "min_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"PropagationConfig.{name} must be an integer >= 1, got {value!r}")
        if self.points_per_side < 2:
            raise ValueError(f"PropagationConfig.points_per_side must be >= 2, got {self.points_per_side}")
        if self.min_points > self.points_per_side ** 2:
            raise ValueError(f"PropagationConfig.min_points ({self.min_points}) exceeds the points per box "
                             f"({self.points_per_side ** 2})")
        if self.levels < 0:
            raise ValueError(f"PropagationConfig.levels must be >= 0, got {self.levels}")
        for name in ("inner_width", "inner_height"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"PropagationConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        if not self.fb_thresh > 0:
            raise ValueError(f"PropagationConfig.fb_thresh must be > 0, got {self.fb_thresh}")
        if not 0 <= self.max_scale_change < 1:
            raise ValueError(f"PropagationConfig.max_scale_change must be in [0, 1), got {self.max_scale_change}")


@dataclass(frozen=True)
class PropagationReport:
    """What one propagated frame measured: the reliability signals a detection scheduler can act on.

    ``kept_ratio``: good points / points over all boxes, not counting points inside another box (which do not
    vote: they may follow the other object); ``median_fb_error``: median forward-backward error of the followed
    box points, full-resolution pixels; ``flowed``/``fallback``: boxes moved by their own points / left at the
    Kalman prediction; ``camera``: the camera motion (None when not estimated).
    """

    boxes: int
    flowed: int
    fallback: int
    kept_ratio: float
    median_fb_error: float
    camera: CameraMotion | None = None


@dataclass(frozen=True)
class FlowResult:
    """``FlowPropagator.propagate``'s answer: (N, 4) boxes in the current frame (NaN rows: too few good points)
    and the report."""

    boxes: np.ndarray
    report: PropagationReport


class FlowPropagator:
    """Moves boxes from the previous frame to the current one by sparse optical flow (see the module docstring).

    Works on downscaled grey frames (``prepare(frame)``), so a caller that keeps the previous frame's prepared
    image converts each frame once.
    """

    def __init__(self, config: PropagationConfig | None = None) -> None:
        self.config = config or PropagationConfig()
        side = self.config.points_per_side
        # Unit grid in [-1/2, 1/2]^2, scaled per box by its inner size.
        offsets = np.linspace(-0.5, 0.5, side)
        grid = np.stack(np.meshgrid(offsets, offsets), axis=-1).reshape(-1, 2)
        self._unit_grid = grid * [self.config.inner_width, self.config.inner_height]

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """The grey, downscaled image the flow runs on."""
        return downscaled_gray(frame, self.config.downscale)

    def camera_motion(self, previous: np.ndarray, current: np.ndarray, boxes: np.ndarray) -> CameraMotion | None:
        """The camera's motion between two ``prepare``d images, from the background grid outside ``boxes`` (N, 4)
        of the previous frame (what ``propagate`` reports, without following any box); None when
        ``config.camera_motion`` is off."""
        config = self.config
        if not config.camera_motion:
            return None
        factor = config.downscale
        small_boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / factor
        points = background_points(previous.shape, config.camera.grid, small_boxes)
        moved, followed = follow_points(previous, current, points, config.win_size, config.levels)
        return fit_camera_motion(points[followed] * factor, moved[followed] * factor, config.camera)

    def propagate(self, previous: np.ndarray, current: np.ndarray, boxes: np.ndarray) -> FlowResult:
        """Boxes (N, 4) x1, y1, x2, y2 of the previous frame moved into the current one (images from ``prepare``);
        rows with NaN/inf or no area come back NaN.

        With ``config.camera_motion``, a background grid outside the boxes is followed in the same call and the
        report's ``camera`` holds the camera motion fitted to it.
        """
        config = self.config
        if previous.shape != current.shape:
            raise ValueError(f"previous and current images differ in size: {previous.shape} vs {current.shape}")
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4) x1, y1, x2, y2, got shape {boxes.shape}")
        usable = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not usable.all():  # followed as a dummy box (keeps one vectorised path), answered with NaN
            boxes = np.where(usable[:, None], boxes, [0.0, 0.0, 1.0, 1.0])
        factor = config.downscale
        small_boxes = boxes / factor
        count, per_box = boxes.shape[0], self._unit_grid.shape[0]
        centres = (small_boxes[:, :2] + small_boxes[:, 2:]) * 0.5
        sizes = small_boxes[:, 2:] - small_boxes[:, :2]
        box_points = (centres[:, None, :] + self._unit_grid[None] * sizes[:, None, :]).reshape(-1, 2)
        background = (background_points(previous.shape, config.camera.grid, small_boxes)
                      if config.camera_motion else np.empty((0, 2), np.float32))
        points = np.concatenate((box_points.astype(np.float32), background))
        moved, followed = follow_points(previous, current, points, config.win_size, config.levels)

        camera = None
        if config.camera_motion:
            start = box_points.shape[0]
            keep = followed[start:]
            camera = fit_camera_motion(points[start:][keep] * factor, moved[start:][keep] * factor, config.camera)

        flow_boxes = np.full((count, 4), np.nan)
        if count == 0:
            return FlowResult(flow_boxes, PropagationReport(0, 0, 0, float("nan"), float("nan"), camera))
        moved_box = moved[:box_points.shape[0]]
        back, returned = follow_points(current, previous, moved_box, config.win_size, config.levels,
                                       initial=box_points)
        fb_error = np.linalg.norm(back - box_points, axis=1) * factor
        tracked = followed[:box_points.shape[0]] & returned & np.repeat(usable, per_box)
        # A point that also lies in another box may belong to either object (the one in front): when two people
        # cross, such points follow the occluder and would drag the occluded box along, so they do not vote.
        exclusive = _exclusive_points(box_points.reshape(count, per_box, 2), small_boxes).ravel()
        exclusive &= np.repeat(usable, per_box)  # the dummy boxes' points count nowhere (see ``tracked``)
        good = (tracked & exclusive & (fb_error <= config.fb_thresh)).reshape(count, per_box)
        flow_boxes = self._move_boxes(boxes, box_points.reshape(count, per_box, 2) * factor,
                                      moved_box.reshape(count, per_box, 2).astype(np.float64) * factor, good)
        flowed = int(np.count_nonzero(np.isfinite(flow_boxes[:, 0])))
        report = PropagationReport(
            boxes=count, flowed=flowed, fallback=count - flowed,
            kept_ratio=float(np.count_nonzero(good)) / max(1, int(np.count_nonzero(exclusive))),
            median_fb_error=median(fb_error[tracked]),
            camera=camera)
        return FlowResult(flow_boxes, report)

    def _move_boxes(self, boxes: np.ndarray, before: np.ndarray, after: np.ndarray, good: np.ndarray) -> np.ndarray:
        """Each box shifted by its good points' median displacement and scaled by the median ratio of their
        distances to the points' median, after over before (clamped); NaN rows for boxes with fewer than
        ``min_points`` good points."""
        config = self.config
        out = np.full(boxes.shape, np.nan)
        counts = np.count_nonzero(good, axis=1)
        enough = counts >= config.min_points
        if not enough.any():
            return out
        before, after, good, counts, kept_boxes = before[enough], after[enough], good[enough], counts[enough], \
            boxes[enough]
        # One sort for the six medians: displacement, centre before and centre after, x and y each.
        medians = _masked_median(np.moveaxis(np.concatenate((after - before, before, after), axis=-1), -1, 0),
                                 good, counts)  # (6, B)
        displacement, centre_before, centre_after = medians[0:2].T, medians[2:4].T, medians[4:6].T
        spread_before = np.linalg.norm(before - centre_before[:, None], axis=-1)
        spread_after = np.linalg.norm(after - centre_after[:, None], axis=-1)
        usable = good & (spread_before > 0.5)  # the point at the centre says nothing about scale
        ratio = spread_after / np.where(usable, spread_before, 1.0)
        usable_counts = np.count_nonzero(usable, axis=1)
        scale = np.where(usable_counts > 0, _masked_median(ratio, usable, usable_counts), 1.0)
        scale = np.clip(scale, 1 - config.max_scale_change, 1 + config.max_scale_change)  # all 1 when off
        centre = (kept_boxes[:, :2] + kept_boxes[:, 2:]) * 0.5 + displacement
        half = (kept_boxes[:, 2:] - kept_boxes[:, :2]) * 0.5 * scale[:, None]
        out[enough] = np.hstack((centre - half, centre + half))
        return out


def _exclusive_points(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, P) bool: point p of box i lies in no other box j != i (``points`` (N, P, 2), ``boxes`` (N, 4))."""
    count = len(boxes)
    if count < 2:
        return np.ones(points.shape[:2], dtype=bool)
    x, y = points[..., 0][..., None], points[..., 1][..., None]  # (N, P, 1) against the (N,) boxes
    inside = (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])  # (N, P, N)
    inside[np.arange(count), :, np.arange(count)] = False  # its own box does not count
    return np.logical_not(inside.any(axis=2))


def _masked_median(values: np.ndarray, mask: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of each row of ``values`` (..., B, P) over its ``mask``-ed (B, P) entries (``counts`` (B,) per row;
    rows with none give +inf): shape (..., B). Sorting with +inf in the masked places costs a fraction of
    ``np.nanmedian``'s masked-array path."""
    ordered = np.sort(np.where(mask, values, np.inf), axis=-1)
    low = np.maximum(counts - 1, 0) // 2
    high = np.minimum(np.maximum(counts, 1) // 2, values.shape[-1] - 1)
    rows = np.arange(values.shape[-2])
    return (ordered[..., rows, low] + ordered[..., rows, high]) * 0.5


class IntervalTracker:
    """A ``ByteTracker`` fed by a detector that runs on some frames only; the frames between are tracked by image.

    Call sequence, once per frame, in order::

        stepper = IntervalTracker(ByteTracker(frame_rate=fps), FlowPropagator())   # None: Kalman prediction only
        for index, frame in enumerate(frames):
            if index % K == 0 (or the scheduler asks, e.g. stepper.last_report.kept_ratio < 0.5):
                tracks = stepper.update(frame, detector(frame))   # ByteTracker.update + remembers the frame
            else:
                tracks = stepper.step(frame)                      # predict, flow-correct, (N, 8) like update
        stepper.reset()                                           # between videos

    ``step`` output has ``update``'s columns with ``det_index`` -1 (``tracker.last_predicted`` is all True): the
    confirmed tracked tracks at their flow-measured boxes where the flow was good and the track's last detection
    scored at least ``min_flow_score`` (default: the tracker's high threshold; ByteTrack's low-score detections are
    mostly occluded people, whose box the occluder's flow would drag along), else at the Kalman prediction (clipped
    to the frame with ``clip_to_frame``). Unconfirmed tracks (not shown) are moved by the flow too.

    Tracks the last detector call missed but the one before matched (``ByteTracker.predict(include_missed=True)``)
    are shown only with ``include_missed``, by default only without a propagator. With one they are still followed
    (their box keeps its region out of the other boxes' point votes: the hidden person may own those points) but
    neither shown nor corrected by the flow: no detection says the person is still in that box, whose flow is then
    the occluder's or the background's; taken as a measurement it would set the lost track's velocity (the more so
    as the tracker's velocity noise grows at low frame rates) and the track would wander off or follow the occluder
    (benchmarks/README.md: PETS09 at K=3, IDF1 -13.8 -> -5.2 against K=1). Without a propagator a missed detection
    is mostly a flicker (MOT17's public detections), and showing the prediction is right more often than not.

    Without a propagator (or before the first ``update``), ``step`` is ``tracker.predict(include_missed=...)``,
    which changes no track, so the detections of the next ``update`` are associated exactly as ``update(detections,
    frame_gap=K)`` would. ``last_report`` is the last step's ``PropagationReport`` (None after an update or without
    a propagator).
    """

    def __init__(self, tracker: ByteTracker, propagator: FlowPropagator | None = None, *,
                 include_missed: bool | None = None, min_flow_score: float | None = None,
                 clip_to_frame: bool = False) -> None:
        self.tracker = tracker
        self.propagator = propagator
        # None: shown without images only (see the class docstring)
        self.include_missed = propagator is None if include_missed is None else bool(include_missed)
        # Off by default, as update's boxes are not clipped either: MOTChallenge gt boxes run past the frame
        # edge, so clipping only the stepped frames scores people at the edge worse than detection frames.
        self.clip_to_frame = clip_to_frame
        # ByteTrack's low-score detections are mostly partly occluded people: their box holds much of the
        # occluder, whose motion the flow would follow. Such tracks keep the Kalman prediction.
        self.min_flow_score = tracker.config.track_high_thresh if min_flow_score is None else float(min_flow_score)
        self.reset(tracker_too=False)

    def reset(self, tracker_too: bool = True) -> None:
        """Forget the previous frame (and, by default, reset the tracker): call between videos."""
        if tracker_too:
            self.tracker.reset()
        self._previous: np.ndarray | None = None
        self._previous_ids = np.empty(0, dtype=np.int64)
        self._previous_boxes = np.empty((0, 4))
        self._detection_ids = np.empty(0)  # ids output by the last update
        self._unconfirmed = np.empty((0, 4))  # boxes of the unconfirmed tracks on the previous frame
        self.last_report: PropagationReport | None = None

    def update(self, frame: np.ndarray | None, detections: object) -> np.ndarray:
        """A detection frame: ``tracker.update(detections)``; the frame (None: not needed without a propagator)
        and each track's box on it (its matched detection's box) seed the next ``step``.

        With a propagator that estimates camera motion, the tracks are first moved by the camera's motion since
        the previous frame, as ``step`` moves them: a moving camera otherwise puts every track one frame of
        camera motion off its detection on exactly the frames that decide the identities."""
        current = None
        if self.propagator is not None:
            if frame is None:
                raise ValueError("IntervalTracker.update needs the frame when it has a propagator")
            current = self.propagator.prepare(frame)
            if self._previous is not None and self._previous.shape == current.shape:
                camera = self.propagator.camera_motion(self._previous, current, self._previous_boxes)
                if camera is not None and camera.reliable:
                    self.tracker.apply_motion(camera.affine)
        tracks = self.tracker.update(detections)
        self.last_report = None
        if current is not None:
            self._previous = current
            boxes = tracks[:, :4].copy()
            matched = tracks[:, 7] >= 0
            if matched.any():  # the detector's box is where the points are; the filtered box lags it a little
                rows = np.asarray(detections, dtype=np.float64)
                boxes[matched] = rows[tracks[matched, 7].astype(np.int64), :4]
            ids = tracks[:, 4]
            if len(self._detection_ids):
                # Tracks shown on the previous detection frame and missed now are followed too (shown or not):
                # seed their flow from their predicted box on this frame.
                lost = self.tracker.lost_tracks()
                missed = lost[np.isin(lost[:, 4], self._detection_ids)]
                ids, boxes = np.concatenate((ids, missed[:, 4])), np.vstack((boxes, missed[:, :4]))
            self._remember(ids, boxes)
            self._unconfirmed = self.tracker.unconfirmed_boxes()
        self._detection_ids = tracks[:, 4].copy()
        return tracks

    def step(self, frame: np.ndarray) -> np.ndarray:
        """A frame without detections: the tracks moved into it (see the class docstring)."""
        tracker, propagator = self.tracker, self.propagator
        height, width = frame.shape[:2]
        frame_size = (width, height) if self.clip_to_frame else None
        if propagator is None or self._previous is None:
            return tracker.predict(frame_size=frame_size, include_missed=self.include_missed)
        current = propagator.prepare(frame)
        # One flow call for the shown tracks and the unconfirmed ones (see ByteTracker.unconfirmed_boxes).
        shown = len(self._previous_boxes)
        result = propagator.propagate(self._previous, current, np.vstack((self._previous_boxes, self._unconfirmed)))
        flow_boxes, unconfirmed_flow = result.boxes[:shown], result.boxes[shown:]
        camera = result.report.camera
        if camera is not None and camera.reliable:
            tracker.apply_motion(camera.affine)  # every track, lost ones too, before the Kalman step
        tracks = tracker.predict(frame_size=frame_size, include_missed=True)
        missed = np.isin(tracks[:, 4], tracker.lost_tracks()[:, 4]) if len(tracks) else np.zeros(0, dtype=bool)
        measured = np.full((len(tracks), 4), np.nan)
        if len(tracks) and len(self._previous_ids):
            # Rows of the previous frame's boxes holding each predicted track (ids are unique per frame).
            order = np.argsort(self._previous_ids)
            where = np.searchsorted(self._previous_ids, tracks[:, 4].astype(np.int64), sorter=order)
            where = np.minimum(where, len(order) - 1)
            found = self._previous_ids[order[where]] == tracks[:, 4].astype(np.int64)
            measured[found] = flow_boxes[order[where[found]]]
        measured[(tracks[:, 5] < self.min_flow_score) | missed] = np.nan  # see the class docstring
        tracker.correct_predicted(measured)
        if len(self._unconfirmed):
            tracker.unconfirmed_boxes()  # the same rows as on the detection frame: no update since
            tracker.correct_unconfirmed(unconfirmed_flow)
            moved = np.isfinite(unconfirmed_flow[:, 0])
            self._unconfirmed = np.where(moved[:, None], unconfirmed_flow, self._unconfirmed)
        flowed = np.isfinite(measured[:, 0])
        tracks[flowed, :4] = measured[flowed]
        if self.clip_to_frame:
            np.clip(tracks[:, 0:4:2], 0.0, width, out=tracks[:, 0:4:2])
            np.clip(tracks[:, 1:4:2], 0.0, height, out=tracks[:, 1:4:2])
        self._previous = current
        self._remember(tracks[:, 4], tracks[:, :4])
        self.last_report = result.report
        return tracks if self.include_missed else tracks[~missed]

    def _remember(self, ids: np.ndarray, boxes: np.ndarray) -> None:
        self._previous_ids = ids.astype(np.int64)
        self._previous_boxes = np.asarray(boxes, dtype=np.float64)
