"""The speed plan: the one speed rule, the choice between candidates, and timings that a busy machine does not move
(synthetic rounds with the load's effects injected, and the real ORT path on the tiny conv net)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from test_quant_simulate import tiny_setup

from int8track.quant.calibration import collect_ranges
from int8track.quant.config import SPEED_MARGIN
from int8track.quant.onnx_export import export_fp32, fuse_silu
from int8track.quant.simulate import QuantPlan, conv_layers
from int8track.quant.speed import (
    FP32,
    MAX_ROUNDS,
    MIN_ROUNDS,
    TIE_MARGIN,
    SpeedPlan,
    SpeedTimings,
    clearly_faster,
    conv_strides,
    measure_ratios,
    pick_candidate,
    speed_plan,
)

STRIDES = ["fp32", "int8 from stride 32", "int8 from stride 16", "int8 from stride 8", "int8 from stride 4"]
#: yolov5n 640x640, 1 ORT thread, thread time (ms): the quiet run of benchmarks/speed_plan_under_load.py's probe,
#: and the busy (load 5) run of the issue; the rule that preferred more float convs up to the 15% speed margin chose
#: stride 16 on the first (34.1 <= 29.9 * 1.15) and stride 8 on the second (35.1 > 30.4 * 1.15)
YOLOV5N_QUIET = dict(zip(STRIDES, [48.3, 42.3, 34.1, 30.7, 29.9]))
YOLOV5N_BUSY = dict(zip(STRIDES, [48.4, 42.9, 35.1, 30.9, 30.4]))


def timings(ms: dict[str, float]) -> SpeedTimings:
    return SpeedTimings(dict(ms))


def test_clearly_faster_is_strict_and_relative():
    assert clearly_faster(50.0, 40.0, 0.2) is True  # 50 > 48
    assert clearly_faster(50.0, 40.0, 0.25) is False  # 50 == 50: not clearly
    assert clearly_faster(50.0, 50.0, 0.0) is False
    assert timings({FP32: 50.0, "a": 40.0}).clearly_faster("a", 0.2)


def test_pick_takes_the_fastest_unless_a_more_float_candidate_ties_with_it():
    order = ["fp32", "int8 from stride 8", "int8 from stride 4", "int8 from stride 2"]
    ms = timings(dict(zip(order, [50.0, 45.0, 41.5, 40.0])))
    assert pick_candidate(ms, 0.05) == "int8 from stride 4"  # 41.5 within 5% of 40, 45 is not
    assert pick_candidate(ms, 0.05, tie=0.0) == "int8 from stride 2"
    assert pick_candidate(ms, 0.05, tie=0.15) == "int8 from stride 8"
    assert pick_candidate(ms, 0.2) == "int8 from stride 4"  # 45 is not 20% faster than fp32 (50)
    assert pick_candidate(ms, 0.25) == "fp32"  # 50 <= 40 * 1.25: int8 not faster by the margin
    assert pick_candidate(timings({**dict(zip(order, [20.0, 45.0, 41.5, 40.0]))}), 0.05) == "fp32"
    # two fresh runs of ByteTrack nano at 608x832 where int8 was not 15% faster than fp32 anywhere
    runs = [dict(zip(STRIDES, [30.5, 29.2, 28.1, 28.8, 29.6])), dict(zip(STRIDES, [31.4, 30.1, 28.7, 28.4, 31.4]))]
    assert [pick_candidate(timings(run), SPEED_MARGIN) for run in runs] == ["fp32", "fp32"]
    # the front-door timings of ByteTrack nano: stride 32 is not 15% faster than fp32, stride 8 is the fastest
    assert pick_candidate(timings(dict(zip(STRIDES, [58.6, 52.6, 52.0, 47.4, 50.4]))), SPEED_MARGIN) == \
        "int8 from stride 8"


def test_yolov5n_gets_one_plan_on_a_quiet_and_a_busy_machine():
    """The issue's two fresh machines: stride 16 is 13-16% slower than the fastest candidate, which is not a tie."""
    assert pick_candidate(timings(YOLOV5N_QUIET), SPEED_MARGIN) == "int8 from stride 8"
    assert pick_candidate(timings(YOLOV5N_BUSY), SPEED_MARGIN) == "int8 from stride 8"


def synthetic_rounds(true_ms: dict[str, float], busy: bool, seed: int, jitter: float = 0.02):
    """Rounds as a loaded machine gives them: a slowdown shared by the round (other processes' cache and memory
    traffic), per-run jitter and, when ``busy``, one run in ten preempted mid-way (+30-100%)."""
    rng = np.random.default_rng(seed)

    def run_round(order: Sequence[str]) -> dict[str, float]:
        load = rng.uniform(1.0, 1.6) if busy else rng.uniform(1.0, 1.02)
        ms = {}
        for name in order:
            spike = 1.0 + rng.uniform(0.3, 1.0) if busy and rng.random() < 0.1 else 1.0
            ms[name] = true_ms[name] * load * spike * rng.lognormal(0.0, jitter)
        return ms

    return run_round


