"""``quantize_detector`` as named steps: prepare the float model and frames, gather calibration statistics once,
choose the observer, time the speed candidates, round the weights, and accept the first plan that reaches the
accuracy floor (widening the float set by sensitivity when none does)."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from int8track.detectors.detector import Detector
from int8track.quant.activation_ranges import Activation, following_activations
from int8track.quant.calibration import collect_ranges, correct_biases, load_frames, preprocess_frames, torch_threads
from int8track.quant.config import AUTO_OBSERVERS, QuantConfig
from int8track.quant.equalize import cross_layer_equalize
from int8track.quant.floor import Agreement2, Floor, HeldOut
from int8track.quant.fold import fold_batchnorm
from int8track.quant.gptq import gptq_plan
from int8track.quant.migrate import migrate_convs
from int8track.quant.onnx_export import QuantizedDetector, default_float_layers, export_fp32, fuse_silu, insert_qdq
from int8track.quant.report import QuantReport
from int8track.quant.sensitivity import EvalSet, LayerSensitivity, LocalError, layer_sensitivity, local_sensitivity
from int8track.quant.simulate import ACT_SCHEMES, QuantPlan, conv_layers
from int8track.quant.speed import (
    SpeedPlan,
    SpeedTimings,
    conv_strides,
    speed_candidates,
    speed_plan,
    timed_against_fp32,
)
from int8track.quant.speed_table import SpeedTable
from int8track.quant.statistics import HISTOGRAM_OBSERVERS, ConvStatistics, gather_statistics

RANKING_FRAMES = 8  # frames for the local sensitivity ranking (a ranking, not a measurement)
#: torch threads of the calibration passes: one thread is faster than two on a shared machine (every
#: multi-threaded op waits at a barrier for a thread that may be descheduled), and the float sums of GPTQ
#: then do not depend on the caller's thread count
TORCH_THREADS = 1


@dataclass
class Prepared:
    """The folded float model, its fp32 ONNX graph, calibration blobs and held-out frames."""

    detector: Detector
    model: nn.Module
    proto: onnx.ModelProto
    calib_blobs: list[np.ndarray]
    held: list[np.ndarray]
    base_float: list[str]
    activations: dict[str, Activation] | None
    extra: dict[str, Any] = field(default_factory=dict)

    def plan(self, ranges: dict[str, tuple[float, float]], observer: str, config: QuantConfig) -> QuantPlan:
        return QuantPlan(ranges, [n for n in conv_layers(self.model) if n not in self.base_float], config.scheme,
                         observer, weight_granularity=config.weight_granularity)

    @cached_property
    def strides(self) -> dict[str, int]:
        """Output stride of every conv (``conv_strides``: one forward pass, so computed once)."""
        return conv_strides(self.model, self.detector.spec.input_size)

    def speed_candidates(self, plan: QuantPlan) -> dict[str, QuantPlan]:
        return speed_candidates(plan, self.strides)

    def timing_plan(self, config: QuantConfig) -> QuantPlan:
        """A plan with placeholder ranges, for timing graphs: ORT's int8 kernels take as long whatever the scales."""
        quantized = [n for n in conv_layers(self.model) if n not in self.base_float]
        ranges = {f"{n}:{side}": (-1.0, 1.0) for n in quantized for side in ("in", "out")}
        return QuantPlan(ranges, quantized, config.scheme, "timing", weight_granularity=config.weight_granularity)

    def all_float_plan(self, config: QuantConfig) -> QuantPlan:
        return QuantPlan({}, [], config.scheme, config.observer, weight_granularity=config.weight_granularity)

    def int8_bytes(self, plan: QuantPlan) -> bytes:
        return insert_qdq(self.proto, self.model, plan).SerializeToString()

    def timed(self, speed: SpeedPlan, plan: QuantPlan, table: SpeedTable) -> SpeedTimings:
        """fp32 and ``plan`` timed on the first calibration frame (``speed.timed_against_fp32``)."""
        return timed_against_fp32(speed, plan, self.proto, self.model, self.calib_blobs[0], table)


