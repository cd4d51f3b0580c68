"""Post-training int8 quantization: observers, fusion, equalization, calibration, ONNX int8 export.

Public API::

    qdet = quant.quantize_detector(det, "path/to/MOT/sequence")   # observer="auto": percentile or minmax
    boxes = qdet(frame)           # same call signature as the fp32 detector, int8 in ONNX Runtime
    qdet.save("model_int8.onnx")  # detectors.load_detector("model_int8.onnx") loads it back
    quant.report(qdet.sensitivity, "out/sensitivity")   # per-layer table (CSV/JSON/PNG)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from int8track.detectors.detector import Detector
from int8track.quant.activation_ranges import following_activations
from int8track.quant.calibration import (DEFAULT_NUM_FRAMES, collect_ranges, correct_biases, load_frames, preprocess_frames,
                               torch_threads)
from int8track.quant.equalize import cross_layer_equalize
from int8track.quant.fold import fold_batchnorm
from int8track.quant.gptq import gptq_plan
from int8track.quant.migrate import migrate_convs
from int8track.quant.observers import OBSERVER_NAMES
from int8track.quant.onnx_export import (QuantizedDetector, default_float_layers, export_fp32, fuse_silu, insert_qdq)
from int8track.quant.sensitivity import (EvalSet, LayerSensitivity, LocalError, choose_float_layers, evaluate_plan,
                               layer_sensitivity, local_sensitivity, report, speed_plan)
from int8track.quant.simulate import ACT_SCHEMES, QuantPlan, conv_layers

__all__ = ["quantize_detector", "QuantizedDetector", "QuantPlan", "report", "LayerSensitivity", "QUANT_VERSION"]

#: Bumped whenever a change to the defaults or algorithms changes the int8 model made from the same inputs, so
#: caches (``apps.model_cache``) do not reuse a model made by older code. 2: activation-aware ranges + GPTQ;
#: 3: observer "auto" by default (percentile or minmax, chosen on held-out calibration frames).
QUANT_VERSION = 3

DEFAULT_OBSERVER = "auto"
EVAL_FRAMES = 32  # held out for a target search when no eval_frames are given (8 chose layers that did not generalise)
RANKING_FRAMES = 8
GPTQ_FRAMES = 32  # calibration frames whose conv inputs give the GPTQ Hessians
#: observers ``observer="auto"`` chooses between (the search never ranked entropy or MSE first on the real models)
AUTO_OBSERVERS = ("percentile", "minmax")


def _split_eval(frames: list[np.ndarray], eval_frames: Sequence[np.ndarray] | None,
                needed: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Calibration frames and held-out frames for the observer choice and the agreement search (every k-th
    frame, never both)."""
    if eval_frames is not None:
        return frames, list(eval_frames)
    if not needed:
        return frames, []
    if len(frames) < 2:
        raise ValueError("observer='auto' and target_agreement need at least 2 frames (calibration + held-out); "
                         "give more frames, eval_frames, or name an observer")
    step = max(2, len(frames) // EVAL_FRAMES)
    held = set(range(step // 2, len(frames), step))
    return [f for i, f in enumerate(frames) if i not in held], [frames[i] for i in sorted(held)]


def _best_observer_plan(model: torch.nn.Module, plan_for: Callable[[str], QuantPlan],
                        evalset: EvalSet) -> tuple[QuantPlan, dict[str, float]]:
    """The plan of the ``AUTO_OBSERVERS`` observer whose ranges agree best with fp32 (simulated F1, then SQNR,
    nearest rounding, before the speed plan) on the held-out frames, and every candidate's F1."""
    scored = []
    for name in AUTO_OBSERVERS:
        plan = plan_for(name)
        agreement = evaluate_plan(model, plan, evalset)
        scored.append(((agreement.f1, agreement.sqnr_db), plan))
    best = max(scored, key=lambda item: item[0])[1]
    return best, {plan.observer: score[0] for score, plan in scored}


def quantize_detector(detector: Detector, calibration_frames: str | Path | Sequence[np.ndarray], *,
                      observer: str = DEFAULT_OBSERVER, scheme: str = "uint8",
                      float_layers: Sequence[str] | None = None, stem_float: int = 2, head_float: bool = True,
                      target_agreement: float | None = None, eval_frames: Sequence[np.ndarray] | None = None,
                      ranking: str = "local", speed_aware: bool = True, equalize: bool = False,
                      bias_correction: bool = False, migrate: bool = False, migrate_alpha: float = 0.5,
                      activation_aware: bool = True, rounding: str = "gptq", weight_granularity: str = "per_channel",
                      num_frames: int | None = DEFAULT_NUM_FRAMES,
                      num_threads: int | None = None,
                      progress: bool = True) -> QuantizedDetector:
    """Calibrate ``detector`` (needs ``detector.model``) and return an int8 detector running in ONNX Runtime.

    Float set = ``float_layers`` if given, else the first ``stem_float`` convs plus (``head_float``) the
    head's pred convs; with ``target_agreement`` (detection F1 vs fp32 on held-out frames) the most
    sensitive convs are added greedily until the simulated F1 reaches it (no sensitivity pass, and an empty
    ``sensitivity`` table, when the plan already reaches it); ``ranking`` orders them by
    "local" error (each conv's own int8 output vs float, one pass) or "full" (detector output with
    that conv alone int8: one simulation per conv, slow). With ``speed_aware`` the early
    high-resolution stages stay float where whole-graph ORT timings (1 thread) show int8 there costs
    more than it saves (``quant.sensitivity.speed_plan``, run before the accuracy search); if no int8
    variant beats fp32, every conv stays float. ``calibration_frames``: a list
    of BGR frames, a video, an image folder or a MOT sequence folder (``num_frames`` evenly spaced).
    ``observer``: a name of ``quant.observers`` or "auto": ranges from each of ``AUTO_OBSERVERS``, keeping the one
    whose plan agrees best with fp32 on held-out frames (two calibration passes; ``quant_info["observer_f1"]``).
    ``equalize`` applies cross-layer equalization where it is exact (``quant.equalize``; it skips SiLU
    links) before calibrating; ``bias_correction`` corrects the biases of the final plan empirically
    (``quant.calibration.correct_biases``). ``migrate`` moves outlier channel ranges of every quantized
    conv's input into its weights (SmoothQuant, ``migrate_alpha``) and equalizes its output channel ranges,
    at the cost of one float per-channel ``Mul`` on each side (``quant.migrate``; exact in float).
    ``activation_aware`` chooses each conv output's lower bound for the error after the activation it
    feeds (``quant.activation_ranges``; SiLU/ReLU discard most of the negative side). ``rounding``:
    "gptq" rounds the int8 weights to minimise each conv's output error on calibration frames
    (``quant.gptq``), "nearest" rounds each weight alone. ``weight_granularity``: "per_channel" (default) or
    "per_tensor" weight scales.
    ``num_threads``: ONNX Runtime threads of the int8 detector, and torch threads while calibrating
    (None: ORT's default and torch's current setting). The result's ``quant_info`` holds the plan, the
    float set and the simulated agreement; ``sensitivity`` the per-layer table when a target was given.
    """
    if ranking not in ("local", "full"):
        raise ValueError(f"ranking must be 'local' or 'full', got {ranking!r}")
    if rounding not in ("gptq", "nearest"):
        raise ValueError(f"rounding must be 'gptq' or 'nearest', got {rounding!r}")
    if detector.model is None:
        raise ValueError(f"{detector.spec.name}: quantization needs the float torch model (detector.model is None)")
    if observer != "auto" and observer not in OBSERVER_NAMES:
        raise ValueError(f"unknown observer {observer!r}, expected 'auto' or one of {list(OBSERVER_NAMES)}")
    model = fold_batchnorm(detector.model.float().eval())  # a folded copy
    frames = load_frames(calibration_frames, num_frames)
    calib, held = _split_eval(frames, eval_frames, target_agreement is not None or observer == "auto")
    calib_blobs = preprocess_frames(detector.preprocess, calib)
    info: dict = {"quant_version": QUANT_VERSION, "observer": observer, "scheme": scheme, "calibration_frames": len(calib)}
    if equalize:  # only exact (positively homogeneous) links; SiLU links are skipped
        info["equalized_pairs"] = cross_layer_equalize(model, example_input=torch.from_numpy(calib_blobs[0])).equalized
    proto = fuse_silu(export_fp32(model, detector.spec.input_size))
    base_float = list(float_layers) if float_layers is not None else default_float_layers(
        proto, model, stem=stem_float, head=head_float)
    unknown = sorted(set(base_float) - set(conv_layers(model)))
    if unknown:
        raise ValueError(f"float_layers names no conv of {detector.spec.name}: {unknown[:5]}")
    if migrate:  # before calibration: ranges, speed plan and search all see the migrated model
        names = [n for n in conv_layers(model) if n not in base_float]
        info["migrated"] = migrate_convs(model, calib_blobs[:RANKING_FRAMES], names, migrate_alpha)
        proto = fuse_silu(export_fp32(model, detector.spec.input_size))
    evalset = None
    if held:
        metas = [detector.preprocess(f) for f in held]
        evalset = EvalSet.build(model, [b for b, _ in metas], [m for _, m in metas], detector.postprocess)
    activations = following_activations(proto, model) if activation_aware else None

    def plan_for(name: str) -> QuantPlan:
        ranges = collect_ranges(model, calib_blobs, name, progress=progress, num_threads=num_threads,
                                activations=activations, scheme=ACT_SCHEMES[scheme])
        return QuantPlan(ranges, [n for n in conv_layers(model) if n not in base_float], scheme, name,
                         weight_granularity=weight_granularity)

    if observer == "auto":
        plan, info["observer_f1"] = _best_observer_plan(model, plan_for, evalset)
        info["observer"] = plan.observer
    else:
        plan = plan_for(observer)
    info.update(activation_aware=activation_aware, rounding=rounding)
    table: list[LayerSensitivity | LocalError] = []
    if speed_aware:
        plan, info["speed_ms"] = speed_plan(proto, model, plan, calib_blobs[0])
    if rounding == "gptq":
        with torch_threads(num_threads):
            plan = gptq_plan(model, plan, calib_blobs[:GPTQ_FRAMES], progress=progress)
    reached = None  # the simulated agreement of ``plan`` on the held-out frames, once known
    if held:
        reached = evaluate_plan(model, plan, evalset)
        if target_agreement is not None and reached.f1 < target_agreement:
            if ranking == "full":
                table = layer_sensitivity(model, plan, evalset, progress=progress)
            else:
                table = local_sensitivity(model, plan, calib_blobs[:RANKING_FRAMES], progress=progress)
            extra, reached = choose_float_layers(model, plan, evalset, [r.layer for r in table], target_agreement,
                                                 progress=progress)
            plan = plan.with_float(extra)
    if bias_correction:  # quantized convs only: their biases go from the torch model into the QDQ graph
        info["bias_correction_max"] = correct_biases(model, plan, calib_blobs)
        reached = None if not held else evaluate_plan(model, plan, evalset)
    if held:
        info["simulated_agreement"] = vars(reached)
        info["eval_frames"] = len(held)
    info["float_layers"] = [n for n in conv_layers(model) if n not in plan.quantized]
    info["plan"] = plan.to_dict()
    qproto = insert_qdq(proto, model, plan)
    qdet = QuantizedDetector(detector.spec, qproto, info, num_threads, detector.conf_thresh,
                             detector.nms_thresh, detector.classes)
    qdet.sensitivity = table
    qdet.float_model, qdet.plan = model, plan
    return qdet
