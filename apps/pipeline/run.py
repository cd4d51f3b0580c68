"""The frame pipeline shared by the ``track`` program and the benchmarks.

read (background thread) -> preprocess -> infer -> postprocess (decode + NMS) -> tracker update (Kalman
predict, association, bookkeeping) -> draw -> write (background thread). Every stage of every frame is timed
by a :class:`~apps.profiler.StageProfiler`.

:func:`track_frames` is the embeddable core (``for frame_id, frame, tracks in track_frames(...)``);
:func:`run_tracking` adds the outputs: MOTChallenge results, annotated video, optional window, progress bar.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from int8track.apps.io.mot_results import MotResultWriter
from int8track.apps.io.read_ahead import ReadAhead
from int8track.apps.io.sources import FrameSource, SourceError, open_source
from int8track.apps.io.writers import TracksJsonWriter, VideoWriterThread
from int8track.apps.pipeline.drawing import TrailHistory, draw_tracks
from int8track.apps.pipeline.frame_size import FrameSizeWatch
from int8track.apps.pipeline.live_report import LatencyRecorder, reception_info
from int8track.apps.pipeline.profiler import StageProfiler, TimingReport
from int8track.apps.pipeline.progress import Progress
from int8track.apps.pipeline.stages import (
    PROPAGATION_BUFFER,
    STAGES,
    ScheduleCounts,
    ScheduledTracker,
    detect,
    update_tracker,
)
from int8track.frames import FALLBACK_FRAME_RATE
from int8track.tracker.schedule import DetectionSchedule


@dataclass(frozen=True)
class OutputFilter:
    """Which tracks are drawn and written, as in the official demo: area above ``min_box_area`` and
    width/height not above ``aspect_ratio_thresh`` (people are taller than wide). The tracker itself keeps all."""

    min_box_area: float = 10.0
    aspect_ratio_thresh: float = 1.6

    def __call__(self, tracks: np.ndarray) -> np.ndarray:
        w = tracks[:, 2] - tracks[:, 0]
        h = tracks[:, 3] - tracks[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = (w * h > self.min_box_area) & ~(w / h > self.aspect_ratio_thresh)
        return tracks[keep]


def track_frames(
    source: FrameSource | str | int,
    detector,
    tracker,
    *,
    classes: Sequence[int] | None = None,
    profiler: StageProfiler | None = None,
    max_frames: int | None = None,
    reader: ReadAhead | None = None,
    schedule: DetectionSchedule | None = None,
    counts: ScheduleCounts | None = None,
    sizes: FrameSizeWatch | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(frame_id, frame_bgr, tracks)`` for every frame; frame ids are 1-based source positions.

    ``tracks`` is the tracker's (M,8) output (x1,y1,x2,y2,track_id,score,class,det_index). ``classes``, when
    given, replaces the detector's class list for this run (``detector.with_classes(classes)``, so they are
    filtered before NMS); None keeps the detector's own. ``schedule`` (default: every frame) runs the detector
    on some frames only; the others are tracked by image propagation (``tracker.propagation``) and their rows
    have ``det_index`` -1; ``counts`` and ``sizes`` (``apps.pipeline.frame_size``), if given, are filled in.
    Time the caller spends in its loop body can be added to the same frame's record with ``profiler.stage(...)``.
    If the source fails or a live source stops, the frames read so far are yielded, then SourceError is raised.
    """
    profiler = profiler if profiler is not None else StageProfiler(STAGES)
    if reader is None:
        reader = ReadAhead(source if isinstance(source, FrameSource) else open_source(source), max_frames=max_frames)
    schedule = schedule or DetectionSchedule()
    counts, sizes = counts if counts is not None else ScheduleCounts(), sizes or FrameSizeWatch()
    live = reader.source.info.is_live
    fps = reader.source.info.fps or FALLBACK_FRAME_RATE
    previous_index: int | None = None
    previous_time: float | None = None
    try:  # the reader's thread is running: a bad class list must still close it
        if classes is not None:
            detector = detector.with_classes(classes)
        if not schedule.every_frame:
            stepper = ScheduledTracker(tracker, schedule, reader.source.info, counts)
        for frame in reader:
            profiler.begin_frame()
            profiler.add("read", frame.read_ns)
            gap = 1 if previous_index is None else frame.index - previous_index
            previous_index = frame.index
            resized = sizes.check(frame.index + 1, frame.image, tracker)
            if schedule.every_frame:
                # live: the Kalman filter steps by the time since the last frame (drops, outages), not frames
                timestamp = frame.timestamp_s if live else None
                detections = detect(detector, frame.image, profiler)
                tracks = update_tracker(tracker, detections, profiler, gap, frame.image, timestamp=timestamp)
                counts.detector_calls += 1
            else:
                if live and previous_time is not None:  # frames that time says passed (drops, an outage)
                    gap = max(gap, round((frame.timestamp_s - previous_time) * fps))
                tracks = stepper.track(frame.image, detector, profiler, gap, detect_now=resized)
            previous_time = frame.timestamp_s if live else None
            yield frame.index + 1, frame.image, tracks
            profiler.end_frame()
    finally:
        reader.close()
    if reader.error is not None:
        raise reader.error


