"""Frame sources (video file, image folder, MOT sequence, camera, stream) and a read-ahead thread.

``open_source(spec)`` turns what the user typed into a :class:`FrameSource`. :class:`ReadAhead` decodes on a
background thread into a bounded buffer so decoding overlaps inference. For a file it never drops a frame
(the reader waits when the buffer is full); for a live source (camera, stream) it keeps only the latest frames
and counts the ones it dropped, so a slow pipeline does not fall ever further behind real time.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from int8track.apps.io.motchallenge import load_sequence
from int8track.apps.io.urls import (
    DEFAULT_CONNECT_TIMEOUT_S,
    LIVE_SCHEMES,
    STREAM_SCHEMES,
    open_url_capture,
    redact_url,
    stream_name,
)
from int8track.frames import IMAGE_EXTENSIONS, list_images, read_image


class SourceError(RuntimeError):
    """A source that could not be opened or that stopped delivering frames; the message says which and why."""


class SourceInterrupted(SourceError):
    """A live source stopped mid-run; the frames read before it stopped are still valid."""


@dataclass(frozen=True)
class SourceInfo:
    """What the pipeline needs to know about a source."""

    name: str  # short name for output folders and files (the stem)
    kind: str  # "video", "images", "mot", "camera" or "stream"
    location: str  # path, camera index or URL as given
    fps: float | None  # nominal frame rate, None when unknown (an image folder)
    frame_count: int | None  # None when unknown (live sources)
    is_live: bool

    @property
    def display(self) -> str:
        """The location as it may be printed or stored: credentials in a URL replaced by ``***``."""
        return redact_url(self.location)


class FrameSource(ABC):
    """Frames in order; :meth:`read` returns ``None`` at the end."""

    info: SourceInfo

    @abstractmethod
    def read(self) -> np.ndarray | None: ...

    def close(self) -> None:  # noqa: B027 (a source with nothing to release need not override it)
        """Release the underlying device or file."""

    def skip(self, count: int) -> int:
        """Read past up to ``count`` frames (a resumed run's frames done); returns how many there were (fewer at
        the end). Reads and decodes them: a source that can tell its frames apart without decoding overrides it."""
        skipped = 0
        while skipped < count and self.read() is not None:
            skipped += 1
        return skipped

    def interrupt(self) -> None:
        """Ask a :meth:`read` blocked on another thread (waiting to reconnect) to return None soon; a wrapper (a
        source with a ``source``, e.g. the peeked first frame) passes it on."""
        inner = getattr(self, "source", None)
        if isinstance(inner, FrameSource):
            inner.interrupt()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CaptureSource(FrameSource):
    """A video file, camera or stream read with ``cv2.VideoCapture``.

    A frame that arrives but does not decode is skipped and counted in :attr:`decode_errors`, unless
    ``max_decode_errors`` come in a row (then the source is taken to have ended).
    """

    def __init__(self, capture: cv2.VideoCapture, info: SourceInfo, max_decode_errors: int = 25) -> None:
        self._capture = capture
        self.info = info
        self.decode_errors = 0
        self._max_decode_errors = max_decode_errors

    def read(self) -> np.ndarray | None:
        # grab() receives and decodes, retrieve() converts: a grab that fails is the end (or a lost stream); a
        # retrieve that fails after a good grab is one bad frame, which a live reader skips and counts
        for _ in range(self._max_decode_errors):
            if not self._capture.grab():
                return None
            ok, frame = self._capture.retrieve()
            if ok and frame is not None:
                return frame
            self.decode_errors += 1
        return None

    def reported_frame_count(self) -> int | None:
        """The container's frame count, None when it states none (a live feed, some streamed formats)."""
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return count if count > 0 else None

    def close(self) -> None:
        self._capture.release()


class ImageSequenceSource(FrameSource):
    """Image files read in the given order."""

    def __init__(self, paths: list[Path], info: SourceInfo) -> None:
        self.paths = paths
        self.info = info
        self._next = 0

    def read(self) -> np.ndarray | None:
        if self._next >= len(self.paths):
            return None
        path = self.paths[self._next]
        self._next += 1
        try:
            return read_image(path)
        except ValueError as exc:
            raise SourceError(str(exc)) from None

    def skip(self, count: int) -> int:
        """Past ``count`` images without decoding them: each file is one frame (a video's decode errors, which
        ``read`` skips without counting, make its frames known only by decoding them)."""
        skipped = max(0, min(count, len(self.paths) - self._next))
        self._next += skipped
        return skipped


