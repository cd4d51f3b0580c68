"""The detector's input size for a source, fitted to the source's frames unless told otherwise.

The frame shape is known only once a frame is decoded, so the source's first frame is read before the detector
is sized, and handed back as the first frame of the run (:class:`PeekedSource`): nothing is read twice, which
matters for cameras and streams.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from int8track.apps.io.sources import FrameSource, SourceError
from int8track.detectors.detector import Detector
from int8track.detectors.input_size import InputSizeChoice, resolve_input_size


class PeekedSource(FrameSource):
    """``source`` with its first frame already read (:attr:`first`); :meth:`read` returns that frame first."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.info = source.info
        first = source.read()
        if first is None:
            raise SourceError(f"{source.info.display}: no frames read")
        self.first: np.ndarray = first
        self._pending: np.ndarray | None = first

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        return self.source.read()

    def skip(self, count: int) -> int:
        if count <= 0:
            return 0
        if self._pending is None:
            return self.source.skip(count)
        self._pending = None
        return 1 + self.source.skip(count - 1)

    def close(self) -> None:
        self.source.close()


@dataclass(frozen=True)
class FittedDetector:
    """A detector sized for a source, and why that size (one line for the run report)."""

    detector: Detector
    reason: str

    @property
    def input_size(self) -> tuple[int, int]:
        return self.detector.spec.input_size


def fit_detector(detector: Detector, choice: InputSizeChoice, frame_shape: tuple[int, ...]) -> FittedDetector:
    """``detector`` at the input size ``choice`` gives for frames of ``frame_shape`` (ValueError: bad size).

    A detector with no float model (a saved int8 ONNX file, e.g. from ``quantize``) has a fixed input: the
    default ``fitted`` then keeps the file's own size (it was fitted when it was quantized) and says so; an
    explicit other size is an error naming the fixed one."""
    if detector.model is None and choice.mode == "fitted":
        size = detector.spec.input_size
        return FittedDetector(detector, f"fixed: this ONNX graph runs only at {size[0]}x{size[1]} (its size when "
                                        "it was exported or quantized)")
    size, reason = resolve_input_size(detector.spec, choice, frame_shape)
    return FittedDetector(detector.with_input_size(size), reason)
