"""YOLOX and YOLOv5 detectors in PyTorch, checkpoint loading, pre/post-processing, ONNX Runtime backend."""
from __future__ import annotations

from .detector import Detector
from .loading import load_detector
from .runtime import OrtRunner, TorchRunner, create_session
from .spec import ModelSpec
from .zoo import ZOO, zoo_spec

__all__ = ["Detector", "ModelSpec", "OrtRunner", "TorchRunner", "ZOO", "create_session", "load_detector", "zoo_spec"]
