"""Annotated video output, encoded on a background thread so writing never stalls inference.

Frames go to a hidden temporary file beside the target; :meth:`VideoWriterThread.close` renames it into place
only after a clean finish, so an aborted run never leaves a truncated video that looks complete.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

_STOP = object()


class VideoWriterThread:
    """Encode frames with ``cv2.VideoWriter`` (mp4v) on a thread fed by a bounded queue.

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
        self.frames_written = 0
        self.error: Exception | None = None
        width, height = size
        self._writer = cv2.VideoWriter(str(self.temp_path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
        if not self._writer.isOpened():
            self.temp_path.unlink(missing_ok=True)
            raise OSError(f"{self.path}: cannot open a video writer (mp4v, {width}x{height} @ {fps:g} fps)")
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
