"""``track --reid --int8``: the appearance embedder in int8 only where that is faithful and faster on this machine.

The embedder is quantized like the detector, through ``quant.embedder.quantize_embedder``, on the person crops the
run's detector finds in the calibration frames (those of the first half calibrate, those of the second half are
the floor's held-out crops). The decision, and the int8 model when it is accepted, are cached beside the
detector's int8 models, keyed by the weights' bytes, the calibration source, this machine and the weight range, so
it is made once per camera and machine. Too few people in the calibration frames keeps the embedder fp32, saying so.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from int8track.apps.io.sources import FrameSource
from int8track.apps.models.cache import cache_key, cache_root
from int8track.apps.models.request import CalibrationRequest, calibration_fingerprint, calibration_frames
from int8track.files import write_bytes_atomically, write_text_atomically
from int8track.tracker.appearance import REID_INPUT_SIZE, OnnxEmbedder, crop_boxes

#: person crops each half of the calibration frames must give (fewer: no int8 decision can be made)
MIN_CROPS = 8
#: person detections below this score are not used as crops (partly hidden or not a person)
MIN_SCORE = 0.5
MIN_SIDE = 16  # pixels: smaller boxes carry no appearance
#: part of the cache key: decisions made by older code are not reused
DECISION_VERSION = 1


@dataclass(frozen=True)
class EmbedderChoice:
    """The embedder weights to run, their precision, the one line that says why, and whether it was cached."""

    weights: Path
    precision: str
    line: str
    reused: bool


def choose_embedder(weights: Path, calib: CalibrationRequest, source: FrameSource,
                    detector: Callable[[np.ndarray], np.ndarray], class_ids: Sequence[int],
                    log: Callable[[str], None], num_threads: int = 1) -> EmbedderChoice:
    """The fp32 ``weights`` or their int8 model (module docstring); ``detector(frame)`` gives (N, 6) boxes."""
    from int8track.quant.embedder import quantize_embedder
    from int8track.quant.runtime_int8 import runtime_weight_qmax
    from int8track.quant.speed_table import machine_id

    settings = {"calibration": {"frames": calib.frames, "source": calibration_fingerprint(calib, source)},
                "machine": machine_id(), "weight_qmax": runtime_weight_qmax(), "version": DECISION_VERSION}
    stem = f"{weights.stem}-int8-{cache_key(weights, REID_INPUT_SIZE, settings)}"
    record_path, model_path = cache_root() / "reid" / f"{stem}.json", cache_root() / "reid" / f"{stem}.onnx"
    cached = _cached_choice(record_path, model_path, weights)
    if cached is not None:
        return cached
    log(f"calibrating the int8 embedder on the person crops of {calib.frames} frames of "
        f"{calib.source or source.info.display}")
    halves = _person_crops(calibration_frames(calib, source, lambda line: None), detector, class_ids)
    if min(len(half) for half in halves) < MIN_CROPS:
        line = (f"int8 embedder: fp32 (the calibration frames show too few people: {len(halves[0])} + "
                f"{len(halves[1])} crops, {MIN_CROPS} + {MIN_CROPS} needed)")
        return EmbedderChoice(weights, "fp32", line, False)
    embedder = OnnxEmbedder(weights, num_threads=num_threads)
    int8, report = quantize_embedder(weights, embedder.preprocess(halves[0]), embedder.preprocess(halves[1]),
                                     num_threads=num_threads)
    if report.accepted == "int8":
        write_bytes_atomically(model_path, int8)
    line = report.summary()
    write_text_atomically(record_path, json.dumps({"line": line, **report.to_dict()}, indent=1) + "\n")
    return _choice(report.accepted, line, weights, model_path, reused=False)


def _cached_choice(record_path: Path, model_path: Path, weights: Path) -> EmbedderChoice | None:
    """The stored decision, or None when there is none (or it cannot be read, or its model is gone)."""
    try:
        record = json.loads(record_path.read_text())
        accepted, line = str(record["accepted"]), str(record["line"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if accepted == "int8" and not model_path.is_file():
        return None
    return _choice(accepted, line, weights, model_path, reused=True)


def _choice(accepted: str, line: str, weights: Path, model_path: Path, reused: bool) -> EmbedderChoice:
    if accepted == "int8":
        return EmbedderChoice(model_path, "int8", line, reused)
    return EmbedderChoice(weights, "fp32", line, reused)


def _person_crops(frames: list[np.ndarray], detector: Callable[[np.ndarray], np.ndarray],
                  class_ids: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Crops of the confident detections of ``class_ids``: those of the first half of the frames, and the rest."""
    halves: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for index, frame in enumerate(frames):
        boxes = np.asarray(detector(frame), dtype=np.float64).reshape(-1, 6)
        keep = (boxes[:, 4] >= MIN_SCORE) & np.isin(boxes[:, 5].astype(np.int64), list(class_ids))
        crops, _ = crop_boxes(frame, boxes[keep, :4], MIN_SIDE)
        halves[0 if index < len(frames) // 2 else 1].extend(crops)
    return halves
