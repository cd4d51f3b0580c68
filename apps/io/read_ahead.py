"""Reading ahead: a source decoded on a background thread into a bounded buffer, with what it received, dropped
and when (a live reader drops its oldest frame rather than fall behind)."""
from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from int8track.apps.io.sources import FrameSource, SourceError, SourceInterrupted


@dataclass
class Frame:
    """One decoded frame: 0-based position in the source, pixels (BGR) and the time decoding took.

    ``received_ns``: when the reader got it (``perf_counter_ns``), where its latency starts. ``timestamp_s``: the
    same in seconds, strictly increasing, the time a live frame gives the tracker (so a lost stream or dropped
    frames count the time that passed; OpenCV's RTSP position is no clock: it jumps back on connecting)."""

    index: int
    image: np.ndarray
    read_ns: int
    received_ns: int = 0
    timestamp_s: float = 0.0


@dataclass
class ReadCounts:
    """What a :class:`ReadAhead` received and what it dropped, and why."""

    received: int = 0
    dropped_buffer_full: int = 0  # a live reader discarded its oldest frame: the pipeline was behind
    receipt_ns: dict[int, int] = field(default_factory=dict, repr=False)  # frame index -> when it was received


class ReadAhead:
    """Decode a source on a background thread into a bounded buffer; iterate to get :class:`Frame` s in order.

    ``drop_oldest`` (default: the source is live) makes a full buffer discard its oldest frame instead of
    waiting, counting it in :attr:`dropped`; with ``max_buffer=1`` the consumer always gets the newest frame.
    After iteration ends, :attr:`error` holds the reason if the source failed or a live source stopped.
    """

    def __init__(
        self,
        source: FrameSource,
        max_buffer: int | None = None,
        drop_oldest: bool | None = None,
        max_frames: int | None = None,
        first_index: int = 0,
    ) -> None:
        self.source = source
        self.first_index = first_index  # the index of the first frame read (a resumed run continues the count)
        self.drop_oldest = source.info.is_live if drop_oldest is None else drop_oldest
        self.max_buffer = max_buffer or (1 if self.drop_oldest else 8)
        self.max_frames = max_frames
        self.frames_read = 0
        self.counts = ReadCounts()
        self.error: SourceError | None = None
        self._outages = wrapped_attribute(source, "outages")  # the reconnecting source's own list, or None
        #: frames this reader had received before each outage of a reconnecting source (0: before it started)
        self.frames_before_outage: list[int] = [0] * len(self._outages or [])
        self._last_timestamp_s: float | None = None
        self._buffer: collections.deque = collections.deque()
        self._condition = threading.Condition()
        self._stopped = False
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped and (self.max_frames is None or self.frames_read < self.max_frames):
                start = time.perf_counter_ns()
                image = self.source.read()
                received = time.perf_counter_ns()
                if image is None:
                    if self.source.info.is_live and not self._stopped:
                        self.error = SourceInterrupted(
                            f"{self.source.info.display}: {self.source.info.kind} stopped delivering frames "
                            f"after {self.frames_read} frames"
                        )
                    break
                if self._outages is not None and len(self._outages) > len(self.frames_before_outage):
                    self.frames_before_outage.append(self.frames_read)  # this frame is the first after it
                index = self.first_index + self.frames_read
                self._push(Frame(index, image, received - start, received, self._timestamp(received)))
                self.frames_read += 1
        except SourceError as exc:
            self.error = exc
        except Exception as exc:  # a decoder failure must reach the consumer, not die silently on this thread
            self.error = SourceError(f"{self.source.info.display}: reading failed: {exc}")
        finally:
            with self._condition:
                self._finished = True
                self._condition.notify_all()

    def _timestamp(self, received_ns: int) -> float:
        last = self._last_timestamp_s  # the tracker needs strictly increasing times
        self._last_timestamp_s = received_ns / 1e9 if last is None else max(received_ns / 1e9, last + 1e-6)
        return self._last_timestamp_s

    @property
    def dropped(self) -> int:
        """Frames a live reader discarded because the buffer was full (the pipeline was behind)."""
        return self.counts.dropped_buffer_full

    @property
    def decode_errors(self) -> int:
        """Frames that arrived but did not decode (skipped by the source, or the source it wraps)."""
        count = wrapped_attribute(self.source, "decode_errors")
        return count if isinstance(count, int) else 0

    def pop_receipt_ns(self, index: int) -> int | None:
        """When frame ``index`` was received (``perf_counter_ns``), forgetting it; None if unknown."""
        with self._condition:
            return self.counts.receipt_ns.pop(index, None)

    def _push(self, frame: Frame) -> None:
        with self._condition:
            self.counts.received += 1
            while len(self._buffer) >= self.max_buffer and not self._stopped:
                if self.drop_oldest:
                    dropped = self._buffer.popleft()
                    self.counts.receipt_ns.pop(dropped.index, None)
                    self.counts.dropped_buffer_full += 1
                    break
                self._condition.wait()
            self._buffer.append(frame)
            self.counts.receipt_ns[frame.index] = frame.received_ns
            self._condition.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._condition:
                while not self._buffer and not self._finished:
                    self._condition.wait()
                if not self._buffer:
                    return
                frame = self._buffer.popleft()
                self._condition.notify_all()
            yield frame

    def stop(self) -> None:
        """Stop reading new frames; iteration still yields the frames already decoded, then ends."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        self.source.interrupt()  # a source waiting to reconnect gives up now

    def close(self) -> None:
        """Stop the reader thread and release the source."""
        self.stop()
        self._thread.join(timeout=10)
        self.source.close()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wrapped_attribute(source: FrameSource, name: str):
    """``source.name``, or that of the source it wraps (``.source``, e.g. a peeked or reconnecting source); None
    when no source in the chain has it."""
    seen: set[int] = set()
    current: object = source
    while isinstance(current, FrameSource) and id(current) not in seen:
        seen.add(id(current))
        value = getattr(current, name, None)
        if value is not None:
            return value
        current = getattr(current, "source", None)
    return None
