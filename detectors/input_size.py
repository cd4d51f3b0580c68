"""Choosing the detector's input size for a source: native, fitted (the default), longer side N, or exact HxW.

The models are fully convolutional, so any (h, w) whose sides are multiples of the largest stride runs. A model's
native size (e.g. 608x1088 for ByteTrack) letterboxes a 4:3 frame with a quarter of the input as padding; the
*fitted* size keeps the scale the native size would use for that frame and trims the padding down to the next
stride multiple, so the boxes the network sees are the same size as at the native input, for less work.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .spec import ModelSpec

MODES = ("fitted", "native", "long", "exact")
_EXACT = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass(frozen=True)
class InputSizeChoice:
    """How to size the input: ``fitted`` (native scale, padding trimmed), ``native`` (the spec's own size),
    ``long`` (longer side ``size[0]`` pixels, the frame's aspect) or ``exact`` (``size`` = (h, w))."""

    mode: str = "fitted"
    size: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"input size mode {self.mode!r}: expected one of {MODES}")
        expected = {"fitted": 0, "native": 0, "long": 1, "exact": 2}[self.mode]
        if len(self.size) != expected or any(int(v) <= 0 for v in self.size):
            raise ValueError(f"input size mode {self.mode!r} takes {expected} positive sizes, got {self.size}")
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))

    @classmethod
    def parse(cls, text: str) -> InputSizeChoice:
        """``fitted`` | ``native`` | ``N`` (longer side) | ``HxW`` (exact); ValueError with a one-line reason."""
        value = str(text).strip().lower()
        if value in ("fitted", "native"):
            return cls(value)
        if value.isdigit():
            if int(value) <= 0:
                raise ValueError(f"imgsz {text!r}: the longer side must be positive")
            return cls("long", (int(value),))
        match = _EXACT.match(value)
        if match is None:
            raise ValueError(f"imgsz {text!r}: expected 'fitted', 'native', N (longer side) or HxW, e.g. 608x832")
        height, width = int(match.group(1)), int(match.group(2))
        if height <= 0 or width <= 0:
            raise ValueError(f"imgsz {text!r}: sides must be positive")
        return cls("exact", (height, width))

    def __str__(self) -> str:
        if self.mode == "long":
            return str(self.size[0])
        if self.mode == "exact":
            return f"{self.size[0]}x{self.size[1]}"
        return self.mode


def stride_of(spec: ModelSpec) -> int:
    """The multiple every input side must be (the coarsest output stride)."""
    return max(spec.strides)


def _round_up(value: float, stride: int) -> int:
    # 1e-6: 576 * (608 / 576) is 607.9999999 in floating point and must stay 608, not become 640
    return max(stride, math.ceil(value / stride - 1e-6) * stride)


def scaled_input_size(frame_shape: Sequence[int], scale: float, stride: int) -> tuple[int, int]:
    """(h, w) of a frame scaled by ``scale``, each side rounded up to a multiple of ``stride``."""
    height, width = int(frame_shape[0]), int(frame_shape[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"frame shape {tuple(frame_shape)} has an empty side")
    return _round_up(height * scale, stride), _round_up(width * scale, stride)


def fitted_input_size(spec: ModelSpec, frame_shape: Sequence[int]) -> tuple[int, int]:
    """The native letterbox scale for this frame, padding trimmed to the stride (never larger than native).

    The side that limits the native scale keeps its native length, so the letterbox at the fitted size uses the
    same scale as at the native size: 768x576 frames with a 608x1088 model -> r = 608/576 -> 608x832.
    """
    native_h, native_w = spec.input_size
    scale = min(native_h / int(frame_shape[0]), native_w / int(frame_shape[1]))
    fitted = scaled_input_size(frame_shape, scale, stride_of(spec))
    return min(fitted[0], native_h), min(fitted[1], native_w)


def check_input_size(spec: ModelSpec, size: Sequence[int]) -> tuple[int, int]:
    """``size`` as (h, w) ints, or ValueError naming the model when a side is not a positive stride multiple."""
    stride = stride_of(spec)
    height, width = (int(v) for v in size)
    if height <= 0 or width <= 0 or height % stride or width % stride:
        raise ValueError(f"{spec.name}: input size {height}x{width} is not a multiple of its stride {stride} "
                         f"(e.g. {_round_up(max(height, 1), stride)}x{_round_up(max(width, 1), stride)})")
    return height, width


def resolve_input_size(spec: ModelSpec, choice: InputSizeChoice,
                       frame_shape: Sequence[int] | None) -> tuple[tuple[int, int], str]:
    """The (h, w) input for frames of ``frame_shape`` under ``choice``, and a one-line reason for reports.

    ``frame_shape`` may be None only for ``native`` and ``exact`` (the other modes follow the frame).
    """
    if choice.mode == "native":
        return spec.input_size, f"native: the model's own input size {_hw(spec.input_size)} (--imgsz native)"
    if choice.mode == "exact":
        size = check_input_size(spec, choice.size)
        return size, f"exact: {_hw(size)} as requested (--imgsz {choice})"
    if frame_shape is None:
        raise ValueError(f"imgsz {str(choice)!r} follows the frames: give their shape (frame_shape=)")
    frame = f"{int(frame_shape[1])}x{int(frame_shape[0])} (WxH) frames"
    if choice.mode == "long":
        stride = stride_of(spec)
        if choice.size[0] % stride:
            raise ValueError(f"{spec.name}: --imgsz {choice.size[0]} is not a multiple of its stride {stride}")
        size = scaled_input_size(frame_shape, choice.size[0] / max(int(v) for v in frame_shape[:2]), stride)
        return size, f"longer side {choice.size[0]}: {_hw(size)} for {frame}, stride {stride}"
    size = fitted_input_size(spec, frame_shape)
    if size == spec.input_size:
        return size, f"fitted: the native {_hw(size)} already fits {frame}"
    return size, (f"fitted: native {_hw(spec.input_size)} scale for {frame}, padding trimmed to stride "
                  f"{stride_of(spec)} -> {_hw(size)}")


def _hw(size: Sequence[int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"
