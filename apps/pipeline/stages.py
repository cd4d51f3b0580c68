"""The stages of one frame: the detector's three steps and the tracker's update, each timed into the profiler;
and the tracker fed by a detector that runs on some frames only (``--detect-every``)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from int8track.apps.pipeline.profiler import StageProfiler
from int8track.tracker.propagation import FlowPropagator, IntervalTracker
from int8track.tracker.schedule import DetectionSchedule, DetectionScheduler

#: Stages in the order a frame passes them. ``read`` and ``write`` run on their own threads.
STAGES = (
    "read", "preprocess", "infer", "postprocess", "propagate",
    "cmc", "track_predict", "track_association", "track_bookkeeping", "reid",
    "draw", "write",
)
TRACKER_STAGES = ("track_predict", "track_association", "track_bookkeeping")
#: Frames a live reader holds when the detector runs on some frames only (``--detect-every``).
PROPAGATION_BUFFER = 16


def detect(detector, image: np.ndarray, profiler: StageProfiler) -> np.ndarray:
    """Run the detector's three stages on one BGR frame, timing each; (N,6) x1,y1,x2,y2,score,class.

    Only the detector's own classes come out: it filters them before NMS (``Detector.with_classes``).
    """
    with profiler.stage("preprocess"):
        blob, meta = detector.preprocess(image)
    with profiler.stage("infer"):
        raw = detector.infer(blob)
    with profiler.stage("postprocess"):
        return detector.postprocess(raw, meta)


def update_tracker(tracker, detections: np.ndarray, profiler: StageProfiler, frame_gap: int = 1,
                   image: np.ndarray | None = None, timestamp: float | None = None) -> np.ndarray:
    """``tracker.update`` split into camera motion / predict / association (IoU + assignment) / bookkeeping /
    re-identification.

    The split comes from ``tracker.last_stage_ns``; bookkeeping is the rest of the measured update, so the
    stages add up to the whole call. ``frame_gap`` > 1 tells the tracker that frames were skipped (a live source
    dropped them), so its Kalman prediction and lost-track ageing stay in step with time. ``image`` is the
    frame, for trackers that read it (``tracker.reid.wrap_tracker``: ``--cmc``, ``--reid``); ``timestamp``
    (seconds, instead of ``frame_gap``) steps the tracker by the time that passed (a live source).
    """
    start = time.perf_counter_ns()
    if timestamp is not None:
        tracks = tracker.update(detections, image, timestamp=timestamp)
    else:
        tracks = tracker.update(detections, image, frame_gap=frame_gap)
    total = time.perf_counter_ns() - start
    stages = tracker.last_stage_ns
    predict = stages["predict"]
    association = stages["iou"] + stages["assignment"]
    extra = 0
    for stage in ("cmc", "reid"):
        if stage in stages:
            profiler.add(stage, stages[stage])
            extra += stages[stage]
    profiler.add("track_predict", predict)
    profiler.add("track_association", association)
    profiler.add("track_bookkeeping", max(0, total - predict - association - extra))
    return tracks


@dataclass
class ScheduleCounts:
    """How a run's frames were tracked: by the detector, or propagated from the image between its calls."""

    detector_calls: int = 0
    propagated_frames: int = 0
    propagate_ns: int = 0

    def info(self, schedule: DetectionSchedule) -> dict:
        frames = self.detector_calls + self.propagated_frames
        return {"detect_every": schedule.label, "propagation": "optical flow" if schedule.flow else "Kalman",
                "detector_calls": self.detector_calls, "frames_propagated": self.propagated_frames,
                "detector_calls_per_frame": self.detector_calls / frames if frames else 0.0,
                "propagate_ms_per_frame": (self.propagate_ns / 1e6 / self.propagated_frames
                                           if self.propagated_frames else 0.0)}


class ScheduledTracker:
    """The tracker fed by a detector that runs when the schedule says: ``IntervalTracker`` between calls."""

    def __init__(self, tracker, schedule: DetectionSchedule, info, counts: ScheduleCounts) -> None:
        # the detector clips its boxes to the frame, so the boxes between its calls are clipped too
        self.stepper = IntervalTracker(tracker, FlowPropagator() if schedule.flow else None, clip_to_frame=True)
        self.scheduler = DetectionScheduler(schedule, info.fps, live=info.is_live)
        self.counts = counts

    def track(self, image: np.ndarray, detector, profiler: StageProfiler, gap: int,
              detect_now: bool = False) -> np.ndarray:
        """One frame, by the detector when due (or ``detect_now``: the frame size changed, so the previous
        frame cannot seed optical flow) or else propagated."""
        tracker = self.stepper.tracker
        for _ in range(gap - 1):  # frames a live reader dropped: Kalman steps, as update(frame_gap=gap) would
            tracker.predict()
        start = time.perf_counter_ns()
        if detect_now:
            self.stepper.reset(tracker_too=False)
        if detect_now or self.scheduler.due(self.stepper.last_report, gap):
            detections = detect(detector, image, profiler)
            tracks = self._update(image, detections, profiler)
            self.counts.detector_calls += 1
            self.scheduler.record(True, (time.perf_counter_ns() - start) / 1e9, gap)
            return tracks
        with profiler.stage("propagate"):
            tracks = self.stepper.step(image)
        took = time.perf_counter_ns() - start
        self.counts.propagated_frames += 1
        self.counts.propagate_ns += took
        self.scheduler.record(False, took / 1e9, gap)
        return tracks

    def _update(self, image: np.ndarray, detections: np.ndarray, profiler: StageProfiler) -> np.ndarray:
        start = time.perf_counter_ns()
        tracks = self.stepper.update(image, detections)
        total = time.perf_counter_ns() - start
        stages = self.stepper.tracker.last_stage_ns
        association = stages["iou"] + stages["assignment"]
        profiler.add("track_predict", stages["predict"])
        profiler.add("track_association", association)
        profiler.add("track_bookkeeping", max(0, total - stages["predict"] - association))
        return tracks
