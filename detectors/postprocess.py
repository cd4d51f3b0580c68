"""Raw head output -> boxes in frame pixels, in float numpy (kept out of int8 by design).

Raw layouts (B=1):
* YOLOX  (1, A, 5+C): per location ``raw_cx, raw_cy, raw_w, raw_h`` (regression, not decoded),
  ``sigmoid(obj)``, ``sigmoid(cls)``; locations ordered level (stride 8, 16, 32) -> y -> x.
  Decoding: xy = (raw_xy + grid) * stride, wh = exp(raw_wh) * stride.
* YOLOv5 (1, A, 5+C): ``sigmoid`` of all channels, locations ordered level -> anchor -> y -> x
  (the order of the official Detect layer). Decoding: xy = (s_xy * 2 - 0.5 + grid) * stride,
  wh = (s_wh * 2)^2 * anchor (anchors in input pixels).
Then score = obj * best class probability, confidence filter, class-aware NMS, undo letterbox, clip.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

import numpy as np

from .nms import batched_nms
from .spec import ModelSpec


def _cells(input_size: tuple[int, int], stride: int) -> np.ndarray:
    """(ny * nx, 2) integer (x, y) cell offsets of one level, row-major (y outer, x inner) like the heads."""
    yv, xv = np.meshgrid(np.arange(input_size[0] // stride), np.arange(input_size[1] // stride), indexing="ij")
    return np.stack((xv, yv), axis=-1).reshape(-1, 2)


@lru_cache(maxsize=16)
def yolox_grid(input_size: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2) cell offsets (x, y) and (A, 1) strides for all YOLOX locations."""
    cells = [_cells(input_size, stride) for stride in strides]
    stride_col = [np.full((len(c), 1), stride) for c, stride in zip(cells, strides)]
    return np.concatenate(cells).astype(np.float32), np.concatenate(stride_col).astype(np.float32)


@lru_cache(maxsize=16)
def yolov5_grid(input_size: tuple[int, int], strides: tuple[int, ...],
                anchors: tuple[tuple[float, ...], ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, 2) cell offsets, (A, 1) strides and (A, 2) anchor sizes (pixels); level -> anchor -> cell order."""
    grids, stride_col, anchor_wh = [], [], []
    for stride, level_anchors in zip(strides, anchors):
        cells = _cells(input_size, stride)
        for wh in np.asarray(level_anchors, dtype=np.float32).reshape(-1, 2):
            grids.append(cells)
            stride_col.append(np.full((len(cells), 1), stride))
            anchor_wh.append(np.broadcast_to(wh, (len(cells), 2)))
    return (np.concatenate(grids).astype(np.float32), np.concatenate(stride_col).astype(np.float32),
            np.concatenate(anchor_wh).astype(np.float32))


def _anchor_key(spec: ModelSpec) -> tuple[tuple[float, ...], ...]:
    if not spec.anchors:
        raise ValueError(f"{spec.name}: YOLOv5 spec has no anchors")
    return tuple(tuple(float(v) for v in level) for level in spec.anchors)


def _expected_locations(spec: ModelSpec) -> int:
    # YOLOv5 specs carry anchors (type-only cast: a spec without them still fails here, as before)
    per_cell = 1 if spec.family == "yolox" else len(cast("list[list[float]]", spec.anchors)[0]) // 2
    return sum((spec.input_size[0] // s) * (spec.input_size[1] // s) * per_cell for s in spec.strides)


def postprocess(raw: np.ndarray, meta: dict[str, Any], spec: ModelSpec, conf_thresh: float, nms_thresh: float,
                classes: list[int] | None = None) -> np.ndarray:
    """Raw (1, A, 5+C) -> (N, 6) float32 x1, y1, x2, y2, score, class in frame pixels, by decreasing score."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 3 or raw.shape[0] != 1:
        raise ValueError(f"{spec.name}: raw output must be (1, A, 5+C), got {raw.shape}")
    raw = raw[0]
    expected = _expected_locations(spec)
    if raw.shape != (expected, 5 + spec.num_classes):
        raise ValueError(f"{spec.name}: raw output has {raw.shape} rows x channels, "
                         f"expected ({expected}, {5 + spec.num_classes})")
    # score = obj * cls <= obj: rows with obj below the threshold cannot pass (the official YOLOv5 pre-filter)
    rows = np.flatnonzero(raw[:, 4] >= conf_thresh)
    class_id = raw[rows, 5:].argmax(axis=1)
    score = raw[rows, 4] * raw[rows, 5 + class_id]
    keep = score >= conf_thresh
    if classes is not None:
        keep &= np.isin(class_id, classes)
    rows, class_id, score = rows[keep], class_id[keep], score[keep]
    boxes = _cxcywh_to_xyxy(decode(raw[rows], spec, rows))
    kept = batched_nms(boxes, score, class_id, nms_thresh)
    boxes, score, class_id = boxes[kept], score[kept], class_id[kept]
    boxes = _to_frame(boxes, meta)
    return np.concatenate([boxes, score[:, None], class_id[:, None]], axis=1).astype(np.float32)


def decode(raw_kept: np.ndarray, spec: ModelSpec, keep: np.ndarray) -> np.ndarray:
    """cx, cy, w, h in input pixels of the locations with indices (or boolean mask) ``keep``; ``raw_kept`` their rows.

    Only the kept rows are decoded, which is cheap when few pass the confidence threshold.
    """
    if spec.family == "yolox":
        grid, strides = yolox_grid(spec.input_size, spec.strides)
        xy = (raw_kept[:, :2] + grid[keep]) * strides[keep]
        wh = np.exp(raw_kept[:, 2:4]) * strides[keep]
    else:
        grid, strides, anchor_wh = yolov5_grid(spec.input_size, spec.strides, _anchor_key(spec))
        xy = (raw_kept[:, :2] * 2 - 0.5 + grid[keep]) * strides[keep]
        wh = (raw_kept[:, 2:4] * 2) ** 2 * anchor_wh[keep]
    return np.concatenate([xy, wh], axis=1)


def _cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = cxcywh[:, 2:4] / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


def _to_frame(boxes: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Undo the letterbox (padding offset, then scale) and clip to the frame."""
    pad_x, pad_y = meta["pad"]
    height, width = meta["frame_shape"]
    boxes = (boxes - np.array([pad_x, pad_y, pad_x, pad_y], dtype=boxes.dtype)) / meta["scale"]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes
