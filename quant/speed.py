"""Which convs are worth int8 on this machine: the speed candidates, their timing against fp32, the one speed rule
and the plan it gives.

The candidates keep every conv of output stride < s float, for each stride s (``speed_candidates``): whole graphs
are timed, not single layers, because ONNX Runtime runs float convs in its blocked NCHWc layout and int8 convs in
NHWC, so every float/int8 boundary adds layout reorders that per-layer timings miss.

The plan must not depend on what else the machine is doing while it is measured (it is measured once per graph and
machine, ``quant.speed_table``, and then decides every later model). Two things make it so:

* the timing (``time_models``) is of ratios to fp32 within interleaved rounds, not of absolute times: a busy
  machine slows every graph of a round alike, and the median of the per-round ratios drops rounds where it did not.
  Rounds go on until every ratio's median is known to a fraction of ``TIE_MARGIN`` (``SpeedTimings.stable``),
  up to a cap.
* the choice between int8 candidates (``pick_candidate``) takes the fastest, and prefers a candidate keeping more
  convs float only when it is tied with the fastest (within ``TIE_MARGIN``, a few times the ratio's noise).
  Preferring the more-float candidate up to ``speed_margin`` (15%) put the boundary in the middle of real
  candidates: yolov5n's "int8 from stride 16" is about that much slower than its fastest candidate, so the same
  command chose stride 16 or stride 8 by the noise of the moment (benchmarks/README.md, "Speed plan under load").
  ``speed_margin`` remains the bar int8 must clear against fp32 (``clearly_faster``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from int8track.detectors.runtime import create_session
from int8track.quant.config import SPEED_MARGIN
from int8track.quant.onnx_export import insert_qdq
from int8track.quant.simulate import QuantPlan, conv_layers
from int8track.quant.speed_table import SpeedTable

FP32 = "fp32"
#: int8 candidates whose ratios to fp32 differ by less than this (relative) count as equally fast, and the one
#: keeping more convs float is chosen: a few times the noise of a ratio's median (``STABLE_FRACTION`` of it), and
#: below the gaps between successive stride candidates of the real models (benchmarks/README.md).
TIE_MARGIN = 0.05
#: rounds go on until the standard error of every ratio's median is below this fraction of ``TIE_MARGIN``
STABLE_FRACTION = 0.2
MIN_ROUNDS = 9
MAX_ROUNDS = 60

RoundTimer = Callable[[Sequence[str]], dict[str, float]]  # model names, in run order -> ms of each


def clearly_faster(fp32_ms: float, candidate_ms: float, margin: float) -> bool:
    """The speed rule: ``candidate_ms`` beats ``fp32_ms`` by more than ``margin`` (relative)."""
    return fp32_ms > candidate_ms * (1.0 + margin)


@dataclass(frozen=True)
class SpeedTimings:
    """ms per graph, fp32 first then the candidates in their order; ``rounds`` interleaved rounds measured them
    (0: read from the speed table), ``spread`` is each ratio's relative standard error and ``stable`` says whether
    every spread reached ``STABLE_FRACTION * TIE_MARGIN`` before ``MAX_ROUNDS``."""

    ms: dict[str, float]
    rounds: int = 0
    spread: dict[str, float] = field(default_factory=dict)
    stable: bool = True

    def __post_init__(self) -> None:
        if next(iter(self.ms), None) != FP32:
            raise ValueError(f"speed timings must start with {FP32!r}, got {list(self.ms)}")
        bad = {name: ms for name, ms in self.ms.items() if not (np.isfinite(ms) and ms > 0)}
        if bad:
            raise ValueError(f"speed timings must be positive finite ms, got {bad}")

    @property
    def fp32_ms(self) -> float:
        return self.ms[FP32]

    def clearly_faster(self, name: str, margin: float) -> bool:
        """Whether candidate ``name`` beats fp32 by more than ``margin``."""
        return clearly_faster(self.fp32_ms, self.ms[name], margin)

    def int8_name(self) -> str:
        """The one candidate of timings made by ``timed_against_fp32``."""
        return next(name for name in self.ms if name != FP32)


def measure_ratios(names: Sequence[str], run_round: RoundTimer, min_rounds: int = MIN_ROUNDS,
                   max_rounds: int = MAX_ROUNDS, tolerance: float = STABLE_FRACTION * TIE_MARGIN) -> SpeedTimings:
    """Interleaved rounds of ``run_round`` (each runs every model once, the order rotated each round) until every
    candidate's median ratio to ``names[0]`` (fp32) has a relative standard error below ``tolerance`` (at least
    ``min_rounds``, at most ``max_rounds``). fp32's ms is its fastest run; a candidate's is that times its median
    ratio, so every decision on these timings is a decision on ratios, which the machine's load barely moves."""
    if len(names) < 2 or names[0] != FP32:
        raise ValueError(f"measure_ratios needs {FP32!r} first and at least one candidate, got {list(names)}")
    if not 1 <= min_rounds <= max_rounds:
        raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {min_rounds}, {max_rounds}")
    times: dict[str, list[float]] = {name: [] for name in names}
    spread: dict[str, float] = {}
    for k in range(max_rounds):
        order = list(names[k % len(names):]) + list(names[:k % len(names)])  # no graph always runs first
        ms = run_round(order)
        for name in names:
            times[name].append(ms[name])
        ratios = {name: np.asarray(times[name]) / np.asarray(times[FP32]) for name in names[1:]}
        spread = {name: _median_error(r) for name, r in ratios.items()}
        if k + 1 >= min_rounds and max(spread.values()) < tolerance:
            break
    fp32 = float(np.min(times[FP32]))
    return SpeedTimings({FP32: fp32, **{name: fp32 * float(np.median(r)) for name, r in ratios.items()}},
                        rounds=k + 1, spread=spread, stable=bool(max(spread.values()) < tolerance))