@dataclass
class RunResult:
    """What a :func:`run_tracking` call produced."""

    report: TimingReport
    frames: int
    dropped: int
    error: SourceError | None
    results_path: Path | None
    video_path: Path | None
    interrupted_at: int | None = None  # last frame id processed when a stop was requested, else None
    tracks_path: Path | None = None
    # (N, 2) frame id, track id of the MOT rows no detection placed (between detector calls), in order; None
    # when every frame was detected. ``--interpolate`` redraws them from the detections on both sides.
    propagated: np.ndarray | None = None


@dataclass(frozen=True)
class OutputPaths:
    """Where :func:`run_tracking` writes; None skips that output."""

    results: Path | None = None
    video: Path | None = None
    tracks: Path | None = None


class _FrameOutputs:
    """The files and the window of one run: each frame's kept tracks go to every one of them."""

    def __init__(self, stack: contextlib.ExitStack, paths: OutputPaths, source: FrameSource, detector,
                 profiler: StageProfiler, show: bool, mot_text: str = "") -> None:
        self.results = stack.enter_context(MotResultWriter(paths.results)) if paths.results is not None else None
        if self.results is not None and mot_text:  # a resumed run: the lines its first part wrote
            self.results.write_text(mot_text)
        class_names = getattr(getattr(detector, "spec", None), "class_names", ())
        self.tracks = stack.enter_context(TracksJsonWriter(paths.tracks, class_names)) if paths.tracks else None
        if show:
            stack.callback(cv2.destroyAllWindows)
        self._paths, self._source, self._profiler, self._show = paths, source, profiler, show
        self._trails = TrailHistory()
        self._fps_meter = _RateMeter()
        self.video: VideoWriterThread | None = None
        self._propagated: list[np.ndarray] = []

    @property
    def propagated(self) -> np.ndarray | None:
        """(N, 2) frame id, track id of the MOT rows written without a detection; None if there were none."""
        return np.concatenate(self._propagated) if self._propagated else None

    def write(self, frame_id: int, image: np.ndarray, shown: np.ndarray) -> bool:
        """Write one frame's tracks everywhere; False once the user closed the window."""
        if self.results is not None:
            self.results.write(frame_id, shown)
            if shown.shape[1] >= 8 and (guessed := shown[:, 7] < 0).any():
                ids = shown[guessed, 4].astype(np.int64)
                self._propagated.append(np.column_stack((np.full(ids.size, frame_id, np.int64), ids)))
        if self.tracks is not None:
            self.tracks.write(frame_id, shown)
        self._fps_meter.tick()
        if self._paths.video is None and not self._show:
            return True
        with self._profiler.stage("draw"):
            self._trails.update(shown)
            draw_tracks(image, shown, self._trails, self._fps_meter.rate)
        if self._paths.video is not None:
            self.video = self.video or _open_video(self._paths.video, self._source, image, self._profiler)
            if image.shape[:2] != self.video.shape:  # a video file has one frame size: the first frame's
                image = cv2.resize(image, self.video.shape[::-1], interpolation=cv2.INTER_AREA)
            self.video.write(self._profiler.num_frames, image)
        return not self._show or _show(image, self._source.info.name)