@pytest.mark.parametrize("true_ms", [YOLOV5N_QUIET, dict(zip(STRIDES, [58.6, 52.6, 52.0, 47.4, 50.4]))],
                         ids=["yolov5n", "bytetrack_nano"])
def test_measured_plan_does_not_depend_on_the_load(true_ms):
    expected = pick_candidate(timings(true_ms), SPEED_MARGIN)
    for seed in range(20):
        for busy in (False, True):
            measured = measure_ratios(list(true_ms), synthetic_rounds(true_ms, busy, seed))
            assert pick_candidate(measured, SPEED_MARGIN) == expected, (seed, busy, measured)
            assert measured.stable and MIN_ROUNDS <= measured.rounds <= MAX_ROUNDS
            for name, ms in true_ms.items():  # ratios to fp32 within 3 standard errors (3/5 of the tie margin)
                ratio = measured.ms[name] / measured.fp32_ms
                assert ratio == pytest.approx(ms / true_ms[FP32], rel=3 * TIE_MARGIN / 5), (name, seed, busy)


def test_quiet_rounds_stop_early_and_noisy_ones_at_the_cap_marked_unstable():
    quiet = measure_ratios(STRIDES, synthetic_rounds(YOLOV5N_QUIET, False, 0, jitter=0.005))
    assert quiet.rounds == MIN_ROUNDS and quiet.stable
    noisy = measure_ratios(STRIDES, synthetic_rounds(YOLOV5N_QUIET, True, 0, jitter=0.3))
    assert noisy.rounds == MAX_ROUNDS and not noisy.stable
    assert set(noisy.spread) == set(STRIDES[1:]) and max(noisy.spread.values()) >= TIE_MARGIN / 5


def test_rounds_are_interleaved_with_a_rotating_order():
    orders: list[list[str]] = []

    def run_round(order: Sequence[str]) -> dict[str, float]:
        orders.append(list(order))
        return {name: 10.0 for name in order}

    measure_ratios(["fp32", "a", "b"], run_round, min_rounds=3, max_rounds=3)
    assert orders == [["fp32", "a", "b"], ["a", "b", "fp32"], ["b", "fp32", "a"]]


@pytest.mark.parametrize("ms, message", [
    ({"a": 1.0, FP32: 2.0}, "must start with 'fp32'"),
    ({FP32: 2.0, "a": 0.0}, "positive finite"),
    ({FP32: float("nan"), "a": 1.0}, "positive finite"),
])
def test_bad_timings_are_value_errors(ms, message):
    with pytest.raises(ValueError, match=message):
        SpeedTimings(ms)


def test_bad_measure_arguments_are_value_errors():
    with pytest.raises(ValueError, match="'fp32' first"):
        measure_ratios(["a", FP32], lambda order: {})
    with pytest.raises(ValueError, match="min_rounds"):
        measure_ratios([FP32, "a"], lambda order: {}, min_rounds=5, max_rounds=2)


def test_more_float_candidates_are_tried_nearest_first_and_only_when_clearly_faster():
    plan = QuantPlan({}, [])
    ms = timings(dict(zip(STRIDES, [50.0, 44.0, 40.0, 35.0, 34.0])))
    speed = SpeedPlan({name: plan for name in STRIDES}, ms, "int8 from stride 8", reused=False)
    assert speed.int8_pays_off
    assert speed.more_float_than_chosen(SPEED_MARGIN) == ["int8 from stride 16"]  # 44 is not 15% faster
    assert speed.more_float_than_chosen(0.1) == ["int8 from stride 16", "int8 from stride 32"]
    assert not SpeedPlan(speed.candidates, ms, FP32, reused=True).int8_pays_off


def test_speed_plan_times_fp32_and_stage_candidates_in_ort():
    model, blobs = tiny_setup(seed=3, frames=6)
    plan = QuantPlan(collect_ranges(model, blobs[:5], "minmax", progress=False), list(conv_layers(model)))
    proto = fuse_silu(export_fp32(model, (32, 32)))
    strides = conv_strides(model, (32, 32))
    assert strides == {"stem": 2, "dw": 2, "pw": 2, "pred": 2}
    speed = speed_plan(proto, model, plan, blobs[0], strides=strides)
    assert list(speed.candidates) == list(speed.timings.ms) == ["fp32", "int8 from stride 2"]
    assert speed.candidates["fp32"].quantized == [] and speed.candidates["int8 from stride 2"].quantized == plan.quantized
    assert not speed.reused and MIN_ROUNDS <= speed.timings.rounds <= MAX_ROUNDS
    assert speed.chosen == pick_candidate(speed.timings, SPEED_MARGIN)
