"""A live source that survives outages: when the stream stops, reopen it with backoff and carry on.

:class:`ReconnectingSource` wraps an opened live source (camera, RTSP/RTMP/UDP/TCP stream). When a read fails
it closes the source, tries to open it again (waiting ``initial_backoff_s``, doubling up to ``max_backoff_s``
between tries), logs one line every ``log_every_s`` while the stream is down, and returns the first frame of
the stream once it is back, so the consumer (and its tracker) never notices except for the time that passed.
Each outage is recorded (:attr:`ReconnectingSource.outages`). When the stream stays away for
``timeout_s``, :meth:`~ReconnectingSource.read` raises :class:`~apps.io.sources.SourceInterrupted`, whose
one-line message says so. A recorded file is never wrapped: its end is an end, not an outage.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from int8track.apps.io.sources import FrameSource, SourceError, SourceInterrupted

#: ``track --reconnect-timeout`` default for live sources: long enough for a camera or server to restart.
DEFAULT_RECONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ReconnectPolicy:
    """How long to keep trying (``timeout_s``; 0 means never reconnect), how fast, and how often to log."""

    timeout_s: float = DEFAULT_RECONNECT_TIMEOUT_S
    initial_backoff_s: float = 0.25
    # A refused connection costs a millisecond: retry twice a second, so the stream resumes at most half a second
    # after it is back (plus the stream's own opening: RTSP's probing and the wait for a keyframe, ~1 s here).
    max_backoff_s: float = 0.5
    log_every_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("timeout_s", "initial_backoff_s", "max_backoff_s", "log_every_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"ReconnectPolicy.{name} must be a finite number >= 0, got {value!r}")
        if self.initial_backoff_s <= 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(f"ReconnectPolicy: need 0 < initial_backoff_s ({self.initial_backoff_s}) <= "
                             f"max_backoff_s ({self.max_backoff_s})")


@dataclass(frozen=True)
class Outage:
    """One time the stream was lost: when (seconds since the source was opened), for how long, how many
    reopen attempts it took, and whether it came back (False: the run ended on it)."""

    started_s: float
    duration_s: float
    attempts: int
    recovered: bool
    frames_before: int  # frames this source delivered before the outage (since it was opened)


class ReconnectingSource(FrameSource):
    """``source`` (already open), reopened with ``reopen()`` whenever it stops delivering frames.

    ``reopen`` opens the same location again (raising :class:`SourceError` or ``OSError`` while it is down).
    ``log`` receives the progress lines (credentials already redacted: they use ``info.display``).
    """

    def __init__(self, source: FrameSource, reopen: Callable[[], FrameSource],
                 policy: ReconnectPolicy = ReconnectPolicy(), log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source: FrameSource | None = source
        self.info = source.info
        self.policy = policy
        self.outages: list[Outage] = []
        self._reopen = reopen
        self._log = log or (lambda line: None)
        self._clock = clock
        self._opened_at = clock()
        self._interrupted = threading.Event()
        self._frames = 0
        self._decode_errors_closed = 0  # decode errors of the sources already closed

    @property
    def decode_errors(self) -> int:
        current = getattr(self.source, "decode_errors", 0)
        return self._decode_errors_closed + (current if isinstance(current, int) else 0)

    def read(self) -> np.ndarray | None:
        if self._interrupted.is_set():
            return None
        frame = self._read_current()
        if frame is None and not self._interrupted.is_set():
            frame = self._recover()
        if frame is not None:
            self._frames += 1
        return frame

    def _read_current(self) -> np.ndarray | None:
        if self.source is None:
            return None
        try:
            return self.source.read()
        except SourceError:  # a failing read is a lost stream, like no frame
            return None

    def _recover(self) -> np.ndarray | None:
        """Reopen until a frame comes or ``timeout_s`` passes (then SourceInterrupted)."""
        started = self._clock()
        self._close_current()
        name = self.info.display
        if self.policy.timeout_s == 0:
            self.outages.append(Outage(started - self._opened_at, 0.0, 0, False, self._frames))
            raise SourceInterrupted(f"{name}: {self.info.kind} stopped delivering frames after {self._frames} frames "
                                    "(reconnecting is off: --reconnect-timeout 0)")
        self._log(f"{name}: stream lost after {self._frames} frames; reconnecting for up to "
                  f"{self.policy.timeout_s:g} s")
        backoff, attempts, last_log, reason = self.policy.initial_backoff_s, 0, started, ""
        while True:
            elapsed = self._clock() - started
            if elapsed >= self.policy.timeout_s:
                self.outages.append(Outage(started - self._opened_at, elapsed, attempts, False, self._frames))
                raise SourceInterrupted(f"{name}: stream did not come back within {self.policy.timeout_s:g} s "
                                        f"({attempts} attempts{'; last: ' + reason if reason else ''})")
            if self._interrupted.wait(min(backoff, self.policy.timeout_s - elapsed)):
                self.outages.append(Outage(started - self._opened_at, self._clock() - started, attempts, False,
                                           self._frames))
                return None
            attempts += 1
            frame, reason = self._try_reopen()
            if frame is not None:
                down = self._clock() - started
                self.outages.append(Outage(started - self._opened_at, down, attempts, True, self._frames))
                self._log(f"{name}: stream back after {down:.1f} s ({attempts} attempts)")
                return frame
            if self._clock() - last_log >= self.policy.log_every_s:
                last_log = self._clock()
                self._log(f"{name}: still down after {last_log - started:.0f} s (attempt {attempts}: {reason})")
            backoff = min(backoff * 2, self.policy.max_backoff_s)

    def _try_reopen(self) -> tuple[np.ndarray | None, str]:
        """A frame from a freshly opened source, or None and why not."""
        try:
            with _quiet_opencv():
                source = self._reopen()
        except (SourceError, OSError) as exc:
            return None, _short(str(exc), self.info.location, self.info.display)
        self.source = source
        frame = self._read_current()
        if frame is None:
            self._close_current()
            return None, "opened but no frame"
        return frame, ""

    def _close_current(self) -> None:
        if self.source is not None:
            count = getattr(self.source, "decode_errors", 0)
            self._decode_errors_closed += count if isinstance(count, int) else 0
            self.source.close()
            self.source = None

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self._interrupted.set()
        self._close_current()


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own warning off while a lost stream is reopened: every failed attempt, twice a second, adds
    "backend is generally available but can't be used to capture by name", which says nothing the reconnect log
    does not. FFmpeg's own line with the reason ("Connection refused", "404 Not Found") stays: OpenCV fixes
    FFmpeg's log level when it first loads it, and that line is the one a user needs."""
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(min(level, logging.LOG_LEVEL_ERROR))
    try:
        yield
    finally:
        logging.setLogLevel(level)


