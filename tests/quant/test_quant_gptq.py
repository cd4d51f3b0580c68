"""GPTQ weight rounding: the patch layout reproduces the conv, the rounding stays on the int8 grid of the
max-based scales, equals nearest rounding when inputs are uncorrelated, and lowers the conv-output error
against nearest rounding when they are correlated; the plan's rounded weights reach the deployed model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_quant_simulate import tiny_setup
from torch import nn

from int8track.detectors.runtime import create_session
from int8track.quant.calibration import collect_ranges
from int8track.quant.gptq import conv_patches, gptq_plan, gptq_round
from int8track.quant.onnx_export import export_fp32, fuse_silu, insert_qdq
from int8track.quant.simulate import QuantPlan, conv_layers, quantize_weight, run_simulated


@pytest.mark.parametrize("groups,stride", [(1, 1), (4, 2), (8, 1)])
def test_patches_times_weights_is_the_conv(groups, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride, 1, groups=groups, bias=False).double()
    x = torch.randn(2, 8, 9, 11, dtype=torch.float64)
    cols = conv_patches(conv, x)  # (groups, d, positions)
    w = conv.weight.reshape(groups, 16 // groups, -1)
    out = (w @ cols).reshape(16, 2, -1).permute(1, 0, 2)
    assert torch.allclose(out.reshape(2, 16, -1), conv(x).reshape(2, 16, -1), atol=1e-12)


def output_error(w: torch.Tensor, q: np.ndarray, scales: np.ndarray, x: torch.Tensor) -> float:
    deq = torch.from_numpy(q.astype(np.float64) * scales.reshape(-1, 1))
    return float(((w.double() - deq) @ x).pow(2).sum())


def correlated_inputs(d: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    spread = torch.logspace(0, 2, d, dtype=torch.float64)  # channels 1x .. 100x apart, as after the stem
    return (mix @ torch.randn(d, n, generator=g, dtype=torch.float64)) * spread[:, None]


def test_gptq_beats_nearest_rounding_on_correlated_inputs():
    torch.manual_seed(0)
    w = torch.randn(32, 24) * 0.1
    x = correlated_inputs(24, 4000, 1)
    q_near, scales = quantize_weight(w)
    q = gptq_round(w, scales, (x @ x.T)[None])
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    assert np.abs(q.astype(int) - q_near.astype(int)).mean() <= 1.0  # compensates, does not run away
    assert output_error(w, q, scales, x) < 0.5 * output_error(w, q_near, scales, x)


def test_gptq_is_nearest_rounding_when_inputs_are_uncorrelated():
    torch.manual_seed(1)
    w = torch.randn(8, 9)
    q_near, scales = quantize_weight(w)
    q = gptq_round(w, scales, torch.eye(9, dtype=torch.float64)[None].repeat(1, 1, 1) * 5.0)
    np.testing.assert_array_equal(q, q_near)


def test_dead_input_channels_do_not_break_the_factorisation():
    torch.manual_seed(2)
    w = torch.randn(4, 6)
    x = correlated_inputs(6, 500, 3)
    x[2] = 0.0  # an input that is always zero: singular Hessian without the guard
    _, scales = quantize_weight(w)
    q = gptq_round(w, scales, (x @ x.T)[None])
    assert np.isfinite(q.astype(float)).all() and np.abs(q.astype(int)).max() <= 127


def test_gptq_plan_lowers_error_and_deploys_its_rounding():
    model, blobs = tiny_setup(size=32)
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)))
    rounded = gptq_plan(model, plan, blobs)
    assert set(rounded.rounded) == set(plan.quantized) and rounded.quantized == plan.quantized
    with torch.no_grad():
        ref = [model(torch.from_numpy(b)).numpy() for b in blobs]
    err = {tag: sum(float(((run_simulated(model, p, b) - r) ** 2).sum()) for b, r in zip(blobs, ref))
           for tag, p in (("nearest", plan), ("gptq", rounded))}
    assert err["gptq"] < err["nearest"]
    qproto = fuse_silu(insert_qdq(export_fp32(model, (32, 32)), model, rounded))
    dep = create_session(qproto.SerializeToString(), 1).run(None, {"images": blobs[0]})[0]
    assert np.abs(run_simulated(model, rounded, blobs[0]) - dep).max() <= rounded.act("pred:out").scale * 1.01
    assert rounded.with_float(["pw"]).rounded.keys() == rounded.rounded.keys()