class Timer:
    """Seconds per named step, and frames per second where a step has a frame count."""

    def __init__(self, progress: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.rates: dict[str, float] = {}
        self.progress = progress

    def step(self, name: str, frames: int | None = None) -> _Step:
        return _Step(self, name, frames)


class _Step:
    def __init__(self, timer: Timer, name: str, frames: int | None) -> None:
        self.timer, self.name, self.frames = timer, name, frames

    def __enter__(self) -> None:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        took = time.perf_counter() - self.start
        self.timer.seconds[self.name] = self.timer.seconds.get(self.name, 0.0) + took
        self.timer.cpu_seconds[self.name] = time.process_time() - self.cpu_start
        rate = ""
        if self.frames:
            self.timer.rates[self.name] = self.frames / max(took, 1e-9)
            rate = f", {self.frames} frames, {self.timer.rates[self.name]:.1f} frames/s"
        if self.timer.progress and not exc[0]:
            cpu = self.timer.cpu_seconds[self.name]
            print(f"int8: {self.name}: {took:.1f} s (cpu {cpu:.1f} s){rate}", file=sys.stderr, flush=True)


def split_frames(frames: list[np.ndarray], held_count: int,
                 eval_frames: Sequence[np.ndarray] | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Calibration frames and held-out frames (every k-th frame, never both), or ``eval_frames`` if given."""
    if eval_frames is not None:
        return frames, list(eval_frames)
    if len(frames) < 2 or held_count < 1:
        raise ValueError(f"the accuracy floor needs held-out frames: got {len(frames)} frames, "
                         f"held_out_frames={held_count}; give at least 2 frames or eval_frames")
    step = max(2, len(frames) // held_count)
    held = set(range(step // 2, len(frames), step))
    return [f for i, f in enumerate(frames) if i not in held], [frames[i] for i in sorted(held)]


def prepare(detector: Detector, source: str | Path | Sequence[np.ndarray], config: QuantConfig,
            eval_frames: Sequence[np.ndarray] | None) -> Prepared:
    """Fold BatchNorm, read and split the frames, export the fp32 graph, apply the optional float rewrites."""
    if detector.model is None:
        raise ValueError(f"{detector.spec.name}: quantization needs the float torch model (detector.model is None)")
    model = fold_batchnorm(detector.model.float().eval())  # a folded copy
    calib, held = split_frames(load_frames(source, config.num_frames), config.held_out_frames, eval_frames)
    blobs = preprocess_frames(detector.preprocess, calib)
    extra: dict[str, Any] = {}
    if config.equalize:  # only exact (positively homogeneous) links; SiLU links are skipped
        extra["equalized_pairs"] = cross_layer_equalize(model, example_input=torch.from_numpy(blobs[0])).equalized
    proto = fuse_silu(export_fp32(model, detector.spec.input_size))
    base_float = list(config.float_layers) if config.float_layers is not None else default_float_layers(
        proto, model, stem=config.stem_float, head=config.head_float)
    unknown = sorted(set(base_float) - set(conv_layers(model)))
    if unknown:
        raise ValueError(f"float_layers names no conv of {detector.spec.name}: {unknown[:5]}")
    if config.migrate:  # before calibration: ranges, speed plan and floor all see the migrated model
        names = [n for n in conv_layers(model) if n not in base_float]
        extra["migrated"] = migrate_convs(model, blobs[:RANKING_FRAMES], names, config.migrate_alpha)
        proto = fuse_silu(export_fp32(model, detector.spec.input_size))
    activations = following_activations(proto, model) if config.activation_aware else None
    return Prepared(detector, model, proto, blobs, held, base_float, activations, extra)


def range_source(prep: Prepared, config: QuantConfig) -> Callable[[str], dict[str, tuple[float, float]]]:
    """observer name -> ranges: histogram observers from one shared pass, others from their own pass."""
    scheme = ACT_SCHEMES[config.scheme]
    stats: list[ConvStatistics] = []

    def ranges(observer: str) -> dict[str, tuple[float, float]]:
        if observer not in HISTOGRAM_OBSERVERS:
            return collect_ranges(prep.model, prep.calib_blobs, observer, progress=False, num_threads=TORCH_THREADS,
                                  activations=prep.activations, scheme=scheme)
        if not stats:
            stats.append(gather_statistics(prep.proto, prep.model, prep.calib_blobs, TORCH_THREADS))
        return stats[0].ranges(observer, prep.activations, scheme)

    return ranges


def choose_observer(prep: Prepared, config: QuantConfig, ranges: Callable[[str], dict[str, tuple[float, float]]],
                    held: HeldOut) -> tuple[QuantPlan, dict[str, Agreement2]]:
    """The plan of the configured observer, or with "auto" of the ``AUTO_OBSERVERS`` one whose int8 model (nearest
    rounding, no speed plan) agrees best with fp32 on the held-out frames (the worse threshold first)."""
    names = AUTO_OBSERVERS if config.observer == "auto" else (config.observer,)
    plans = {name: prep.plan(ranges(name), name, config) for name in names}
    if len(plans) == 1:
        return plans[names[0]], {}
    scores = {name: held.score(prep.int8_bytes(plan)) for name, plan in plans.items()}
    best = max(names, key=lambda n: (min(scores[n].high, scores[n].low), scores[n].high + scores[n].low))
    return plans[best], scores


def round_weights(prep: Prepared, plan: QuantPlan, config: QuantConfig) -> QuantPlan:
    if config.rounding != "gptq" or not plan.quantized:
        return plan
    with torch_threads(TORCH_THREADS):
        return gptq_plan(prep.model, plan, prep.calib_blobs[:config.gptq_frames])


def sensitivity_order(prep: Prepared, plan: QuantPlan,
                      config: QuantConfig) -> tuple[list[str], list[LayerSensitivity | LocalError]]:
    """Quantized convs, most sensitive first (``config.ranking``), and the table behind the order."""
    table: list[LayerSensitivity | LocalError]
    if config.ranking == "full":
        metas = [prep.detector.preprocess(f) for f in prep.held]
        evalset = EvalSet.build(prep.model, [b for b, _ in metas], [m for _, m in metas], prep.detector.postprocess)
        table = list(layer_sensitivity(prep.model, plan, evalset, progress=False))
    else:
        table = list(local_sensitivity(prep.model, plan, prep.calib_blobs[:RANKING_FRAMES], progress=False))
    return [row.layer for row in table], table


def widen_float_set(plan: QuantPlan, order: Sequence[str], meets: Callable[[QuantPlan], bool],
                    fast: Callable[[QuantPlan], bool] | None = None) -> QuantPlan | None:
    """The plan with the shortest prefix of ``order`` kept float that ``meets`` the floor (prefixes grow 1, 2, 4,
    ..., then the last step is bisected); None when even every listed conv float misses it, or when a growing
    prefix stops being ``fast`` before one meets the floor (each float conv adds layout reorders at its int8
    boundaries, so a longer prefix is not faster, and scoring it would be wasted)."""
    order = [n for n in order if n in plan.quantized]
    cache: dict[int, bool] = {}

    def ok(k: int) -> bool:
        if k not in cache:
            cache[k] = meets(plan.with_float(order[:k]))
        return cache[k]

    lo, hi = 0, 1
    while True:
        if fast is not None and not fast(plan.with_float(order[:hi])):
            return None
        if hi >= len(order) or ok(hi):
            break
        lo, hi = hi, min(len(order), 2 * hi)
    if not ok(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return plan.with_float(order[:hi])


ALL_FLOAT = Agreement2(1.0, 1.0)  # an all-float plan is the fp32 model: it agrees with itself


@dataclass(frozen=True)
class Calibrated:
    """The calibrated plan (chosen observer's ranges, the speed plan's float set, rounded weights), the observers'
    held-out scores when several were tried, and the largest bias correction per conv when one was applied."""

    plan: QuantPlan
    observer_scores: dict[str, Agreement2]
    bias_correction_max: dict[str, float] | None = None


@dataclass(frozen=True)
class Acceptance:
    """What the accuracy floor and the final speed check settled on: the plan (all float: the fp32 model), its
    agreement with fp32, why it was accepted (``label``), the candidates that missed the floor, the sensitivity
    table behind a widened float set, whether int8 stayed faster than fp32 and the timings that said so."""

    plan: QuantPlan
    agreement: Agreement2
    label: str
    rejected: tuple[dict[str, Any], ...] = ()
    table: tuple[LayerSensitivity | LocalError, ...] = ()
    int8_faster: bool = True
    timings: SpeedTimings | None = None


def quantize(detector: Detector, source: str | Path | Sequence[np.ndarray], config: QuantConfig, *,
             eval_frames: Sequence[np.ndarray] | None = None, num_threads: int | None = None,
             speed_table: str | Path | None = None, progress: bool = True) -> QuantizedDetector:
    """Make the int8 detector ``config`` describes; see ``quant.quantize_detector``."""
    timer = Timer(progress)
    with timer.step("reading frames and exporting the float graph"):
        prep = prepare(detector, source, config, eval_frames)
    with timer.step("fp32 reference and floor on held-out frames", len(prep.held)):
        held = HeldOut(detector, prep.proto.SerializeToString(), prep.held, num_threads)
        floor = (Floor(config.target_agreement, config.target_agreement, "target_agreement")
                 if config.target_agreement is not None else held.jpeg_floor(config.floor_jpeg_quality))
    speeds = SpeedTable(speed_table)
    speed = None
    if config.speed_aware and prep.base_float != list(conv_layers(prep.model)):
        # before calibration: graph speed does not depend on the ranges, and when no int8 graph beats fp32 by the
        # margin the statistics, observer choice and weight rounding are not needed at all
        with timer.step("speed plan (interleaved ORT timings)"):
            speed = speed_plan(prep.proto, prep.model, prep.timing_plan(config), prep.calib_blobs[0],
                               strides=prep.strides, margin=config.speed_margin, table=speeds)
    calibrated = None
    if speed is not None and not speed.int8_pays_off:
        outcome = Acceptance(prep.all_float_plan(config), ALL_FLOAT, "fp32 (int8 not faster; not calibrated)",
                             int8_faster=False)
    else:
        calibrated = calibrate(prep, config, held, speed, timer)
        with timer.step("accuracy floor"):
            outcome = accept(prep, config, calibrated.plan, held, floor, speed, speeds)
        if speed is not None and outcome.plan.quantized:
            outcome = final_speed_check(prep, outcome, speed, config.speed_margin, speeds)
    report = build_report(prep, config, floor, speed, calibrated, outcome, timer)
    return QuantizedDetector(detector.spec, insert_qdq(prep.proto, prep.model, outcome.plan), report, num_threads,
                             detector.conf_thresh, detector.nms_thresh, detector.classes,
                             plan=outcome.plan, float_model=prep.model, sensitivity=outcome.table)


def calibrate(prep: Prepared, config: QuantConfig, held: HeldOut, speed: SpeedPlan | None, timer: Timer) -> Calibrated:
    """Statistics, observer choice, the speed plan's float set, weight rounding and bias correction."""
    ranges = range_source(prep, config)
    with timer.step("calibration statistics (one pass, all observers)", len(prep.calib_blobs)):
        ranges(AUTO_OBSERVERS[0] if config.observer == "auto" else config.observer)
    with timer.step("observer choice on held-out frames", len(prep.held)):
        plan, scores = choose_observer(prep, config, ranges, held)
    if speed is not None:  # the timed float set, with the chosen observer's ranges
        plan = prep.speed_candidates(plan)[speed.chosen]
    if config.rounding == "gptq":
        with timer.step("GPTQ weight rounding", min(config.gptq_frames, len(prep.calib_blobs))):
            plan = round_weights(prep, plan, config)
    correction = correct_biases(prep.model, plan, prep.calib_blobs) if config.bias_correction else None
    return Calibrated(plan, scores, correction)


def final_speed_check(prep: Prepared, outcome: Acceptance, speed: SpeedPlan, margin: float,
                      table: SpeedTable) -> Acceptance:
    """``outcome`` with its timings against fp32, or the fp32 model when its plan is not clearly faster."""
    timings = prep.timed(speed, outcome.plan, table)
    if timings.clearly_faster(timings.int8_name(), margin):
        return replace(outcome, timings=timings)
    return replace(outcome, plan=outcome.plan.with_float(outcome.plan.quantized), agreement=ALL_FLOAT,
                   label=f"{outcome.label} -> fp32: the int8 plan that reached the floor is not faster than fp32",
                   int8_faster=False, timings=timings)


def build_report(prep: Prepared, config: QuantConfig, floor: Floor, speed: SpeedPlan | None,
                 calibrated: Calibrated | None, outcome: Acceptance, timer: Timer) -> QuantReport:
    """The report of one quantization, from what its steps returned."""
    extra: dict[str, Any] = dict(prep.extra)
    if speed is not None:
        extra["speed_timings"] = "reused from the speed table" if speed.reused else "measured now"
        if not speed.reused:
            extra["speed_rounds"] = {"rounds": speed.timings.rounds, "stable": speed.timings.stable,
                                     "ratio_error": speed.timings.spread}
    if calibrated is not None and calibrated.bias_correction_max is not None:
        extra["bias_correction_max"] = calibrated.bias_correction_max
    if outcome.timings is not None:
        extra["accepted_speed_ms"] = dict(outcome.timings.ms)
    return QuantReport(
        config=config.key(), calibration_frames=len(prep.calib_blobs), eval_frames=len(prep.held),
        observer=calibrated.plan.observer if calibrated is not None else config.observer,
        observer_scores={name: {"high": s.high, "low": s.low}
                         for name, s in (calibrated.observer_scores if calibrated is not None else {}).items()},
        floor={"high": floor.high, "low": floor.low, "source": floor.source},
        agreement={"high": outcome.agreement.high, "low": outcome.agreement.low},
        speed_ms=dict(speed.timings.ms) if speed is not None else {},
        speed_choice=speed.chosen if speed is not None else "", int8_faster=outcome.int8_faster,
        rejected=list(outcome.rejected), accepted=outcome.label, quantized_convs=len(outcome.plan.quantized),
        float_layers=[n for n in conv_layers(prep.model) if n not in outcome.plan.quantized],
        all_float=not outcome.plan.quantized, weight_qmax=outcome.plan.weight_qmax, seconds=dict(timer.seconds),
        cpu_seconds=dict(timer.cpu_seconds),
        frames_per_second=dict(timer.rates), extra=extra)


def accept(prep: Prepared, config: QuantConfig, plan: QuantPlan, held: HeldOut, floor: Floor,
           speed: SpeedPlan | None, speeds: SpeedTable) -> Acceptance:
    """The first plan reaching ``floor``: ``plan``, then the more-float speed candidates, then ``plan`` with the
    most sensitive convs kept float (as few as reach it, while still clearly faster than fp32 when the speed
    plan ran), then every conv float."""
    scored: dict[tuple[str, ...], Agreement2] = {}
    rejected: list[dict[str, Any]] = []

    def meets(candidate: QuantPlan, label: str | None = None) -> bool:
        key = tuple(candidate.quantized)
        if key not in scored:
            scored[key] = held.score(prep.int8_bytes(candidate)) if candidate.quantized else ALL_FLOAT
            if label is not None and not floor.met_by(scored[key]):
                rejected.append({"candidate": label, "high": scored[key].high, "low": scored[key].low})
        return floor.met_by(scored[key])

    def accepted(candidate: QuantPlan, label: str, table: Sequence[LayerSensitivity | LocalError] = ()) -> Acceptance:
        return Acceptance(candidate, scored[tuple(candidate.quantized)], label, tuple(rejected), tuple(table))

    label = f"{plan.observer}, {speed.chosen}" if speed is not None else plan.observer
    if meets(plan, label):
        return accepted(plan, label)
    if speed is not None:
        # more-float candidates clearly faster than fp32 only: one that is not would end as fp32 after the final
        # speed check, where the chosen candidate with its most sensitive convs float may still be clearly faster
        candidates = prep.speed_candidates(plan)
        for name in speed.more_float_than_chosen(config.speed_margin):
            if meets(candidates[name], f"{plan.observer}, {name}"):
                return accepted(candidates[name], f"{plan.observer}, {name}")
    order, table = sensitivity_order(prep, plan, config)
    too_slow: list[int] = []  # float convs of the first widened plan not clearly faster than fp32

    def fast(candidate: QuantPlan) -> bool:
        assert speed is not None  # only passed when the speed plan ran
        timings = prep.timed(speed, candidate, speeds)
        if timings.clearly_faster(timings.int8_name(), config.speed_margin):
            return True
        too_slow.append(len(plan.quantized) - len(candidate.quantized))
        return False

    widened = widen_float_set(plan, order, meets, fast if speed is not None else None)
    if widened is not None and widened.quantized:
        return accepted(widened, f"{plan.observer}, {len(plan.quantized) - len(widened.quantized)} more convs float "
                                 f"(by {config.ranking} sensitivity)", table)
    everything_float = plan.with_float(plan.quantized)
    if too_slow:
        why = (f"all float: int8 is not faster than fp32 (by the margin) with {too_slow[0]} of its most sensitive "
               "convs float, and with fewer it missed the floor")
        return Acceptance(everything_float, ALL_FLOAT, why, tuple(rejected), tuple(table), int8_faster=False)
    return Acceptance(everything_float, ALL_FLOAT, "all float (no int8 plan reached the floor)", tuple(rejected),
                      tuple(table))
