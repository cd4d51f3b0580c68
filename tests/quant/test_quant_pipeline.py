"""Steps of ``quant.pipeline``: widening the float set by sensitivity, bounded by speed."""
from __future__ import annotations

from test_quant_simulate import tiny_setup

from int8track.quant.calibration import collect_ranges
from int8track.quant.pipeline import widen_float_set
from int8track.quant.simulate import QuantPlan, conv_layers

ORDER = [f"conv{i}" for i in range(20)]


def plan_of(names):
    ranges = {f"{n}:{side}": (-1.0, 1.0) for n in names for side in ("in", "out")}
    return QuantPlan(ranges, list(names))


def floats(plan):
    return [n for n in ORDER if n not in plan.quantized]


def test_widening_finds_the_shortest_prefix_that_meets_the_floor():
    plan = plan_of(ORDER)
    scored = []

    def meets(candidate):
        scored.append(len(floats(candidate)))
        return len(floats(candidate)) >= 6

    widened = widen_float_set(plan, ORDER, meets)
    assert floats(widened) == ORDER[:6]
    assert len(scored) <= 7  # galloping 1, 2, 4, 8 then bisection, not every prefix


def test_widening_stops_where_int8_stops_being_faster():
    plan = plan_of(ORDER)
    scored, timed = [], []

    def meets(candidate):
        scored.append(len(floats(candidate)))
        return len(floats(candidate)) >= 6

    def fast(candidate):
        timed.append(len(floats(candidate)))
        return len(floats(candidate)) < 4

    assert widen_float_set(plan, ORDER, meets, fast) is None
    assert max(scored) < 4  # no plan slower than the bound was scored
    assert timed == [1, 2, 4]
    # a bound beyond the floor's prefix does not change the answer
    assert floats(widen_float_set(plan, ORDER, meets, lambda c: len(floats(c)) < 16)) == ORDER[:6]


def test_widening_on_a_real_plan_keeps_only_listed_convs_float():
    model, blobs = tiny_setup(seed=1)
    plan = QuantPlan(collect_ranges(model, blobs, "minmax", progress=False), list(conv_layers(model)))
    order = list(reversed(plan.quantized))
    widened = widen_float_set(plan, order, lambda c: order[0] not in c.quantized)
    assert widened is not None and set(plan.quantized) - set(widened.quantized) == {order[0]}
