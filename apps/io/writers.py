"""Annotated video output, encoded on a background thread so writing never stalls inference.

Frames go to a hidden temporary file beside the target; :meth:`VideoWriterThread.close` renames it into place
only after a clean finish, so an aborted run never leaves a truncated video that looks complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from int8track.files import AtomicTextFile

_STOP = object()
#: Tried in order: H.264 plays in browsers but needs an encoder OpenCV's FFmpeg may lack (pip wheels usually
#: do); MPEG-4 Part 2 (mp4v) is always there but browsers do not play it.
CODECS = ("avc1", "mp4v")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (FFmpeg and OpenCV print from C) while probing a codec that may be missing."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_video_writer(path: Path, fps: float, size: tuple[int, int],
                      codecs: Sequence[str] = CODECS) -> tuple[cv2.VideoWriter, str]:
    """A ``cv2.VideoWriter`` with the first of ``codecs`` that opens, and that codec's name; OSError if none."""
    for codec in codecs:
        with _quiet_stderr():
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), float(fps), size)
        if writer.isOpened():
            return writer, codec
        writer.release()
    path.unlink(missing_ok=True)
    width, height = size
    raise OSError(f"{path}: cannot open a video writer ({'/'.join(codecs)}, {width}x{height} @ {fps:g} fps)")


class VideoWriterThread:
    """Encode frames with ``cv2.VideoWriter`` (H.264 if available, else mp4v: see :attr:`codec`) on a thread
    fed by a bounded queue.

    ``on_written(frame_index, encode_ns)`` is called from the writer thread after each frame, so the caller can
    attribute encode time to the frame that produced it.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int],
        on_written: Callable[[int, int], None] | None = None,
        max_queue: int = 16,
    ) -> None:
        self.path = Path(path)
        self.temp_path = self.path.with_name(f".{self.path.stem}.part{self.path.suffix}")
        self.shape = (int(size[1]), int(size[0]))  # (height, width) of every frame: the encoder drops others
        self.frames_written = 0
        self.error: Exception | None = None
        try:
            self._writer, self.codec = open_video_writer(self.temp_path, fps, size)
        except OSError as exc:
            raise OSError(str(exc).replace(str(self.temp_path), str(self.path))) from None
        self._on_written = on_written
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            index, image = item
            if self.error is not None:
                continue  # drain the queue after a failure so the producer never blocks
            try:
                start = time.perf_counter_ns()
                self._writer.write(image)
                elapsed = time.perf_counter_ns() - start
                self.frames_written += 1
                if self._on_written is not None:
                    self._on_written(index, elapsed)
            except Exception as exc:  # reported by close(); the thread must keep draining
                self.error = exc

    def write(self, index: int, image: np.ndarray) -> None:
        """Queue one frame (BGR, the size given at construction); blocks only while the queue is full."""
        self._queue.put((index, image))

    def close(self, keep: bool = True) -> Path | None:
        """Finish encoding; with ``keep`` rename the file into place and return its path, else delete it."""
        self._queue.put(_STOP)
        self._thread.join()
        self._writer.release()
        if keep and self.error is None:
            os.replace(self.temp_path, self.path)
            return self.path
        self.temp_path.unlink(missing_ok=True)
        if self.error is not None:
            raise OSError(f"{self.path}: writing the video failed: {self.error}") from self.error
        return None


class TracksJsonWriter(AtomicTextFile):
    """Per-frame tracks as JSON lines, written atomically like the MOT file (temporary name, renamed on a
    clean exit from the ``with`` block).

    MOTChallenge's results format has no class column; this file keeps what it cannot: one line per frame,
    ``{"frame": 1, "tracks": [{"id", "box": [x1, y1, x2, y2], "score", "class_id", "class_name",
    "det_index", "predicted"}, ...]}``, where ``det_index`` is the row of that frame's detections the track
    matched, and -1 with ``predicted`` true when no detection placed the box on this frame (a frame the
    detector skipped, ``track --detect-every``: the box was propagated from the image or the motion model).
    """

    def __init__(self, path: str | Path, class_names: Sequence[str] = ()) -> None:
        super().__init__(path)
        self.class_names = list(class_names)

    def write(self, frame_id: int, tracks: np.ndarray) -> None:
        """One frame of tracker output ((M,8): x1,y1,x2,y2,track_id,score,class,det_index)."""
        rows = [self._track(row) for row in tracks]
        self.write_text(json.dumps({"frame": int(frame_id), "tracks": rows}, separators=(",", ":")) + "\n")

    def _track(self, row: np.ndarray) -> dict:
        class_id = int(row[6])
        name = self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)
        return {"id": int(row[4]), "box": [round(float(v), 2) for v in row[:4]], "score": round(float(row[5]), 5),
                "class_id": class_id, "class_name": name, "det_index": int(row[7]), "predicted": bool(row[7] < 0)}

def read_tracks_json(path: str | Path) -> list[dict]:
    """The frames of a :class:`TracksJsonWriter` file, in order; ValueError naming the file and line if bad."""
    frames = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                frames.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    return frames
