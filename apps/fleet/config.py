"""The fleet's settings and units of work: the model every worker loads, how streams run, one job per source."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from int8track.apps.pipeline.run import OutputFilter
from int8track.detectors import load_detector
from int8track.tracker import TrackerConfig
from int8track.tracker.schedule import AUTO, DetectionSchedule


class FleetError(Exception):
    """A problem with the fleet's command line or source list; printed as one line."""


@dataclass(frozen=True)
class ModelRef:
    """The one model file every worker loads, and how: ``path`` is a weights file (fp32) or the int8 ONNX file
    the driver calibrated; thresholds None keep the model's own; ``classes`` None keeps all."""

    path: str
    precision: str = "fp32"
    conf_thresh: float | None = None
    nms_thresh: float | None = None
    classes: tuple[int, ...] | None = None
    batched_path: str | None = None  # the same model with a dynamic batch dimension (``apps.batching``)
    # (h, w) every worker runs at: fitted to the first source's frames (``--imgsz``); None keeps the file's own
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be fp32 or int8, not {self.precision!r}")

    def load(self, num_threads: int | None):
        """The detector (ONNX Runtime, ``num_threads`` intra-op threads)."""
        detector = load_detector(self.path, backend="onnxruntime", num_threads=num_threads,
                                 conf_thresh=self.conf_thresh, nms_thresh=self.nms_thresh)
        if self.input_size is not None:  # fp32: exported at that size once (cached); int8: already that size
            detector = detector.with_input_size(self.input_size)
        return detector.with_classes(None if self.classes is None else list(self.classes))


@dataclass(frozen=True)
class FleetConfig:
    """How the streams run. ``threads`` is the inference threads of the whole pool (None: one per core), divided
    evenly between the ``workers`` (None: one per core, at most one per stream)."""

    workers: int | None = None
    threads: int | None = None
    max_frames: int | None = None
    fps: float | None = None
    write_video: bool = True
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    output_filter: OutputFilter = field(default_factory=OutputFilter)
    batch: bool = False  # a worker runs its streams' frames through the detector as one batch
    # when the detector runs (``--detect-every``); None: every frame for files, auto for live sources
    schedule: DetectionSchedule | None = None
    # camera motion compensation (``--cmc``/``--no-cmc``); None: on for the streams detected on every frame
    cmc: bool | None = None
    # each stream sends its tracker state this often, so a stream whose worker dies resumes where it was
    snapshot_every_s: float = 5.0
    # the pool keeps one more worker started, its model loaded, to take over the streams of a worker that dies
    # (a resume then waits for no process start); it costs a process and a model's memory while nothing fails
    spare_worker: bool = False
    # a Ray actor that the cluster cannot place (too few free CPUs) waits forever: its streams fail after this
    actor_start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("workers", "threads", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, not {self.fps}")
        if self.snapshot_every_s < 0:
            raise ValueError(f"snapshot_every_s must be >= 0, not {self.snapshot_every_s}")
        if self.cmc is not None and not isinstance(self.cmc, bool):
            raise ValueError(f"cmc must be true, false or None, not {self.cmc!r}")
        if self.actor_start_timeout_s <= 0:
            raise ValueError(f"actor_start_timeout_s must be positive, not {self.actor_start_timeout_s}")

    def schedule_for(self, live: bool) -> DetectionSchedule:
        """The schedule of one stream: the configured one, else auto for a live source and every frame for a
        recorded one."""
        if self.schedule is not None:
            return self.schedule
        return DetectionSchedule.parse(AUTO) if live else DetectionSchedule()

    def cmc_for(self, live: bool) -> bool:
        """Whether a stream's tracker compensates camera motion: as configured (None: yes), and only where its
        detector runs on every frame; between detector calls the schedule's optical flow follows the camera."""
        return self.schedule_for(live).tracker_cmc(self.cmc)

    def with_batching(self) -> FleetConfig:
        return replace(self, batch=True)

    def num_workers(self, num_streams: int) -> int:
        return max(1, min(self.workers or os.cpu_count() or 1, num_streams))

    def threads_per_worker(self, num_streams: int) -> int:
        return max(1, (self.threads or os.cpu_count() or 1) // self.num_workers(num_streams))


@dataclass(frozen=True)
class ResumePoint:
    """Where a restarted stream continues: after ``frame_id`` (a recorded source skips that many frames; a live
    one goes on with the next frame received), with the tracker's snapshot and the MOT lines already written."""

    frame_id: int
    tracker_state: bytes
    mot_text: str
    motion_state: bytes = b""  # ``CmcTracker.motion_state`` where the stream compensates camera motion


@dataclass(frozen=True)
class StreamJob:
    """One source to serve: its id (unique in the fleet), what the user typed, and its output folder;
    ``resume`` when it continues a run whose worker died."""

    source_id: str
    location: str
    output_dir: str
    resume: ResumePoint | None = None
