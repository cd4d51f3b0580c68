"""Search over quantization settings (observer x activation scheme x float set) on held-out frames.

Every configuration is scored in simulation against fp32 (detection F1, SQNR) and, where ground truth
is given, by AP50; the best is picked by F1 (then SQNR). Results are a table (CSV/JSON) a user can open.
"""
from __future__ import annotations

import csv
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from detectors.detector import Detector
from detectors.evaluation import coco_summary
from quant.calibration import collect_ranges, preprocess_frames
from quant.fold import fold_batchnorm
from quant.onnx_export import default_float_layers, export_fp32
from quant.sensitivity import EvalSet, compare
from quant.simulate import ACT_SCHEMES, QuantPlan, conv_layers, run_simulated

OBSERVERS = ("minmax", "percentile", "entropy", "mse")
FLOAT_SETS = ("none", "stem", "stem+head")


@dataclass
class SearchRow:
    """One configuration and its scores against fp32 (and gt, when given)."""

    observer: str
    scheme: str
    float_set: str
    float_layers: int
    f1: float
    sqnr_db: float
    cosine: float
    ap50: float | None


def _float_set(name: str, proto, model, stem: int) -> list[str]:
    return {"none": [], "stem": default_float_layers(proto, model, stem=stem, head=False),
            "stem+head": default_float_layers(proto, model, stem=stem, head=True)}[name]


def search(detector: Detector, calibration_frames: Sequence[np.ndarray], eval_frames: Sequence[np.ndarray],
           ground_truth: Sequence[np.ndarray] | None = None, observers: Sequence[str] = OBSERVERS,
           schemes: Sequence[str] = tuple(ACT_SCHEMES), float_sets: Sequence[str] = FLOAT_SETS, stem: int = 2,
           progress: bool = True) -> list[SearchRow]:
    """Score every (observer, scheme, float set) in simulation; best first.

    ``ground_truth`` (per eval frame, (G,4) xyxy person boxes) adds person AP50 of the simulated
    int8 detections (class 0, conf 0.01, as in COCO-style evaluation).
    """
    unknown = sorted(set(float_sets) - set(FLOAT_SETS))
    if unknown:
        raise ValueError(f"unknown float sets {unknown}; expected some of {FLOAT_SETS}")
    if detector.model is None:
        raise ValueError(f"{detector.spec.name}: search needs the float torch model")
    model = fold_batchnorm(detector.model.float().eval())  # a folded copy
    proto = export_fp32(model, detector.spec.input_size)
    calib = preprocess_frames(detector.preprocess, calibration_frames)
    metas = [detector.preprocess(f) for f in eval_frames]
    evalset = EvalSet.build(model, [b for b, _ in metas], [m for _, m in metas], detector.postprocess)
    ap_detector = Detector(detector.spec, detector.runner, conf_thresh=0.01, classes=[0])
    rows = []
    for observer in observers:
        ranges = collect_ranges(model, calib, observer, progress=progress)
        for scheme, float_set in tqdm(list(itertools.product(schemes, float_sets)), desc=f"search ({observer})",
                                      unit="config", disable=not progress):
            floats = _float_set(float_set, proto, model, stem)
            plan = QuantPlan(ranges, [n for n in conv_layers(model) if n not in floats], scheme, observer)
            raw = [run_simulated(model, plan, b) for b in evalset.blobs]
            agreement = compare(evalset, raw)
            ap50 = None
            if ground_truth is not None:
                boxes = [ap_detector.postprocess(r, m) for r, m in zip(raw, evalset.metas)]
                ap50 = coco_summary(boxes, ground_truth)["AP50"]
            rows.append(SearchRow(observer, scheme, float_set, len(floats), agreement.f1, agreement.sqnr_db,
                                  agreement.cosine, ap50))
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