def run_tracking(
    source: FrameSource,
    detector,
    tracker,
    *,
    classes: Sequence[int] | None = None,
    output_filter: OutputFilter = OutputFilter(),
    results_path: Path | None = None,
    video_path: Path | None = None,
    tracks_path: Path | None = None,
    show: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
    info: dict | None = None,
    should_stop: Callable[[], bool] | None = None,
    schedule: DetectionSchedule | None = None,
    resume: Resume | None = None,
) -> RunResult:
    """Run the whole pipeline over ``source``: MOT results, per-frame tracks as JSON lines and annotated video
    (each optional, all atomic); ``classes`` and ``schedule`` as in :func:`track_frames`. A source that fails
    mid-run does not raise: the frames read are written and the error returned in :attr:`RunResult.error`.

    ``should_stop`` is polled after every frame; once True the reader stops, the frames already decoded are
    finished and every output is written as for a normal end (how ``track`` honours Ctrl-C and SIGTERM).
    ``resume`` continues a run that stopped after a frame (:class:`Resume`; the tracker is the restored one).
    """
    profiler = StageProfiler(STAGES)
    schedule = schedule or DetectionSchedule()
    resume = resume or Resume()
    reader = _open_reader(source, schedule, resume, max_frames)
    total = source.info.frame_count if max_frames is None else min(max_frames, source.info.frame_count or max_frames)
    counts, sizes = ScheduleCounts(), FrameSizeWatch()
    frames = track_frames(source, detector, tracker, classes=classes, profiler=profiler, reader=reader,
                          schedule=schedule, counts=counts, sizes=sizes)
    stop, latency = _StopState(), LatencyRecorder()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        outputs = _FrameOutputs(stack, OutputPaths(results_path, video_path, tracks_path), source, detector,
                                profiler, show, resume.mot_text)
        bar = stack.enter_context(Progress(total, source.info.name, enabled=progress))

        def after(frame_id: int, shown: np.ndarray) -> None:
            latency.written(reader.pop_receipt_ns(frame_id - 1))
            if resume.on_frame is not None:
                resume.on_frame(frame_id, shown)
            bar.update(1)
            stop.after_frame(frame_id, should_stop, reader)

        error = _write_frames(frames, outputs, output_filter, after)
    written_video = outputs.video.close(keep=True) if outputs.video is not None else None
    run_info = {**(info or {}), **_throughput_info(source, profiler.num_frames, time.perf_counter() - start,
                                                   reader.dropped), **stop.info(), **counts.info(schedule),
                **reception_info(reader, profiler.num_frames, latency), **sizes.info(detector)}
    if outputs.video is not None:
        run_info["video_codec"] = outputs.video.codec
    return RunResult(report=profiler.report(run_info), frames=profiler.num_frames, dropped=reader.dropped,
                     error=error, results_path=results_path if outputs.results is not None else None,
                     video_path=written_video, interrupted_at=stop.interrupted_at,
                     tracks_path=tracks_path if outputs.tracks is not None else None,
                     propagated=outputs.propagated)


def _write_frames(frames: Iterator[tuple[int, np.ndarray, np.ndarray]], outputs: _FrameOutputs,
                  output_filter: OutputFilter, after: Callable[[int, np.ndarray], None]) -> SourceError | None:
    """Every frame's kept tracks to the outputs; a source that fails ends the loop and its error is returned
    (the frames read are written), any other exception deletes the unfinished video and propagates."""
    try:
        for frame_id, image, tracks in frames:
            shown = output_filter(tracks)
            if not outputs.write(frame_id, image, shown):
                break
            after(frame_id, shown)
    except SourceError as exc:
        return exc
    except BaseException:
        if outputs.video is not None:
            outputs.video.close(keep=False)
        raise
    return None


