"""YOLOX and YOLOv5 detectors in PyTorch, checkpoint loading, pre/post-processing, ONNX Runtime backend.

    det = load_detector("bytetrack_nano_mot17" | "path/to/weights", backend="torch" | "onnxruntime")
    boxes = det(frame_bgr)   # (N, 6) float32 x1, y1, x2, y2, score, class in frame pixels
    det = det.with_input_size(fitted_input_size(det.spec, frame_bgr.shape))   # e.g. 608x1088 -> 608x832 for 4:3

Modules: ``spec`` (ModelSpec), ``zoo`` (names, cache, downloads), ``yolox`` / ``yolov5`` (models with
official parameter names), ``layers`` (Conv+BN+act block, BN folding), ``checkpoints`` (.pth/.pth.tar/.pt
reading, strict loading), ``safe_pickle`` (restricted unpickler), ``onnx_import`` (weights of BN-folded
ONNX exports), ``input_size`` (native / fitted / requested input sizes), ``preprocess`` / ``postprocess`` /
``nms`` (float numpy stages), ``runtime`` (ORT sessions, runners, the one ONNX exporter), ``detector``
(Detector), ``loading`` (load_detector), ``evaluation`` (COCO-style AP).
"""
from __future__ import annotations

from .detector import Detector
from .input_size import InputSizeChoice, fitted_input_size, resolve_input_size
from .loading import load_detector
from .runtime import OrtRunner, TorchRunner, create_session
from .spec import ModelSpec
from .zoo import ZOO, zoo_spec

__all__ = ["Detector", "InputSizeChoice", "ModelSpec", "OrtRunner", "TorchRunner", "ZOO", "create_session",
           "fitted_input_size", "load_detector", "resolve_input_size", "zoo_spec"]
