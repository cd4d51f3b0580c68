"""The one place that reads frames from disk: image files, image folders, MOT sequence folders and videos.

Tracking (``apps.sources``), MOTChallenge sequences (``apps.motchallenge``), calibration
(``quant.calibration.load_frames``) and the benchmarks all read through here, so a folder that can be tracked
can also be calibrated on: they share one list of image extensions and one decoding path. It sits at the
package root, below every layer that uses it, and imports only numpy and OpenCV (not torch or ONNX Runtime,
which the ``detectors`` package loads), so reading a MOT sequence stays cheap.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

#: Still-image formats OpenCV decodes in every build we ship with.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: what a folder of recordings holds (``track FOLDER`` over many sources)
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".ts")
MOT_IMAGE_DIR = "img1"


#: The frame rate assumed where a source does not state one (image folders, a MOT sequence without it), as in
#: the official ByteTrack demo.
FALLBACK_FRAME_RATE = 30.0

def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path, numbered_only: bool = False) -> list[Path]:
    """Image files in ``folder`` sorted by name (``numbered_only``: only names like ``000001.jpg``, as in MOT)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if is_image(p) and p.is_file() and (not numbered_only or p.stem.isdigit()))


def image_folder(path: str | Path) -> Path:
    """The folder holding a source's images: a MOT sequence's ``img1/``, else the folder itself."""
    path = Path(path)
    return path / MOT_IMAGE_DIR if (path / MOT_IMAGE_DIR).is_dir() else path


def read_image(path: str | Path) -> np.ndarray:
    """A BGR image; ValueError naming the file when it cannot be decoded."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError(f"{path}: cannot read image (corrupt or not an image)")
    return frame


def evenly(count: int, num: int | None, offset: int = 0, step: int | None = None) -> list[int]:
    """Indices into ``count`` items: every ``step``-th from ``offset`` (at most ``num``), or ``num`` evenly spaced."""
    if step is not None:
        indices = list(range(offset, count, step))
        return indices if num is None else indices[:num]
    if num is None or num >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, num)})


def video_frames(path: str | Path, num: int | None = None, offset: int = 0, step: int | None = None,
                 label: str = "video") -> list[np.ndarray]:
    """Frames of a video selected as by :func:`evenly` (all of them by default)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"{label} {path} is not a video OpenCV can decode")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:  # the container states no count: decode everything, then select
            frames = list(_decode_all(capture))
            return [frames[i] for i in evenly(len(frames), num, offset, step)]
        wanted = set(evenly(count, num, offset, step))
        frames, index = [], 0
        while len(frames) < len(wanted):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append(frame)
            index += 1
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{label} {path}: no frames decoded")
    return frames


def _decode_all(capture: cv2.VideoCapture):
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def load_frames(source: str | Path | Sequence[np.ndarray], num: int | None = None, offset: int = 0,
                step: int | None = None, label: str = "frame source") -> list[np.ndarray]:
    """BGR frames from a list of frames, a video file or URL, an image folder or a MOT sequence (its ``img1``),
    ``num`` evenly spaced or every ``step``-th from ``offset`` (see :func:`evenly`).

    ``label`` names the source in errors (e.g. "calibration source"): FileNotFoundError when it does not exist,
    ValueError when it holds no frames or cannot be decoded.
    """
    if not isinstance(source, (str, Path)):
        frames = list(source)
        return [frames[i] for i in evenly(len(frames), num, offset, step)]
    if isinstance(source, str) and "://" in source:  # a recorded video behind a URL
        return video_frames(source, num, offset, step, label=label)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{label} not found: {path}")
    if path.is_file():
        return video_frames(path, num, offset, step, label=label)
    folder = image_folder(path)
    images = list_images(folder)
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {label} folder {folder}")
    return [read_image(images[i]) for i in evenly(len(images), num, offset, step)]
