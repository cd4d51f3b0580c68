"""Fake-quant simulation: ranges, weight/bias quantization and the hook lifecycle on a tiny conv net."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from int8track.quant.calibration import collect_ranges, load_frames
from int8track.quant.qparams import activation_qparams
from int8track.quant.simulate import QuantPlan, conv_layers, quantize_bias, quantize_weight, run_simulated, simulated


class TinyNet(nn.Module):
    """Stem conv, depthwise conv with residual add, concat, pointwise conv, pred conv: the YOLOX patterns."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.pw = nn.Conv2d(32, 24, 1)
        self.pred = nn.Conv2d(24, 6, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.stem(x))
        z = self.act(self.dw(y)) + y
        w = self.act(self.pw(torch.cat([z, y], 1)))
        return self.pred(w).flatten(2).permute(0, 2, 1)


def tiny_setup(seed: int = 0, frames: int = 6, size: int = 32):
    torch.manual_seed(seed)
    model = TinyNet().eval()
    rng = np.random.default_rng(seed)
    blobs = [rng.uniform(-1, 1, (1, 3, size, size)).astype(np.float32) for _ in range(frames)]
    return model, blobs


def test_ranges_cover_every_conv_input_and_output():
    model, blobs = tiny_setup()
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    assert set(ranges) == {f"{n}:{s}" for n in conv_layers(model) for s in ("in", "out")}
    lo, hi = ranges["stem:in"]
    assert lo == pytest.approx(min(b.min() for b in blobs)) and hi == pytest.approx(max(b.max() for b in blobs))


def test_weight_and_bias_quantization_are_exact_grids():
    conv = nn.Conv2d(4, 5, 3)
    q, scales = quantize_weight(conv.weight)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    w = conv.weight.detach().numpy()
    np.testing.assert_allclose(np.abs(w).reshape(5, -1).max(1) / 127, scales, rtol=1e-6)
    np.testing.assert_allclose(q * scales[:, None, None, None], w, atol=scales.max() / 2 + 1e-7)
    bias = quantize_bias(conv.bias, 0.02, scales)
    assert bias.dtype == np.int32
    np.testing.assert_allclose(bias * 0.02 * scales, conv.bias.detach().numpy(), atol=(0.02 * scales).max())


def test_a_bias_beyond_the_int32_grid_saturates_instead_of_wrapping():
    # float32 rounds INT32_MAX up to 2**31, which the int32 cast used to wrap to -2**31
    q = quantize_bias(torch.tensor([1.0, -1.0, 0.5]), 1e-6, np.array([1e-4, 1e-4, 1.0], np.float32))
    np.testing.assert_array_equal(q, [2**31 - 1, -(2**31 - 1), 500000])


def test_per_tensor_weights_use_one_scale_from_the_whole_tensor():
    conv = nn.Conv2d(4, 5, 3)
    with torch.no_grad():
        conv.weight[2] *= 50  # one wide channel: per tensor, the narrow ones lose most of their grid
    w = conv.weight.detach().numpy()
    q, scales = quantize_weight(conv.weight, per_channel=False)
    np.testing.assert_allclose(scales, np.full(5, np.abs(w).max() / 127), rtol=1e-6)
    np.testing.assert_array_equal(q, np.clip(np.rint(w / scales[0]), -127, 127).astype(np.int8))
    assert np.abs(q[0]).max() < 127 // 10 and np.abs(q[2]).max() == 127
    plan = QuantPlan({"c:in": (0.0, 1.0), "c:out": (0.0, 1.0)}, ["c"], weight_granularity="per_tensor",
                     weight_qmax=127)
    np.testing.assert_array_equal(plan.weight("c", conv)[0], q)
    assert plan.with_float([]).weight_granularity == "per_tensor"  # derived plans keep it
    with pytest.raises(ValueError, match="weight granularity"):
        QuantPlan({}, [], weight_granularity="per_group")


