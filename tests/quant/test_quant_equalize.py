"""quant.equalize: CLE keeps ReLU networks' outputs, balances channel ranges, is gated on SiLU; bias absorption."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from int8track.quant.equalize import (
    cross_layer_equalize,
    equalization_scales,
    find_equalization_chains,
    input_channel_ranges,
    output_channel_ranges,
    verify_chains,
)
from int8track.quant.fold import fold_batchnorm
from int8track.quant.qparams import sqnr_db

from quant_reference import absorb_high_bias, absorb_high_biases, high_bias_from_bn


def _unbalance(model: nn.Module, seed: int) -> nn.Module:
    """Give every conv wildly different per-output-channel scales (1e-2 .. 1e2), as real nets have."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                factors = 10 ** (4 * torch.rand(m.out_channels, generator=g) - 2)
                m.weight.mul_(factors.view(-1, 1, 1, 1))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.out_channels, generator=g) * factors)
    return model.eval().double()


def _relu_chain() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),  # depthwise
        nn.Conv2d(8, 16, 1), nn.LeakyReLU(0.1),
        nn.Conv2d(16, 8, 3, padding=1, groups=2),  # grouped
    )


def _spread(values: torch.Tensor) -> float:
    return float(values.max() / values.min())


def test_cle_keeps_relu_chain_output_and_balances_ranges() -> None:
    model = _unbalance(_relu_chain(), 0)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    spread_before = [_spread(output_channel_ranges(c)) for c in convs[:-1]]
    report = cross_layer_equalize(model)
    assert report.equalized == [("0", "2"), ("2", "4"), ("4", "6")] and not report.skipped
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5 * float(before.abs().max()))
    spread_after = [_spread(output_channel_ranges(c)) for c in convs[:-1]]
    for b, a in zip(spread_before, spread_after):
        assert a < b / 10, (spread_before, spread_after)
    # converged: each pair's ranges are balanced, r1_i == r2_i (the scales left are all ~1)
    for c1, c2 in zip(convs, convs[1:]):
        torch.testing.assert_close(output_channel_ranges(c1), input_channel_ranges(c2), rtol=1e-4, atol=0)
        assert float(equalization_scales(c1, c2).log().abs().max()) < 1e-4


def test_single_pair_scales_follow_the_paper() -> None:
    conv1, conv2 = nn.Conv2d(4, 6, 3), nn.Conv2d(6, 5, 1)
    _unbalance(nn.Sequential(conv1, conv2), 1)
    r1, r2 = output_channel_ranges(conv1), input_channel_ranges(conv2)
    s = equalization_scales(conv1, conv2)
    torch.testing.assert_close(s, torch.sqrt(r1 * r2) / r2)  # s_i = (1 / r2_i) sqrt(r1_i r2_i)
    cross_layer_equalize(nn.Sequential(conv1, conv2), max_sweeps=1)
    torch.testing.assert_close(output_channel_ranges(conv1), torch.sqrt(r1 * r2))
    torch.testing.assert_close(input_channel_ranges(conv2), torch.sqrt(r1 * r2))


def test_silu_pairs_are_gated_and_change_the_function() -> None:
    model = _unbalance(nn.Sequential(nn.Conv2d(3, 8, 3), nn.SiLU(), nn.Conv2d(8, 4, 3)), 2)
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    reference = copy.deepcopy(model)
    report = cross_layer_equalize(model)
    assert report.equalized == [] and "SiLU is not positively homogeneous" in report.skipped[0][2]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    report = cross_layer_equalize(model, allow_non_homogeneous=True)
    assert report.equalized == [("0", "2")]
    with torch.no_grad():
        change = float((model(x) - reference(x)).abs().max() / reference(x).abs().max())
    assert change > 1e-3, "SiLU is not scale-equivariant: the output must move"


def test_unfolded_batchnorm_blocks_equalization() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1)).eval()
    report = cross_layer_equalize(model)
    assert report.equalized == [] and "fold it first" in report.skipped[0][2]
    assert cross_layer_equalize(fold_batchnorm(model)).equalized == [("0", "3")]