def open_source(spec: str | int | Path, fps: float | None = None, live: bool | None = None,
                connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> FrameSource:
    """Open a video file, image folder, MOT sequence folder (``img1/`` + ``seqinfo.ini``), camera index or URL.

    ``fps`` overrides the source's own frame rate (needed for image folders, which have none). ``live`` overrides
    the guess of whether the source is live (its reader then drops frames to stay current, and a stop is an
    error) or recorded (every frame is read, the end is normal). The guess: camera indices and RTSP/RTMP/UDP/TCP
    URLs are live; other URLs are live only when the container states no frame count; paths never are.
    ``connect_timeout_s`` bounds how long opening a URL, and then each read from it, may block.
    Raises FileNotFoundError for a missing path and SourceError for anything that cannot be read.
    """
    text = str(spec)
    if isinstance(spec, int) or text.isdigit():
        info = SourceInfo(f"camera{text}", "camera", text, fps, None, True if live is None else live)
        return _open_capture(int(text), info, fps)
    if text.lower().startswith(STREAM_SCHEMES):
        info = SourceInfo(stream_name(text), "stream", text, fps, None, True)
        return _open_url(text, info, fps, live, connect_timeout_s)
    source = _open_path(text, fps)
    if live:
        source.info = replace(source.info, is_live=True)
    return source


def _open_path(text: str, fps: float | None) -> FrameSource:
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: source not found (expected a video, image folder, MOT sequence, "
                                "camera index or URL)")
    if path.is_dir():
        if (path / "img1").is_dir():
            return _open_mot_sequence(path, fps)
        images = _list_images(path)
        return ImageSequenceSource(images, SourceInfo(path.name, "images", text, fps, len(images), False))
    return _open_video_file(path, fps)


def _open_capture(target: str | int, info: SourceInfo, fps: float | None,
                  connect_timeout_s: float | None = None) -> CaptureSource:
    if isinstance(target, str) and connect_timeout_s is not None:
        capture = open_url_capture(target, connect_timeout_s)
    else:
        capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        within = f" within {connect_timeout_s:g} s" if connect_timeout_s is not None else ""
        raise SourceError(f"{info.display}: cannot open {info.kind}{within}")
    if fps is None:
        reported = capture.get(cv2.CAP_PROP_FPS)
        info = replace(info, fps=reported if reported and reported > 0 else None)
    return CaptureSource(capture, info)


def _open_url(url: str, info: SourceInfo, fps: float | None, live: bool | None,
              connect_timeout_s: float) -> CaptureSource:
    """A URL: live per :data:`LIVE_SCHEMES` or, for other schemes, when no frame count is known."""
    source = _open_capture(url, info, fps, connect_timeout_s)
    count = source.reported_frame_count()
    if live is None:
        live = url.lower().startswith(LIVE_SCHEMES) or count is None
    source.info = replace(source.info, frame_count=None if live else count, is_live=live)
    return source


def _open_video_file(path: Path, fps: float | None) -> CaptureSource:
    if not _is_readable(path):
        raise SourceError(f"{path}: cannot read file (permission denied)")
    capture = cv2.VideoCapture(str(path))
    ok = capture.isOpened()
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
    if not ok or count == 0 and not capture.grab():
        capture.release()
        raise SourceError(f"{path}: cannot decode as video")
    if count == 0:  # the probing grab consumed a frame; reopen to start at frame one
        capture.release()
        capture = cv2.VideoCapture(str(path))
    reported = capture.get(cv2.CAP_PROP_FPS)
    info = SourceInfo(
        path.stem, "video", str(path), fps or (reported if reported > 0 else None), count or None, False
    )
    return CaptureSource(capture, info)


def _open_mot_sequence(path: Path, fps: float | None) -> ImageSequenceSource:
    sequence = load_sequence(path)
    images = sequence.image_paths()
    info = SourceInfo(path.name, "mot", str(path), fps or sequence.frame_rate, len(images), False)
    return ImageSequenceSource(images, info)


def _list_images(folder: Path) -> list[Path]:
    if not _is_readable(folder):
        raise SourceError(f"{folder}: cannot read folder (permission denied)")
    images = list_images(folder)
    if not images:
        raise SourceError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return images


def _is_readable(path: Path) -> bool:
    return os.access(path, os.R_OK)