def _open_reader(source: FrameSource, schedule: DetectionSchedule, resume: Resume,
                 max_frames: int | None) -> ReadAhead:
    """The read-ahead thread, past the frames a resumed run has done.

    A live source with the detector on every frame keeps one frame (always the newest). Between detector calls
    the frames are cheap to track, so a buffer absorbs the detector's frame and none is dropped."""
    buffer = None if schedule.every_frame else PROPAGATION_BUFFER
    done = resume.skip(source)
    return ReadAhead(source, max_buffer=buffer, first_index=done,
                     max_frames=None if max_frames is None else max(0, max_frames - done))


@dataclass(frozen=True)
class Resume:
    """Continuing a run after frame ``frame_id`` (0: a fresh run): a recorded source is advanced past the frames
    done (a live one goes on with the next frame received), frame ids continue from there, ``mot_text`` (the MOT
    lines already written) opens the results file; ``on_frame(frame_id, kept_tracks)`` is called after each
    frame's outputs are written (for snapshots)."""

    frame_id: int = 0
    mot_text: str = ""
    on_frame: Callable[[int, np.ndarray], None] | None = None

    def skip(self, source: FrameSource) -> int:
        """Read past the frames done on a recorded source; returns the index of the next frame."""
        if not source.info.is_live:
            source.skip(self.frame_id)
        return self.frame_id


class _StopState:
    """Where a run was when a stop was asked for, and the last frame it finished after that."""

    def __init__(self) -> None:
        self.requested_after: int | None = None  # the frame being finished when the stop was asked for
        self.last_frame_id = 0

    def after_frame(self, frame_id: int, should_stop: Callable[[], bool] | None, reader: ReadAhead) -> None:
        self.last_frame_id = frame_id
        if self.requested_after is None and should_stop is not None and should_stop():
            self.requested_after = frame_id
            reader.stop()  # the loop drains what is already decoded, then ends normally

    @property
    def interrupted_at(self) -> int | None:
        return self.last_frame_id if self.requested_after is not None else None

    def info(self) -> dict:
        if self.requested_after is None:
            return {"interrupted": False}
        # the last frame processed comes after the frames already decoded when the stop was asked for
        return {"interrupted": True, "stop_requested_after_frame": self.requested_after,
                "interrupted_at_frame": self.last_frame_id}


def _throughput_info(source: FrameSource, frames: int, wall_s: float, dropped: int) -> dict:
    """End-to-end rate and whether it kept up with the source's frame rate."""
    fps = frames / wall_s if wall_s > 0 else 0.0
    info = {
        "source": source.info.display,
        "frames": frames,
        "wall_s": wall_s,
        "end_to_end_fps": fps,
        "source_fps": source.info.fps,
        "dropped_frames": dropped,
        # live: frames dropped to stay current and a stop is an error; otherwise every frame, normal end
        "read_mode": "live" if source.info.is_live else "every frame",
    }
    if source.info.is_live:
        info["kept_up"] = dropped == 0
    elif source.info.fps:
        info["kept_up"] = fps >= source.info.fps
    return info


def _open_video(path: Path, source: FrameSource, first: np.ndarray, profiler: StageProfiler) -> VideoWriterThread:
    height, width = first.shape[:2]
    return VideoWriterThread(
        path, source.info.fps or FALLBACK_FRAME_RATE, (width, height),
        on_written=lambda index, ns: profiler.add_to_frame(index, "write", ns),
    )


def _show(image: np.ndarray, title: str) -> bool:
    """Display a frame; False once the user pressed q or Esc."""
    cv2.imshow(title, image)
    return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)


class _RateMeter:
    """Frames per second over the last ``window`` frames, for the on-frame overlay."""

    def __init__(self, window: int = 30) -> None:
        self._times: list[float] = []
        self._window = window

    def tick(self) -> None:
        self._times.append(time.perf_counter())
        del self._times[: -self._window - 1]

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])