def _median_error(values: np.ndarray) -> float:
    """Relative standard error of the median: 1.253 sigma / sqrt(n), sigma from the median absolute deviation
    (robust: the rounds a busy machine spoiled are outliers, not spread)."""
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    return float(1.2533 * sigma / np.sqrt(len(values)) / median)


def time_models(models: dict[str, bytes], blob: np.ndarray, num_threads: int = 1, **rounds: int) -> SpeedTimings:
    """``measure_ratios`` of ONNX models (fp32 first) on ``blob``, one warm-up run each.

    With one ORT thread the graph runs on the calling thread, so its CPU time (``thread_time``) is measured: unlike
    wall time it does not grow while other processes hold the cores. ``rounds``: ``min_rounds``/``max_rounds``.
    """
    return time_sessions({name: create_session(data, num_threads) for name, data in models.items()}, blob,
                         num_threads, **rounds)


def time_sessions(sessions: dict[str, Any], blob: np.ndarray, num_threads: int = 1, **rounds: int) -> SpeedTimings:
    """``time_models`` of ONNX Runtime sessions already made (fp32 first) with ``num_threads`` threads each."""
    clock = time.thread_time if num_threads == 1 else time.perf_counter
    feeds = {name: {s.get_inputs()[0].name: blob} for name, s in sessions.items()}
    for name, session in sessions.items():
        session.run(None, feeds[name])  # warm-up

    def run_round(order: Sequence[str]) -> dict[str, float]:
        ms = {}
        for name in order:
            start = clock()
            sessions[name].run(None, feeds[name])
            ms[name] = (clock() - start) * 1000
        return ms

    return measure_ratios(list(sessions), run_round, **rounds)


@torch.no_grad()
def conv_strides(model: nn.Module, input_hw: tuple[int, int]) -> dict[str, int]:
    """Output stride (input height / output height) of every conv."""
    strides: dict[str, int] = {}
    handles = [conv.register_forward_hook(
        lambda _m, _a, out, n=name: strides.__setitem__(n, int(round(input_hw[0] / out.shape[-2]))))
        for name, conv in conv_layers(model).items()]
    try:
        model(torch.zeros(1, 3, *input_hw))
    finally:
        for h in handles:
            h.remove()
    return strides


def speed_candidates(plan: QuantPlan, strides: Mapping[str, int]) -> dict[str, QuantPlan]:
    """fp32 (every conv float), then ``plan`` with every conv of output stride < s kept float for s = ..., 8, 4
    (the last one is ``plan`` itself): from most convs float to fewest. ``strides``: ``conv_strides``."""
    candidates = {FP32: plan.with_float(plan.quantized)}
    for s in sorted({strides[n] for n in plan.quantized}, reverse=True):
        candidates[f"int8 from stride {s}"] = plan.with_float([n for n in plan.quantized if strides[n] < s])
    return candidates


