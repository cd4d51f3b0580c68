"""Detector: preprocess -> runner (any backend) -> float postprocess, kept as three separately timed stages."""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from .input_size import check_input_size
from .postprocess import postprocess
from .preprocess import preprocess
from .spec import ModelSpec

Runner = Callable[[np.ndarray], np.ndarray]
#: Makes the runner of a float model at the input size of a spec (``detectors.loading.RunnerBuilder``).
RunnerFactory = Callable[[nn.Module, ModelSpec], Runner]


class Detector:
    """A full detector around any ``runner`` (callable blob -> raw).

    ``conf_thresh``/``nms_thresh``/``classes`` default to the spec's values (all classes).
    ``model`` is the float torch model when there is one (None for a pure-ONNX int8 detector).
    ``runner_factory`` remakes the runner for another input size (:meth:`with_input_size`); without it (or
    without ``model``) the detector runs at ``spec.input_size`` only.
    """

    def __init__(self, spec: ModelSpec, runner: Runner, model: nn.Module | None = None,
                 conf_thresh: float | None = None, nms_thresh: float | None = None,
                 classes: list[int] | None = None, runner_factory: RunnerFactory | None = None) -> None:
        self.spec = spec
        self.runner = runner
        self.model = model
        self.runner_factory = runner_factory
        self.conf_thresh = spec.conf_thresh if conf_thresh is None else float(conf_thresh)
        self.nms_thresh = spec.nms_thresh if nms_thresh is None else float(nms_thresh)
        self.classes = _checked_classes(spec, classes)

    def with_classes(self, classes: Sequence[int] | None) -> Detector:
        """This detector keeping only ``classes`` (None: all), filtered before NMS like ``classes=`` at construction.

        The copy shares the runner (session), model and spec, and keeps the type and attributes of a subclass
        (e.g. the int8 ``QuantizedDetector`` and its ``save``); ``self`` is unchanged.
        """
        checked = _checked_classes(self.spec, classes)
        detector = copy.copy(self)
        detector.classes = checked
        return detector

    def with_input_size(self, size: Sequence[int]) -> Detector:
        """This detector at input ``size`` = (h, w) (multiples of the largest stride); ``self`` is unchanged.

        The models are fully convolutional: the copy shares the float model and gets a runner for the new size
        (an ONNX backend exports the model at that size, cached on disk), and its spec's ``input_size`` changes,
        which the letterbox and the decoding grids follow. The same size returns ``self``. A detector without a
        float model (an int8 ONNX file) has a fixed input: ValueError, quantize at the wanted size instead.
        """
        checked = check_input_size(self.spec, size)
        if checked == self.spec.input_size:
            return self
        if self.model is None or self.runner_factory is None:
            raise ValueError(f"{self.spec.name}: this detector runs a fixed {self.spec.input_size[0]}x"
                             f"{self.spec.input_size[1]} ONNX graph and cannot change its input size; load the "
                             f"float weights at {checked[0]}x{checked[1]} (and quantize at that size)")
        detector = copy.copy(self)
        detector.spec = self.spec.replace(input_size=list(checked))
        detector.runner = self.runner_factory(self.model, detector.spec)
        return detector

    def preprocess(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Frame -> (blob (1,3,H,W) float32, meta for mapping boxes back)."""
        return preprocess(frame_bgr, self.spec.input_size, self.spec.preprocessing)

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Blob -> raw undecoded head output (1, A, 5+C) float32."""
        return np.asarray(self.runner(blob), dtype=np.float32)

    def postprocess(self, raw: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Raw -> (N, 6) float32 boxes x1,y1,x2,y2,score,class in frame pixels."""
        return postprocess(raw, meta, self.spec, self.conf_thresh, self.nms_thresh, self.classes)

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        blob, meta = self.preprocess(frame_bgr)
        return self.postprocess(self.infer(blob), meta)

    def __repr__(self) -> str:
        backend = type(self.runner).__name__
        return f"Detector({self.spec.name}, {backend}, conf={self.conf_thresh}, nms={self.nms_thresh})"


def _checked_classes(spec: ModelSpec, classes: Sequence[int] | None) -> list[int] | None:
    """``classes`` as a list of ints, or ValueError naming the model when one is not a class of it."""
    if classes is None:
        return None
    checked = [int(c) for c in classes]
    if any(not 0 <= c < spec.num_classes for c in checked):
        raise ValueError(f"{spec.name}: classes {list(classes)} outside 0..{spec.num_classes - 1}")
    return checked
