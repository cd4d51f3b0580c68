"""int8 for an appearance embedder (a person re-identification CNN that exists only as ONNX), through this
library: the graph runs as a torch module (``quant.onnx_module``), its convs are calibrated and exported in QDQ
form exactly as a detector's are, and the int8 model is judged on held-out crops against the fp32 one:

- **faithful**: every held-out crop's int8 embedding has cosine similarity at least ``min_cosine`` with its fp32
  embedding, and for every pair of held-out crops the re-find decision (cosine >= ``decision_threshold``, the
  tracker's ``ReidConfig.min_similarity``) is the same with both models in at least ``min_agreement`` of pairs;
- **faster**: the int8 graph runs a batch more than ``speed_margin`` faster than fp32 (``quant.speed``'s rule, on
  its interleaved timings: ratios measured until known to 1%).

It ships (``accepted == "int8"``) only when both hold; otherwise the report says which failed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from int8track.detectors.runtime import create_session
from int8track.quant.calibration import collect_ranges
from int8track.quant.config import SPEED_MARGIN
from int8track.quant.onnx_export import insert_qdq
from int8track.quant.onnx_module import load_onnx_convnet
from int8track.quant.simulate import QuantPlan, conv_layers
from int8track.quant.speed import FP32, time_sessions

INT8 = "int8"
TIMING_BATCH = 8  # crops per timed run: a frame's re-find batch is a few crops


@dataclass(frozen=True)
class EmbedderFloor:
    """What a faithful int8 embedder must reach on held-out crops (module docstring)."""

    min_cosine: float = 0.98
    decision_threshold: float = 0.65
    min_agreement: float = 0.99

    def __post_init__(self) -> None:
        for name in ("min_cosine", "decision_threshold", "min_agreement"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
                raise ValueError(f"EmbedderFloor.{name} must be a number in [-1, 1], got {value!r}")


@dataclass(frozen=True)
class EmbedderQuantReport:
    """What ``quantize_embedder`` measured and decided."""

    accepted: str  # "int8", or "fp32 (why)"
    calibration_crops: int
    held_out_crops: int
    int8_convs: int
    weight_qmax: int
    cosine_min: float
    cosine_mean: float
    decision_agreement: float
    pairs: int
    fp32_ms: float
    int8_ms: float
    batch: int

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": self.speedup}

    def summary(self) -> str:
        return (f"int8 embedder: {self.accepted}; {self.int8_convs} int8 convs (weights within +-{self.weight_qmax}); "
                f"held-out {self.held_out_crops} crops: cosine to fp32 min {self.cosine_min:.4f} mean "
                f"{self.cosine_mean:.4f}, same re-find decision on {100 * self.decision_agreement:.2f}% of "
                f"{self.pairs} pairs; batch of {self.batch}: fp32 {self.fp32_ms:.1f} ms, int8 {self.int8_ms:.1f} ms "
                f"({self.speedup:.2f}x)")


def quantize_embedder(path: str | Path, calibration: np.ndarray, held_out: np.ndarray,
                      floor: EmbedderFloor = EmbedderFloor(), speed_margin: float = SPEED_MARGIN,
                      num_threads: int = 1) -> tuple[bytes, EmbedderQuantReport]:
    """The int8 ONNX graph of the embedder at ``path`` (minmax ranges on the ``calibration`` batch, (N, 3, H, W)
    preprocessed crops) and its report on the ``held_out`` batch; ``accepted`` says whether to ship it."""
    if calibration.ndim != 4 or held_out.ndim != 4 or len(held_out) < 2:
        raise ValueError(f"need (N, 3, H, W) batches, at least 2 held-out crops; got {calibration.shape} and "
                         f"{held_out.shape}")
    model, proto = load_onnx_convnet(path)
    ranges = collect_ranges(model, [crop[None] for crop in calibration], "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)))
    int8_bytes = insert_qdq(proto, model, plan).SerializeToString()
    fp32_bytes = proto.SerializeToString()
    sessions = {FP32: create_session(fp32_bytes, num_threads), INT8: create_session(int8_bytes, num_threads)}
    reference, candidate = (_unit(_embed(sessions[name], held_out)) for name in (FP32, INT8))
    cosine = np.einsum("ij,ij->i", reference, candidate)
    upper = np.triu_indices(len(held_out), k=1)
    agree = ((reference @ reference.T)[upper] >= floor.decision_threshold) == \
        ((candidate @ candidate.T)[upper] >= floor.decision_threshold)
    timings = time_sessions(sessions, held_out[:TIMING_BATCH], num_threads)
    faithful = float(cosine.min()) >= floor.min_cosine and float(agree.mean()) >= floor.min_agreement
    faster = timings.clearly_faster(INT8, speed_margin)
    accepted = "int8" if faithful and faster else "fp32 (" + "; ".join(
        ([] if faithful else ["int8 below the floor on held-out crops"])
        + ([] if faster else [f"int8 not {100 * speed_margin:.0f}% faster on this machine"])) + ")"
    report = EmbedderQuantReport(accepted, len(calibration), len(held_out), len(plan.quantized), plan.weight_qmax,
                                 float(cosine.min()), float(cosine.mean()), float(agree.mean()), int(agree.size),
                                 timings.fp32_ms, timings.ms[INT8], min(TIMING_BATCH, len(held_out)))
    return int8_bytes, report


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _embed(session: Any, batch: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: batch})[0]
