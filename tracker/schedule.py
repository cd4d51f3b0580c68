"""When the detector runs: every frame, every K-th frame, or ``auto``.

``auto`` on a file spends detector calls where tracking between them is unreliable and saves them where it is
easy:

- the longest gap between detector calls is a time, not a frame count (``max_gap_s``, 0.2 s), so a 7-10 fps
  camera is detected on every frame, a 14 fps one on every other and a 30 fps one on every 6th at most
  (``max_every``): people move as far in 0.2 s whatever the frame rate (a third of that without optical flow:
  the Kalman prediction alone drifts). Measured (benchmarks/README.md): two frames of flow cost PETS09 (7 fps)
  about 1.3 MOTA, three frames 3 or more, so the cap stays below that;
- a detection comes sooner when the image propagation says it is losing the boxes (``IntervalTracker``'s
  ``PropagationReport``: few points followed, many boxes left at the Kalman prediction).

``auto`` on a live source runs the detector as often as the machine affords, cap or not: the measured cost of a
detector frame and of a propagated frame give the smallest interval at which the pipeline keeps up with the
source's frame rate (``min_every_for_budget``), and that interval is used. Every frame is tracked instead of
dropped, and no frame is propagated that the detector had time for: saving a call on a live source saves nothing
(an idle core does not come back later), while each propagated frame costs accuracy (benchmarks/README.md), so one
camera on a machine that detects every frame in time loses nothing against plain ``track``. Streams sharing one
detector (``apps.fleet.sharing``) each time their detector calls with the wait for their turn, so the interval of
each grows as the detector fills up.

On files the decisions depend on the frames only (no timings), so a run is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from int8track.tracker.propagation import PropagationReport

AUTO = "auto"
#: Auto on a live source never waits longer than this many frames for a detection, however slow the detector.
MAX_BUDGET_INTERVAL = 30


@dataclass(frozen=True)
class DetectionSchedule:
    """``every``: run the detector on every ``every``-th frame (1: every frame, today's behaviour); None: auto.
    ``flow``: correct the frames between detector calls by optical flow (False: Kalman prediction only)."""

    every: int | None = 1
    flow: bool = True
    max_gap_s: float = 0.2  # auto: at most this long between detector calls (a third without flow) ...
    max_every: int = 6  # ... and at most this many frames
    min_kept_ratio: float = 0.7  # auto: fewer flow points kept than this asks for a detection on the next frame
    max_fallback_share: float = 0.1  # auto: more boxes left at the Kalman prediction than this share, too

    def __post_init__(self) -> None:
        if self.every is not None and (isinstance(self.every, bool) or not isinstance(self.every, int)
                                       or self.every < 1):
            raise ValueError(f"detect every: need a whole number >= 1 or 'auto', got {self.every!r}")
        if not self.max_gap_s > 0 or self.max_every < 1:
            raise ValueError("DetectionSchedule: max_gap_s must be > 0 and max_every >= 1")
        if not 0 <= self.min_kept_ratio <= 1 or not 0 <= self.max_fallback_share <= 1:
            raise ValueError("DetectionSchedule: min_kept_ratio and max_fallback_share must be in [0, 1]")

    @classmethod
    def parse(cls, text: str, flow: bool = True) -> DetectionSchedule:
        """``"3"`` or ``"auto"`` (what ``track --detect-every`` takes); ValueError with a one-line reason."""
        value = str(text).strip().lower()
        if value == AUTO:
            return cls(every=None, flow=flow)
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{text!r} is not a frame interval: give a whole number >= 1 or 'auto'")
        return cls(every=int(value), flow=flow)

    @property
    def every_frame(self) -> bool:
        return self.every == 1

    @property
    def label(self) -> str:
        return AUTO if self.every is None else str(self.every)

    def tracker_cmc(self, cmc: bool | None) -> bool:
        """Whether the tracker compensates camera motion itself (``CmcTracker``; ``cmc``: ``--cmc``/``--no-cmc``,
        None: by default). Only where the detector runs on every frame: between detector calls the optical flow
        fits the camera's motion and moves every track by it, detector frames included (``IntervalTracker``), so
        there the camera is followed without it (and without the flow, not at all: ``--no-flow``)."""
        return self.every_frame and cmc is not False

    def max_interval(self, fps: float | None) -> int:
        """The most frames between detector calls (fixed: ``every``; auto: ``max_gap_s`` at ``fps``)."""
        if self.every is not None:
            return self.every
        # without the image, nothing says when the prediction drifts: a third of the gap
        gap_s = self.max_gap_s if self.flow else self.max_gap_s / 3
        if not fps or fps <= 0:
            return min(self.max_every, 3 if self.flow else 1)
        return max(1, min(self.max_every, int(fps * gap_s + 1e-9)))


def min_every_for_budget(detect_s: float, step_s: float, fps: float) -> int:
    """The smallest interval K at which one detector frame and K - 1 propagated frames take no longer than K
    frame periods (the pipeline keeps up with a live source); 1 when even detecting every frame keeps up."""
    period = 1.0 / fps
    if detect_s <= period:
        return 1
    if step_s >= period:
        return 10 ** 6  # propagation alone cannot keep up: detect as rarely as the schedule allows
    return math.ceil((detect_s - step_s) / (period - step_s))


class DetectionScheduler:
    """Decides, frame by frame, whether the detector runs (see the module docstring)."""

    def __init__(self, schedule: DetectionSchedule, fps: float | None, live: bool = False) -> None:
        self.schedule = schedule
        self.fps = fps
        self.live = live
        self.max_interval = schedule.max_interval(fps)
        self._since: int | None = None  # frames since the last detector call; None before the first
        self._detect_s: float | None = None
        self._step_s: float | None = None

    def due(self, report: PropagationReport | None, frames_advanced: int = 1) -> bool:
        """Whether the detector runs on this frame; ``report`` is the last propagated frame's (None after a
        detection), ``frames_advanced`` the source frames since the previous call (more when a live reader
        dropped some)."""
        if self._since is None:
            return True
        since = self._since + frames_advanced
        if self.live and self.schedule.every is None:  # as often as the machine affords (module docstring)
            return since >= self.min_interval()
        if since >= self.max_interval:
            return True
        if self.schedule.every is not None:
            return False
        return report is not None and self._unreliable(report)

    def min_interval(self) -> int:
        """Auto on a live source: the budget's smallest interval (1 until a detector call was measured; a
        propagated frame counts as free until one was measured); at most ``MAX_BUDGET_INTERVAL``."""
        if self.schedule.every is not None or not self.live or self.fps is None or self._detect_s is None:
            return 1
        return min(MAX_BUDGET_INTERVAL, min_every_for_budget(self._detect_s, self._step_s or 0.0, self.fps))

    def record(self, detected: bool, seconds: float, frames_advanced: int = 1) -> None:
        """After a frame: whether it was detected and how long the frame's detection or propagation took."""
        self._since = 0 if detected else (self._since or 0) + frames_advanced
        previous = self._detect_s if detected else self._step_s
        smoothed = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        if detected:
            self._detect_s = smoothed
        else:
            self._step_s = smoothed

    def _unreliable(self, report: PropagationReport) -> bool:
        if report.boxes == 0:
            return False
        return (report.kept_ratio < self.schedule.min_kept_ratio
                or report.fallback / report.boxes > self.schedule.max_fallback_share)