def pick_candidate(timings: SpeedTimings, margin: float, tie: float = TIE_MARGIN) -> str:
    """fp32 unless an int8 candidate is ``clearly_faster`` than it by ``margin``; then, of the candidates that are,
    the first (most convs float) tied with the fastest of them (``clearly_faster`` by ``tie`` is not a tie).
    ``timings.ms``: fp32, then the candidates from most convs float to fewest (``speed_candidates``' order)."""
    eligible = [name for name in timings.ms if name != FP32 and timings.clearly_faster(name, margin)]
    if not eligible:
        return FP32
    fastest = min(timings.ms[name] for name in eligible)
    return next(name for name in eligible if not clearly_faster(timings.ms[name], fastest, tie))


@dataclass(frozen=True)
class SpeedPlan:
    """The timed candidates (fp32 first), their timings, the chosen one and whether it came from the speed table."""

    candidates: dict[str, QuantPlan]
    timings: SpeedTimings
    chosen: str
    reused: bool

    @property
    def int8_pays_off(self) -> bool:
        return self.chosen != FP32

    def more_float_than_chosen(self, margin: float) -> list[str]:
        """Candidates keeping more convs float than the chosen one and still ``clearly_faster`` than fp32, the
        nearest to the chosen one first (the order to try them in when the chosen one misses the floor)."""
        names = [n for n in self.candidates if n != FP32]
        before = names[:names.index(self.chosen)] if self.chosen in names else []
        return [n for n in reversed(before) if self.timings.clearly_faster(n, margin)]


def speed_plan(proto: onnx.ModelProto, model: nn.Module, plan: QuantPlan, blob: np.ndarray, *,
               strides: Mapping[str, int], margin: float = SPEED_MARGIN, table: SpeedTable | None = None,
               num_threads: int = 1) -> SpeedPlan:
    """Times every ``speed_candidates`` graph of ``plan`` against fp32 (or reads the timings from ``table``, where
    an earlier run on this machine stored them) and picks one (``pick_candidate``).
    ``strides``: ``conv_strides`` of ``model`` at the blob's size."""
    candidates = speed_candidates(plan, strides)
    fp32 = proto.SerializeToString()

    def measure() -> dict[str, float]:
        models = {name: fp32 if name == FP32 else insert_qdq(proto, model, p).SerializeToString()
                  for name, p in candidates.items()}
        measured.append(time_models(models, blob, num_threads))
        return measured[0].ms

    measured: list[SpeedTimings] = []
    table = table or SpeedTable(None)
    key = table.key(fp32, {name: sorted(p.quantized) for name, p in candidates.items()}, blob.shape, num_threads)
    stored = table.timings(key, measure)
    timings = measured[0] if measured else SpeedTimings({name: stored[name] for name in candidates})
    return SpeedPlan(candidates, timings, pick_candidate(timings, margin), reused=not measured)


def timed_against_fp32(speed: SpeedPlan, plan: QuantPlan, proto: onnx.ModelProto, model: nn.Module,
                       blob: np.ndarray, table: SpeedTable) -> SpeedTimings:
    """fp32 and ``plan`` (under its name): from ``speed``'s timings when ``plan`` quantizes the convs of one of its
    candidates, else timed now against fp32 (or read from ``table``, where an earlier run stored them)."""
    name = next((n for n, p in speed.candidates.items()
                 if n != FP32 and set(p.quantized) == set(plan.quantized)), None)
    if name is not None:
        return SpeedTimings({FP32: speed.timings.fp32_ms, name: speed.timings.ms[name]})
    name = f"int8, {len(plan.quantized)} convs"
    fp32 = proto.SerializeToString()
    key = table.key(fp32, {FP32: [], name: sorted(plan.quantized)}, blob.shape, 1)
    stored = table.timings(key, lambda: time_models(
        {FP32: fp32, name: insert_qdq(proto, model, plan).SerializeToString()}, blob).ms)
    return SpeedTimings({FP32: stored[FP32], name: stored[name]})
