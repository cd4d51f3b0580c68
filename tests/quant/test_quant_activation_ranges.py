"""Activation-aware conv-output ranges: which convs feed an activation, and the chosen lower bound
really lowers the error after the activation (checked by fake-quantizing samples directly)."""
from __future__ import annotations

import pytest
import torch
from test_quant_simulate import tiny_setup

from int8track.quant.activation_ranges import ActivationAwareObserver, activation_aware_low, following_activations
from int8track.quant.calibration import collect_ranges
from int8track.quant.observers import MinMaxObserver, PercentileObserver, RunningHistogram
from int8track.quant.onnx_export import export_fp32, fuse_silu
from int8track.quant.qparams import activation_qparams, fake_quantize


def post_activation_mse(x: torch.Tensor, lo: float, hi: float, act) -> float:
    scale, zp = activation_qparams(lo, hi)
    return float(((act(x) - act(fake_quantize(x, scale, zp, 0, 255))) ** 2).mean())


def long_negative_tail(seed: int = 0) -> torch.Tensor:
    """Pre-SiLU-like data: most mass in [-3, 6], a tail reaching about -60."""
    g = torch.Generator().manual_seed(seed)
    body = torch.randn(200_000, generator=g) * 1.5 + 0.5
    tail = -torch.rand(2_000, generator=g) * 60
    return torch.cat([body, tail])


@pytest.mark.parametrize("act", [torch.nn.functional.silu, torch.relu], ids=["silu", "relu"])
def test_lower_bound_reduces_the_error_after_the_activation(act):
    x = long_negative_tail()
    hist = RunningHistogram()
    hist.update(x)
    lo, hi = float(x.min()), float(x.max())
    new_lo = activation_aware_low(hist, lo, hi, act, "asymmetric_uint8")
    assert lo < new_lo <= 0.0
    assert post_activation_mse(x, new_lo, hi, act) < 0.5 * post_activation_mse(x, lo, hi, act)
    if act is torch.relu:  # nothing below 0 survives a ReLU: the whole grid goes to the positive side
        assert new_lo > -0.05 * (hi - lo)


def test_an_all_negative_range_stays_ordered():
    # the wrapped observer's (lo, hi) can lie wholly below 0 and below part of the histogram (a conv output
    # negative on every one of a few calibration frames): the lower bound must stay in [lo, min(0, hi)]
    x = -1.0 - 0.2 * torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    hist = RunningHistogram()
    hist.update(x)
    new_lo = activation_aware_low(hist, -3.0, -2.0, torch.nn.functional.silu, "asymmetric_uint8")
    assert -3.0 <= new_lo <= -2.0  # it was -1.22 (above hi: "activation range is inverted" downstream)
    activation_qparams(new_lo, -2.0)


def test_identity_activation_keeps_a_needed_negative_range():
    """Without a squashing activation the negative tail matters: the bound must stay near the data."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100_000, generator=g) * 4
    hist = RunningHistogram()
    hist.update(x)
    lo = float(x.min())
    assert activation_aware_low(hist, lo, float(x.max()), lambda t: t, "asymmetric_uint8") < 0.7 * lo


def test_following_activations_finds_convs_feeding_only_an_activation():
    model, _ = tiny_setup()
    proto = fuse_silu(export_fp32(model, (32, 32)))
    assert set(following_activations(proto, model)) == {"stem", "dw", "pw"}  # pred feeds the output


def test_collect_ranges_refines_only_outputs_that_feed_an_activation():
    model, blobs = tiny_setup()
    acts = following_activations(fuse_silu(export_fp32(model, (32, 32))), model)
    plain = collect_ranges(model, blobs, "percentile", progress=False)
    aware = collect_ranges(model, blobs, "percentile", progress=False, activations=acts)
    for name in ("stem", "dw", "pw"):
        assert plain[f"{name}:out"][0] <= aware[f"{name}:out"][0] <= 0.0
        assert aware[f"{name}:out"][1] == plain[f"{name}:out"][1]
        assert aware[f"{name}:in"] == plain[f"{name}:in"]
    assert aware["pred:out"] == plain["pred:out"]


@pytest.mark.parametrize("base", [MinMaxObserver, PercentileObserver])
def test_wrapper_keeps_the_upper_bound_of_any_observer(base):
    x = long_negative_tail(2)
    obs = ActivationAwareObserver(base(), torch.nn.functional.silu, "asymmetric_uint8")
    reference = base()
    for chunk in x.split(50_000):
        obs.update(chunk)
        reference.update(chunk)
    lo, hi = obs.range()
    assert hi == reference.range()[1] and reference.range()[0] < lo <= 0.0
