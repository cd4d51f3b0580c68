"""Frame -> network input blob, exactly as each family was trained.

* ``yolox``:        resize by r = min(H/h, W/w) (cv2 INTER_LINEAR), paste at the TOP-LEFT of an
                    (H, W) canvas filled with 114; BGR; 0..255 float. (current official YOLOX ``preproc``)
* ``yolox_legacy``: same canvas, then BGR->RGB, /255, ImageNet mean/std (ByteTrack ``preproc``;
                    the padding is normalised too, as there).
* ``yolov5``:       ``letterbox(auto=False)``: resize to round(w*r) x round(h*r), CENTRED, borders of 114
                    split as round(d/2 -+ 0.1); BGR->RGB; /255. A fixed input size as in the official
                    ONNX path (``detect.py`` on ``.pt`` pads only to a multiple of 32: pass a spec with
                    e.g. input_size (480, 640) for 4:3 frames to get that). Boxes map back with the
                    placed integer (left, top) offsets and r.

Input frames must be uint8. Grey frames ((h, w) or (h, w, 1)) are replicated to 3 channels and
BGRA frames drop alpha; any other shape raises a ValueError.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

PAD_VALUE = 114
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Validate a frame and return it as (h, w, 3) uint8 BGR (grey replicated, alpha dropped)."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame dtype must be uint8 (0..255 BGR as from cv2.imread), got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise ValueError(f"frame must be (h, w), (h, w, 1), (h, w, 3) BGR or (h, w, 4) BGRA, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame is empty (shape {frame.shape})")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2 INTER_LINEAR resize to (w, h) = size, skipped when already that size."""
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def letterbox_top_left(frame: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """YOLOX letterbox: scale by r and paste at (0, 0) of a 114 canvas. Returns (canvas, r)."""
    h, w = frame.shape[:2]
    r = min(input_size[0] / h, input_size[1] / w)
    resized = _resize(frame, (max(int(w * r), 1), max(int(h * r), 1)))  # max: 1-pixel-thin frames
    canvas = np.full((input_size[0], input_size[1], 3), PAD_VALUE, dtype=np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas, r


def letterbox_centred(frame: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[int, int]]:
    """YOLOv5 letterbox (auto=False, scaleup=True). Returns (canvas, r, (left, top))."""
    h, w = frame.shape[:2]
    r = min(input_size[0] / h, input_size[1] / w)
    new_w, new_h = max(int(round(w * r)), 1), max(int(round(h * r)), 1)
    dw, dh = (input_size[1] - new_w) / 2, (input_size[0] - new_h) / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    resized = _resize(frame, (new_w, new_h))
    canvas = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return canvas, r, (left, top)


def _channel_affine(convention: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Per output channel: value = uint8 * scale + offset, and which BGR channel feeds it.

    Every convention is such an affine map of the uint8 canvas, so the blob is written plane by plane
    with one multiply and one add, without full-size float temporaries.
    """
    if convention == "yolox":
        return np.ones(3, np.float32), np.zeros(3, np.float32), (0, 1, 2)
    if convention == "yolov5":
        return np.full(3, 1 / 255.0, np.float32), np.zeros(3, np.float32), (2, 1, 0)
    mean, std = IMAGENET_MEAN.astype(np.float64), IMAGENET_STD.astype(np.float64)
    return (1 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32), (2, 1, 0)


CHANNEL_AFFINE = {name: _channel_affine(name) for name in ("yolox", "yolox_legacy", "yolov5")}


def preprocess(frame: np.ndarray, input_size: tuple[int, int], convention: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Frame (uint8 BGR/grey/BGRA) -> blob (1, 3, H, W) float32 and meta {scale, pad, frame_shape}."""
    if convention not in CHANNEL_AFFINE:
        raise ValueError(f"unknown preprocessing convention {convention!r}, expected one of {sorted(CHANNEL_AFFINE)}")
    frame = as_bgr(frame)
    pad = (0, 0)
    if convention == "yolov5":
        canvas, r, pad = letterbox_centred(frame, input_size)
    else:
        canvas, r = letterbox_top_left(frame, input_size)
    scales, offsets, sources = CHANNEL_AFFINE[convention]
    planes = cv2.split(canvas)
    blob = np.empty((1, 3, *input_size), dtype=np.float32)
    for channel, source in enumerate(sources):
        np.multiply(planes[source], scales[channel], out=blob[0, channel], casting="unsafe")
        if offsets[channel]:
            blob[0, channel] += offsets[channel]
    meta = {"scale": r, "pad": pad, "frame_shape": frame.shape[:2]}
    return blob, meta
