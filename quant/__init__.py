"""Post-training int8 quantization: observers, fusion, equalization, calibration, ONNX int8 export.

Public API::

    qdet = quant.quantize_detector(det, "path/to/video.mp4")   # QuantConfig defaults; overrides as keywords
    boxes = qdet(frame)           # same call signature as the fp32 detector, int8 in ONNX Runtime
    print("\\n".join(qdet.quant_info.summary()))                # what was chosen and how faithful it is
    qdet.save("model_int8.onnx")  # detectors.load_detector("model_int8.onnx") loads it back
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from int8track.detectors.detector import Detector
from int8track.quant.config import ALGORITHM_VERSION, QuantConfig
from int8track.quant.onnx_export import QuantizedDetector
from int8track.quant.pipeline import quantize
from int8track.quant.report import QuantReport
from int8track.quant.sensitivity import LayerSensitivity, report
from int8track.quant.simulate import QuantPlan

__all__ = ["quantize_detector", "QuantConfig", "QuantReport", "QuantizedDetector", "QuantPlan", "report",
           "LayerSensitivity", "ALGORITHM_VERSION"]


def quantize_detector(detector: Detector, calibration_frames: str | Path | Sequence[np.ndarray],
                      config: QuantConfig | None = None, *, eval_frames: Sequence[np.ndarray] | None = None,
                      num_threads: int | None = None, speed_table: str | Path | None = None, progress: bool = True,
                      **overrides: Any) -> QuantizedDetector:
    """Calibrate ``detector`` (needs ``detector.model``) and return an int8 detector running in ONNX Runtime.

    ``config`` (default ``QuantConfig()``) with ``overrides`` (its field names) says how; it is validated before
    any work. ``calibration_frames``: a list of BGR frames, a video, an image folder or a MOT sequence folder
    (``config.num_frames`` evenly spaced), of which ``config.held_out_frames`` are held out (or ``eval_frames``).
    Every returned model reaches the accuracy floor on the held-out frames (``QuantConfig.target_agreement``);
    ``quant_info`` (a ``QuantReport``) says what was chosen, rejected, measured and how long each step took.
    ``num_threads``: ONNX Runtime threads of the int8 detector and torch threads while calibrating (None: the
    libraries' defaults). ``speed_table``: a folder where the speed plan's timings are kept per graph and machine
    (``quant.speed_table``): measured once, reused after, so the same inputs give the same model whatever the CPU
    is doing; None measures every time.
    """
    cfg = QuantConfig.from_options(config, **overrides)
    return quantize(detector, calibration_frames, cfg, eval_frames=eval_frames, num_threads=num_threads,
                    speed_table=speed_table, progress=progress)