def test_weights_stay_within_the_plans_range_where_the_runtime_saturates():
    # x86 without VNNI sums two uint8 x int8 products in a saturating int16 (quant.runtime_int8): 7-bit weights
    conv = nn.Conv2d(4, 5, 3)
    w = conv.weight.detach().numpy()
    q, scales = quantize_weight(conv.weight, qmax=63)
    assert np.abs(q).max() == 63
    np.testing.assert_allclose(np.abs(w).reshape(5, -1).max(1) / 63, scales, rtol=1e-6)
    np.testing.assert_array_equal(q, quantize_weight(conv.weight * 2, qmax=63)[0])  # scale-free grid
    plan = QuantPlan({"c:in": (0.0, 1.0), "c:out": (0.0, 1.0)}, ["c"], weight_qmax=63)
    np.testing.assert_array_equal(plan.weight("c", conv)[0], q)
    assert plan.with_float([]).weight_qmax == 63 and plan.to_dict()["weight_qmax"] == 63
    for bad in (0, 128, 63.0, True):
        with pytest.raises(ValueError, match="weight_qmax"):
            QuantPlan({}, [], weight_qmax=bad)


def test_simulation_quantizes_only_the_plan_and_restores_the_model():
    model, blobs = tiny_setup()
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    x = torch.from_numpy(blobs[0])
    with torch.no_grad():
        reference = model(x).numpy()
        weights = {n: c.weight.clone() for n, c in conv_layers(model).items()}
    # output of the last conv only: the result must lie on its output grid
    plan = QuantPlan(ranges, ["pred"])
    out = run_simulated(model, plan, blobs[0])
    scale, zp = activation_qparams(*ranges["pred:out"], "asymmetric_uint8")
    codes = out / scale + zp
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
    assert 0 < np.abs(out - reference).max() < scale + 0.05 * np.abs(reference).max()
    full = run_simulated(model, QuantPlan(ranges, list(conv_layers(model))), blobs[0])
    assert not np.allclose(full, reference)
    with torch.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), reference)  # hooks gone, weights restored
    for n, c in conv_layers(model).items():
        assert torch.equal(c.weight, weights[n])


def test_simulated_error_is_small_on_a_well_conditioned_net():
    model, blobs = tiny_setup()
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    with torch.no_grad():
        reference = model(torch.from_numpy(blobs[1])).numpy()
    out = run_simulated(model, QuantPlan(ranges, list(conv_layers(model))), blobs[1])
    cos = float((out * reference).sum() / np.linalg.norm(out) / np.linalg.norm(reference))
    assert cos > 0.995


def test_plan_rejects_uncalibrated_layers_and_bad_schemes():
    model, blobs = tiny_setup()
    ranges = collect_ranges(model, blobs, "minmax", layers=["stem"], progress=False)
    with pytest.raises(ValueError, match="no calibrated range"):
        QuantPlan(ranges, ["stem", "dw"])
    with pytest.raises(ValueError, match="scheme"):
        QuantPlan(ranges, ["stem"], scheme="int4")
    with pytest.raises(ValueError, match="not in the model"), \
            simulated(nn.Sequential(nn.Conv2d(3, 3, 1)), QuantPlan(ranges, ["stem"])):
        pass


def test_symmetric_int8_activations_have_zero_point_zero():
    model, blobs = tiny_setup()
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)), scheme="int8")
    assert all(plan.act(f"{n}:out").zero_point == 0 for n in plan.quantized)


def test_load_frames_selects_and_reports_errors(tmp_path):
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(10)]
    assert [f[0, 0, 0] for f in load_frames(frames, num=3)] == [0, 4, 9]
    assert [f[0, 0, 0] for f in load_frames(frames, num=None, offset=1, step=4)] == [1, 5, 9]
    with pytest.raises(FileNotFoundError, match="calibration source"):
        load_frames(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        load_frames(tmp_path)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not a video"):
        load_frames(tmp_path / "x.txt")


def test_bias_correction_moves_simulated_channel_means_to_float():
    from int8track.quant.calibration import correct_biases

    model, blobs = tiny_setup(seed=5, frames=6)
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)))
    x = torch.from_numpy(np.concatenate(blobs[:4]))

    def mean_error() -> float:
        with torch.no_grad():
            reference = model(x).mean(dim=(0, 1))
            with simulated(model, plan):
                return float((model(x).mean(dim=(0, 1)) - reference).abs().mean())

    corrected = copy.deepcopy(model)
    before = mean_error()
    sizes = correct_biases(corrected, plan, blobs[:4])
    assert set(sizes) == set(plan.quantized) and max(sizes.values()) > 0
    with torch.no_grad():
        reference = model(x).mean(dim=(0, 1))
        with simulated(corrected, plan):
            after = float((corrected(x).mean(dim=(0, 1)) - reference).abs().mean())
    assert after < before
