"""Per-layer quantization sensitivity (simulation), greedy choice of the float set, and the report.

Sensitivity of a conv = how far the detector output moves when *only that conv* is int8 (everything
else float): L1 and SQNR of the raw head output and detection F1 against the fp32 detections.
The float set is then grown greedily, most sensitive first, until the whole plan reaches the
target agreement — the smallest float set the measurements justify.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from int8track.quant.agreement import detection_f1
from int8track.quant.qparams import sqnr_db
from int8track.quant.simulate import QuantPlan, conv_layers, conv_sim, run_simulated

Decode = Callable[[np.ndarray, Any], np.ndarray]  # raw head output, frame meta -> (N,6) boxes


@dataclass
class EvalSet:
    """Held-out blobs with their frame metas, the fp32 raw outputs and fp32 detections (the reference)."""

    blobs: list[np.ndarray]
    metas: list[Any]
    decode: Decode
    raw_fp32: list[np.ndarray]
    boxes_fp32: list[np.ndarray]

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, blobs: Sequence[np.ndarray], metas: Sequence[Any], decode: Decode) -> EvalSet:
        raw = [model(torch.from_numpy(b)).numpy() for b in blobs]
        return cls(list(blobs), list(metas), decode, raw, [decode(r, m) for r, m in zip(raw, metas)])


@dataclass
class Agreement:
    """How close a quantized output is to fp32: detection F1, mean |error|, SQNR (dB), cosine."""

    f1: float
    l1: float
    sqnr_db: float
    cosine: float


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened arrays."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))


def compare(evalset: EvalSet, raw: Sequence[np.ndarray]) -> Agreement:
    """Agreement of ``raw`` outputs (one per eval blob) with the fp32 reference."""
    ref, out = np.concatenate([r.ravel() for r in evalset.raw_fp32]), np.concatenate([r.ravel() for r in raw])
    boxes = [evalset.decode(r, m) for r, m in zip(raw, evalset.metas)]
    return Agreement(detection_f1(evalset.boxes_fp32, boxes), float(np.abs(ref - out).mean()),
                     sqnr_db(torch.from_numpy(ref), torch.from_numpy(out)), cosine(ref, out))


def evaluate_plan(model: nn.Module, plan: QuantPlan, evalset: EvalSet) -> Agreement:
    """Simulated agreement of a whole plan with fp32 on the eval set."""
    return compare(evalset, [run_simulated(model, plan, b) for b in evalset.blobs])


@dataclass
class LayerSensitivity:
    """One row of the per-layer table: the conv quantized alone, everything else float."""

    layer: str
    f1: float
    l1: float
    sqnr_db: float
    cosine: float


def layer_sensitivity(model: nn.Module, plan: QuantPlan, evalset: EvalSet, layers: Sequence[str] | None = None,
                      progress: bool = True) -> list[LayerSensitivity]:
    """Quantize one conv at a time (simulation) and measure agreement with fp32; most sensitive first."""
    rows = []
    for layer in tqdm(list(plan.quantized if layers is None else layers), desc="sensitivity", unit="layer",
                      disable=not progress):
        single = replace(plan, quantized=[layer], rounded={}, extra={})  # nearest rounding, as before
        rows.append(LayerSensitivity(layer, **asdict(evaluate_plan(model, single, evalset))))
    return sorted(rows, key=lambda r: (r.f1, r.sqnr_db))


@dataclass
class LocalError:
    """Error of one conv's own int8 output against its float output, given the float input (cheap ranking)."""

    layer: str
    sqnr_db: float
    l1: float


@torch.no_grad()
def local_sensitivity(model: nn.Module, plan: QuantPlan, blobs: Sequence[np.ndarray],
                      progress: bool = True) -> list[LocalError]:
    """SQNR of every quantized conv's int8 output vs float (float network, one pass); worst first.

    ~2 forward passes per frame instead of one per layer: used to *rank* layers for the float set,
    whose effect on detections is then measured on the whole plan (``quant.pipeline.widen_float_set``).
    """
    convs = conv_layers(model)
    sims = {n: conv_sim(convs[n], plan.act(f"{n}:in"), plan.act(f"{n}:out")) for n in plan.quantized}
    stats = {n: np.zeros(3) for n in plan.quantized}  # signal energy, noise energy, |error| sum / count

    def hook(name: str):
        def record(conv: nn.Conv2d, args: tuple, out: torch.Tensor) -> None:
            err = (sims[name](conv, args[0]) - out).double()
            stats[name] += [float((out.double() ** 2).sum()), float((err**2).sum()), float(err.abs().mean())]
        return record

    handles = [convs[n].register_forward_hook(hook(n), prepend=True) for n in plan.quantized]
    try:
        for blob in tqdm(blobs, desc="local sensitivity", unit="frame", disable=not progress):
            model(torch.from_numpy(blob))
    finally:
        for h in handles:
            h.remove()
    rows = [LocalError(n, float(10 * np.log10(s[0] / max(s[1], 1e-30))), s[2] / len(blobs)) for n, s in stats.items()]
    return sorted(rows, key=lambda r: r.sqnr_db)


def report(table: Sequence[LayerSensitivity | LocalError], out_prefix: str | Path, title: str = "") -> dict[str, Path]:
    """Write the per-layer table (full or local) as CSV and JSON and a bar plot (PNG); returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in table]
    paths = {"csv": prefix.with_suffix(".csv"), "json": prefix.with_suffix(".json"), "png": prefix.with_suffix(".png")}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["layer"])
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps(rows, indent=1))
    ordered = sorted(table, key=lambda r: r.sqnr_db)
    has_f1 = all(isinstance(r, LayerSensitivity) for r in table)
    fig, axes = plt.subplots(2 if has_f1 else 1, 1, figsize=(max(8, 0.12 * len(table)), 7 if has_f1 else 4),
                             sharex=True, squeeze=False)
    x = np.arange(len(ordered))
    axes[0, 0].bar(x, [r.sqnr_db for r in ordered])
    axes[0, 0].set_ylabel("detector output SQNR (dB)" if has_f1 else "conv output SQNR (dB)")
    if has_f1:
        f1_rows = cast(list[LayerSensitivity], ordered)  # has_f1: every row is a LayerSensitivity
        axes[1, 0].bar(x, [r.f1 for r in f1_rows], color="tab:orange")
        axes[1, 0].set_ylabel("detection F1 vs fp32")
        axes[1, 0].set_ylim(min([r.f1 for r in f1_rows] + [0.9]) - 0.02, 1.0)
    axes[-1, 0].set_xticks(x, [r.layer for r in ordered], rotation=90, fontsize=5)
    axes[0, 0].set_title(title or ("one conv int8 at a time" if has_f1 else "each conv's own int8 error"))
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=120)
    plt.close(fig)
    return paths