def skip_backlog(source: FrameSource, max_s: float = 10.0) -> int:
    """Discard the frames a live source queued while nobody read it (a stream opened, then the model loaded);
    return how many. Tracking them would start the run seconds behind real time, and a live reader would drop
    most of them anyway. Frames are read until one takes at least half a frame period to arrive (the live edge,
    itself discarded too: one frame) or ``max_s`` passes.
    """
    period = 1.0 / source.info.fps if source.info.fps else 1.0 / 30
    skipped, deadline = 0, time.monotonic() + max_s
    while time.monotonic() < deadline:
        start = time.monotonic()
        if source.read() is None:
            break
        skipped += 1
        if time.monotonic() - start >= period / 2:
            break
    return skipped


def _short(message: str, location: str, display: str) -> str:
    """An error message for the log: the location (possibly with credentials) replaced by its display form."""
    return message.replace(location, display).splitlines()[0] if message else "failed"


def outage_info(outages: list[Outage], frames_before: list[int]) -> dict:
    """The ``outages`` part of a run's report: how many, their total and longest length, and each one.

    ``frames_before[i]``: frames the run's reader had received before outage ``i`` (the source's own count,
    ``Outage.frames_before``, also holds frames read before the run began); an outage the run did not come back
    from has none: its ``frames_before`` is then all the frames received.
    """
    each = []
    for i, outage in enumerate(outages):
        each.append({"started_s": round(outage.started_s, 3), "duration_s": round(outage.duration_s, 3),
                     "attempts": outage.attempts, "recovered": outage.recovered,
                     "frames_before": frames_before[i] if i < len(frames_before) else None})
    return {
        "count": len(outages),
        "total_s": round(sum(outage.duration_s for outage in outages), 3),
        "longest_s": round(max((outage.duration_s for outage in outages), default=0.0), 3),
        "each": each,
    }
