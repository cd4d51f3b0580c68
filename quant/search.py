"""Search over quantization settings (observer x activation scheme x weight granularity x cross-layer
equalization x float set) on held-out frames.

Every configuration is scored in simulation against fp32 (detection F1, SQNR) and, where ground truth
is given, by AP50; the best is picked by F1 (then SQNR). Ranges are activation-aware as in
``quantize_detector``; weights are nearest-rounded (GPTQ is a refinement of the chosen configuration,
too slow to run per configuration). Results are a table (CSV/JSON) a user can open.
"""
from __future__ import annotations

import copy
import csv
import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from int8track.detectors.detector import Detector
from int8track.detectors.evaluation import coco_summary
from int8track.quant.activation_ranges import following_activations
from int8track.quant.calibration import collect_ranges, preprocess_frames
from int8track.quant.equalize import cross_layer_equalize
from int8track.quant.fold import fold_batchnorm
from int8track.quant.onnx_export import default_float_layers, export_fp32, fuse_silu
from int8track.quant.pipeline import TORCH_THREADS
from int8track.quant.sensitivity import EvalSet, compare
from int8track.quant.simulate import ACT_SCHEMES, WEIGHT_GRANULARITIES, QuantPlan, conv_layers, run_simulated
from int8track.quant.statistics import HISTOGRAM_OBSERVERS, ConvStatistics, gather_statistics

OBSERVERS = ("minmax", "percentile", "entropy", "mse")
FLOAT_SETS = ("none", "stem", "stem+head")
EQUALIZE = (False, True)


@dataclass
class SearchRow:
    """One configuration and its scores against fp32 (and gt, when given)."""

    observer: str
    scheme: str
    weight_granularity: str
    equalized: bool
    float_set: str
    float_layers: int
    f1: float
    sqnr_db: float
    cosine: float
    ap50: float | None


def _float_set(name: str, proto, model, stem: int) -> list[str]:
    return {"none": [], "stem": default_float_layers(proto, model, stem=stem, head=False),
            "stem+head": default_float_layers(proto, model, stem=stem, head=True)}[name]


def _check(kind: str, given: Sequence, allowed: Sequence) -> None:
    unknown = sorted(set(given) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; expected some of {list(allowed)}")


def search(detector: Detector, calibration_frames: Sequence[np.ndarray], eval_frames: Sequence[np.ndarray],
           ground_truth: Sequence[np.ndarray] | None = None, observers: Sequence[str] = OBSERVERS,
           schemes: Sequence[str] = tuple(ACT_SCHEMES), granularities: Sequence[str] = WEIGHT_GRANULARITIES,
           equalize: Sequence[bool] = EQUALIZE, float_sets: Sequence[str] = FLOAT_SETS, stem: int = 2,
           progress: bool = True) -> list[SearchRow]:
    """Score every configuration in simulation; best first.

    The fp32 reference is the unequalized folded model (equalization is exact only in float, so an
    equalized model's int8 error shows against it); a model where equalization finds no exact link gets no
    ``equalized=True`` rows (they would repeat the others). ``ground_truth`` (per eval frame, (G,4) xyxy boxes of
    the detector's classes) adds AP50 of the simulated int8 detections of those classes (conf 0.01, as in
    COCO-style evaluation). Histogram-based observers read their ranges from one statistics pass per model
    (``quant.statistics``), as ``quantize_detector`` does.
    """
    _check("float sets", float_sets, FLOAT_SETS)
    _check("activation schemes", schemes, tuple(ACT_SCHEMES))
    _check("weight granularities", granularities, WEIGHT_GRANULARITIES)
    if detector.model is None:
        raise ValueError(f"{detector.spec.name}: search needs the float torch model")
    folded = fold_batchnorm(detector.model.float().eval())  # a folded copy
    calib = preprocess_frames(detector.preprocess, calibration_frames)
    metas = [detector.preprocess(f) for f in eval_frames]
    evalset = EvalSet.build(folded, [b for b, _ in metas], [m for _, m in metas], detector.postprocess)
    ap_detector = Detector(detector.spec, detector.runner, conf_thresh=0.01, classes=detector.classes)
    rows = []
    for equalized in equalize:
        model = copy.deepcopy(folded)
        if equalized and not cross_layer_equalize(model, example_input=torch.from_numpy(calib[0])).equalized:
            continue  # no exact (ReLU/linear) link to equalize, e.g. an all-SiLU model: the same model again
        proto = fuse_silu(export_fp32(model, detector.spec.input_size))
        following = following_activations(proto, model)
        floats = {name: _float_set(name, proto, model, stem) for name in float_sets}
        stats: list[ConvStatistics] = []
        for observer, scheme in itertools.product(observers, schemes):
            if observer in HISTOGRAM_OBSERVERS:
                stats = stats or [gather_statistics(proto, model, calib, TORCH_THREADS)]
                ranges = stats[0].ranges(observer, following, ACT_SCHEMES[scheme])
            else:
                ranges = collect_ranges(model, calib, observer, progress=progress, activations=following,
                                        scheme=ACT_SCHEMES[scheme], num_threads=TORCH_THREADS)
            configs = list(itertools.product(granularities, float_sets))
            for granularity, float_set in tqdm(configs, desc=f"search ({observer}, {scheme}, equalize={equalized})",
                                               unit="config", disable=not progress):
                quantized = [n for n in conv_layers(model) if n not in floats[float_set]]
                plan = QuantPlan(ranges, quantized, scheme, observer, weight_granularity=granularity)
                raw = [run_simulated(model, plan, b) for b in evalset.blobs]
                agreement = compare(evalset, raw)
                ap50 = None
                if ground_truth is not None:
                    boxes = [ap_detector.postprocess(r, m) for r, m in zip(raw, evalset.metas)]
                    ap50 = coco_summary(boxes, ground_truth)["AP50"]
                rows.append(SearchRow(observer, scheme, granularity, equalized, float_set, len(floats[float_set]),
                                      agreement.f1, agreement.sqnr_db, agreement.cosine, ap50))
    return sorted(rows, key=lambda r: (-r.f1, -r.sqnr_db))


def write_table(rows: Sequence[SearchRow], out_prefix: str | Path) -> dict[str, Path]:
    """CSV and JSON of the search table; returns the paths."""
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {"csv": prefix.with_suffix(".csv"), "json": prefix.with_suffix(".json")}
    dicts = [asdict(r) for r in rows]
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(SearchRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(dicts)
    paths["json"].write_text(json.dumps(dicts, indent=1))
    return paths
