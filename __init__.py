"""int8track: real-time multi-object tracking (ByteTrack) with int8 post-training-quantized detectors.

The one import name of the project::

    from int8track import ByteTracker, load_detector, quantize_detector

    tracker = ByteTracker(frame_rate=30)
    detector = load_detector("bytetrack_nano_mot17.onnx", backend="onnxruntime")
    tracks = tracker.update(detector(frame_bgr))

Subpackages: ``int8track.tracker`` (ByteTrack, numpy only), ``int8track.detectors`` (YOLOX/YOLOv5,
loading, pre/post-processing, ONNX Runtime), ``int8track.quant`` (post-training int8), ``int8track.apps``
(the ``track`` program, frame sources, MOTChallenge I/O and evaluation).

Names are resolved on first use, so ``from int8track import ByteTracker`` loads numpy and the tracker only,
not torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the subpackage module that defines it
_EXPORTS: dict[str, str] = {
    "ByteTracker": "int8track.tracker",
    "OUTPUT_COLUMNS": "int8track.tracker",
    "TrackerConfig": "int8track.tracker",
    "Detector": "int8track.detectors",
    "ModelSpec": "int8track.detectors",
    "load_detector": "int8track.detectors",
    "quantize_detector": "int8track.quant",
    "QuantizedDetector": "int8track.quant",
    "QuantPlan": "int8track.quant",
    "track_frames": "int8track.apps.pipeline.run",
    "run_tracking": "int8track.apps.pipeline.run",
    "open_source": "int8track.apps.io.sources",
}

__all__ = [  # spelled out for readers and linters; tests/test_packaging.py checks it against _EXPORTS
    "OUTPUT_COLUMNS", "ByteTracker", "Detector", "ModelSpec", "QuantPlan", "QuantizedDetector", "TrackerConfig",
    "__version__", "load_detector", "open_source", "quantize_detector", "run_tracking", "track_frames",
]

if TYPE_CHECKING:
    from int8track.apps.io.sources import open_source
    from int8track.apps.pipeline.run import run_tracking, track_frames
    from int8track.detectors import Detector, ModelSpec, load_detector
    from int8track.quant import QuantizedDetector, QuantPlan, quantize_detector
    from int8track.tracker import OUTPUT_COLUMNS, ByteTracker, TrackerConfig


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'int8track' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