def test_chains_in_detector_blocks() -> None:
    from int8track.detectors import yolov5 as yolov5
    from int8track.detectors import yolox as yolox
    block = nn.Sequential(
        yolox.Bottleneck(8, 8, shortcut=True, depthwise=True, act="relu"),
        yolox.CSPLayer(8, 8, 1, shortcut=False, act="relu"),
        yolov5.Bottleneck(8, 8, shortcut=True, act="relu"),
    )
    folded = _unbalance(fold_batchnorm(block), 3)
    names = [[layer.name for layer in chain] for chain in find_equalization_chains(folded)]
    assert ["0.conv1.conv", "0.conv2.dconv.conv", "0.conv2.pconv.conv"] in names
    assert ["1.m.0.conv1.conv", "1.m.0.conv2.conv"] in names
    assert ["2.cv1.conv", "2.cv2.conv"] in names
    assert not any("1.conv1.conv" in chain and "1.conv2.conv" in chain for chain in names), "CSP branches are parallel"
    assert sum(name.count("0.conv2.dconv.conv") for chain in names for name in chain) == 1, "no duplicate chain"
    x = torch.randn(1, 8, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        before = folded(x)
        cross_layer_equalize(folded)
        torch.testing.assert_close(folded(x), before, rtol=1e-5, atol=1e-5 * float(before.abs().max()))


def _high_bias_pair(kernel2: int, padding2: int) -> nn.Sequential:
    model = _unbalance(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, kernel2, padding=padding2)), 4)
    with torch.no_grad():
        model[0].weight.mul_(0.01 / output_channel_ranges(model[0]).view(-1, 1, 1, 1))
        model[0].bias.copy_(torch.linspace(-1, 5, 6, dtype=torch.float64))  # channels 2.. are always "on"
    return model


def test_data_driven_high_bias_absorption_is_exact_for_1x1_and_interior() -> None:
    x = [torch.randn(2, 3, 9, 9, dtype=torch.float64) for _ in range(3)]
    for kernel2, padding2 in ((1, 0), (3, 1)):
        model = _high_bias_pair(kernel2, padding2)
        with torch.no_grad():
            before = [model(b) for b in x]
        changed = absorb_high_biases(model, x)
        assert changed == [("0", "2")]
        bias = model[0].bias.detach()
        assert float(bias[0]) == pytest.approx(-1.0) and 0.0 < float(bias[-1]) < 0.1  # never-on channel untouched
        with torch.no_grad():
            after = [model(b) for b in x]
        for a, b in zip(after, before):
            if padding2 == 0:
                torch.testing.assert_close(a, b)
            else:  # interior exact; the padded border moves (documented)
                torch.testing.assert_close(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1])
                assert float((a - b).abs().max()) > 1e-3


def test_bn_based_high_bias() -> None:
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([5.0, 1.0, 2.0]))
        bn.weight.copy_(torch.tensor([1.0, 1.0, -0.5]))
    torch.testing.assert_close(high_bias_from_bn(bn), torch.tensor([2.0, 0.0, 0.5]))
    with pytest.raises(ValueError, match="ReLU-like"):
        absorb_high_bias(nn.Conv2d(3, 3, 1), nn.SiLU(), nn.Conv2d(3, 3, 1), torch.zeros(3))


class _Concat(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)


class _Routed(nn.Module):
    """YOLOv5-style: layers kept in a Sequential, but layer 0's activation is also routed to a later Concat."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU(), _Concat()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        y0 = m[1](m[0](x))
        y2 = m[5](m[4](m[3](m[2](y0))))
        return m[6]([y2, y0])


def test_verify_chains_rejects_links_whose_output_is_routed_elsewhere() -> None:
    model = _Routed().eval()
    x = torch.randn(1, 3, 8, 8)
    chains = find_equalization_chains(model)
    assert [[layer.name for layer in c] for c in chains] == [["model.0", "model.2", "model.4"]]
    kept, rejected = verify_chains(model, chains, x)
    assert [[layer.name for layer in c] for c in kept] == [["model.2", "model.4"]]
    assert rejected[0][:2] == ("model.0", "model.2") and "_Concat" in rejected[0][2]
    model = _unbalance(model, 9)
    with torch.no_grad():
        before = model(x.double())
        report = cross_layer_equalize(model, example_input=x.double())
        torch.testing.assert_close(model(x.double()), before)
    assert report.equalized == [("model.2", "model.4")]
    assert report.skipped[0][:2] == ("model.0", "model.2")
    # without the check, the structural chain would equalize model.0 -> model.2 and break the Concat
    cross_layer_equalize(model)
    with torch.no_grad():
        assert not torch.allclose(model(x.double()), before)


def test_real_yolov5n_chains_verified_and_silu_gated() -> None:
    from int8track import detectors

    from conftest import require_data
    det = detectors.load_detector(str(require_data("weights/yolov5n.pt")), backend="torch")
    model = fold_batchnorm(det.model)
    x = torch.rand(1, 3, 64, 64)
    chains = find_equalization_chains(model)
    kept, rejected = verify_chains(model, chains, x)
    assert len(kept) == len(chains) >= 10 and not rejected  # Bottleneck cv1 -> cv2 links and model.0 -> model.1
    with torch.no_grad():
        reference = model(x)
        report = cross_layer_equalize(model, example_input=x)
        assert report.equalized == [] and len(report.skipped) == len(chains)
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        cross_layer_equalize(model, allow_non_homogeneous=True, example_input=x)
        # SiLU(x / s) * s != SiLU(x): forcing CLE through SiLU wrecks the detector (measured: ~7 dB SQNR)
        assert sqnr_db(reference, model(x)) < 30.0
