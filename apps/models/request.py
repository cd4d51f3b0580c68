"""One typed request for the detector a run needs, and :func:`prepare_detector`, the one way to get it.

`track`, the fleet, `quantize` and the benchmarks all say what they want as a :class:`ModelRequest` (no
command-line namespace below the CLI); :func:`prepare_detector` resolves the weights, keeps the requested
classes, fits the input size to the source's frames and, for int8, finds or makes the calibrated model through
the cache, and says in :class:`PreparedDetector` what will run and why.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from int8track.apps.errors import UserError
from int8track.apps.io.read_ahead import ReadAhead
from int8track.apps.io.sources import FrameSource, open_source
from int8track.apps.models.cache import CachedModel, Int8ModelCache, resolve_weights, source_fingerprint
from int8track.apps.models.input_fit import PeekedSource, fit_detector
from int8track.detectors import load_detector
from int8track.detectors.detector import Detector
from int8track.detectors.input_size import InputSizeChoice
from int8track.frames import load_frames
from int8track.quant.config import DEFAULT_NUM_FRAMES, QuantConfig
from int8track.quant.report import QuantReport

DEFAULT_MODEL = "bytetrack_nano_mot17"

Log = Callable[[str], None]


@dataclass(frozen=True)
class CalibrationRequest:
    """How to make the int8 model: on ``source`` (None: the run's own source), ``frames`` frames evenly spaced
    (half held out for the accuracy floor), with ``quant`` settings; ``refresh`` ignores a cached model."""

    quant: QuantConfig = field(default_factory=QuantConfig)
    source: str | Path | None = None
    frames: int = DEFAULT_NUM_FRAMES
    refresh: bool = False

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f"calibration frames: need at least 2 (calibration and held-out), not {self.frames}")


@dataclass(frozen=True)
class ModelRequest:
    """Which detector, with which thresholds and classes, at which input size, and in int8 or not."""

    model: str = DEFAULT_MODEL
    weights: str | Path | None = None  # a weights file instead of the zoo name
    classes: str = "person"  # comma-separated class names or ids
    conf: float | None = None  # None: the model's own thresholds
    nms: float | None = None
    imgsz: InputSizeChoice = field(default_factory=lambda: InputSizeChoice("fitted"))
    threads: int | None = None
    int8: CalibrationRequest | None = None  # None: fp32


@dataclass(frozen=True)
class PreparedDetector:
    """What :func:`prepare_detector` made: the detector, the file a fleet worker loads, and what runs and why."""

    detector: Detector
    weights: Path  # the resolved weights the detector was loaded from
    model_path: Path  # the weights (fp32), or the cached int8 ONNX file
    class_ids: tuple[int, ...]
    input_size_reason: str
    int8: CachedModel | None = None  # the cache's answer when int8 was requested

    @property
    def int8_report(self) -> QuantReport | None:
        """The quantizer's report stored in the int8 model (None: fp32, or a model saved without one)."""
        if self.int8 is None or not self.int8.quant_report:
            return None
        return QuantReport.from_dict(self.int8.quant_report)

    @property
    def precision(self) -> str:
        """What runs: ``int8`` only when some conv runs in int8; a model that stayed float is ``fp32``."""
        if self.int8 is None:
            return "fp32"
        report = self.int8_report
        if report is not None and (not report.int8_faster or report.all_float or report.quantized_convs == 0):
            return "fp32"
        return "int8"

    @property
    def precision_label(self) -> str:
        """One phrase for titles and summaries, e.g. ``fp32 (int8 requested: not faster within the floor)``."""
        report = self.int8_report
        if report is None or self.precision == "int8":
            return self.precision
        why = "not faster than fp32 on this machine" if not report.int8_faster else "no int8 plan reached the floor"
        return f"fp32 (int8 requested: {why})"

    def info(self) -> dict[str, Any]:
        """The run report's lines about the detector (``info`` of the timing JSON)."""
        info: dict[str, Any] = {"precision": self.precision, "precision_label": self.precision_label,
                                "input_size_reason": self.input_size_reason}
        if self.int8 is not None:
            info["int8_requested"] = True
            info["int8"] = int8_summary(self.int8)
        return info


def prepare_detector(request: ModelRequest, source: PeekedSource, log: Log = lambda line: None) -> PreparedDetector:
    """The detector ``request`` asks for, sized for ``source``'s frames; int8 calibrated on ``request.int8.source``
    or ``source`` (through the cache: a second run reuses the model). ``log`` gets one line per decision."""
    weights = resolve_weights(request.model, request.weights)
    detector = load_detector(str(weights), backend="onnxruntime", num_threads=request.threads,
                             conf_thresh=request.conf, nms_thresh=request.nms)
    class_ids = tuple(class_ids_from_spec(request.classes, detector.spec.class_names))
    fitted = fit_detector(detector.with_classes(list(class_ids)), request.imgsz, source.first.shape)
    log(f"detector input {fitted.input_size[0]}x{fitted.input_size[1]} ({fitted.reason})")
    if request.int8 is None:
        return PreparedDetector(fitted.detector, weights, weights, class_ids, fitted.reason)
    calib = request.int8
    calibration = {"frames": calib.frames, "source": calibration_fingerprint(calib, source)}
    cached = Int8ModelCache().get(fitted.detector, weights, lambda: calibration_frames(calib, source, log),
                                  calib.quant, calibration, num_threads=request.threads, refresh=calib.refresh)
    verb = "reusing cached" if cached.reused else "calibrated and cached"
    origin = cached.calibration["source"]
    took = "" if cached.reused else f", {cached.make_seconds:.1f} s"
    log(f"{verb} int8 model {cached.path} (calibrated on {cached.calibration['frames']} frames of "
        f"{origin.get('path', origin.get('live'))}{took})")
    prepared = PreparedDetector(cached.detector, weights, cached.path, class_ids, fitted.reason, cached)
    for line in QuantReport.from_dict(cached.quant_report).summary() if cached.quant_report else []:
        log(f"int8: {line}")
    log(f"precision: {prepared.precision_label}")
    return prepared


def int8_summary(cached: CachedModel) -> dict[str, Any]:
    """The int8 decisions worth keeping beside the timings (a subset of ``quant.QuantReport``)."""
    report = cached.quant_report
    keys = ("observer", "observer_scores", "floor", "agreement", "quantized_convs", "speed_ms", "speed_choice",
            "int8_faster", "accepted", "all_float", "rejected", "calibration_frames", "eval_frames", "seconds",
            "cpu_seconds", "frames_per_second", "extra")
    out = {k: report[k] for k in keys if k in report}
    out["float_convs"] = len(report.get("float_layers", []))
    out["calibration_seconds"] = sum(report.get("seconds", {}).values())
    out["model"] = str(cached.path)
    out["reused"] = cached.reused
    if not cached.reused:  # the whole wait before tracking: frames read, calibration process started, calibrated
        out["calibration_wall_seconds"] = cached.make_seconds
    return out


def class_ids_from_spec(spec: str, class_names: Sequence[str]) -> list[int]:
    """Class ids from a comma-separated list of names or ids, checked against the model's classes (not empty)."""
    ids = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        if item.isdigit() and int(item) < len(class_names):
            ids.append(int(item))
        elif item in class_names:
            ids.append(list(class_names).index(item))
        else:
            raise UserError(f"--classes: {item!r} is not a class of this model ({len(class_names)} classes, "
                            f"e.g. {', '.join(class_names[:5])})")
    if not ids:
        raise UserError(f"--classes {spec!r} names no class; give names or ids, e.g. --classes person")
    return ids


def calibration_fingerprint(calib: CalibrationRequest, source: FrameSource) -> dict:
    """The fingerprint of what :func:`calibration_frames` reads: the calibration source, else the run's."""
    if calib.source is not None:
        return source_fingerprint(calib.source)
    # a URL is known by its text even when it is read like a file: nothing local to stat
    return source_fingerprint(source.info.location, live=source.info.is_live or source.info.kind == "stream")


def calibration_frames(calib: CalibrationRequest, source: FrameSource, log: Log) -> list[np.ndarray]:
    """``calib.frames`` frames evenly spaced over the calibration source; the first ones of a live source."""
    log(f"calibrating int8 on {calib.frames} frames of {calib.source or source.info.display}")
    if calib.source is not None or not source.info.is_live:
        return load_frames(calib.source or source.info.location, calib.frames, label="calibration source")
    live = open_source(source.info.location)
    reader = ReadAhead(live, drop_oldest=False, max_frames=calib.frames)
    frames = [frame.image for frame in reader]
    reader.close()
    if not frames:
        raise UserError(f"{source.info.display}: no frames to calibrate on")
    return frames
