"""quant.fold: folded models equal the unfolded eval-mode models; ReLU6 change measured; patterns listed."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from int8track.quant.fold import fold_batchnorm, fold_conv_bn


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.05)
            if m.affine:
                m.weight.data.copy_(torch.randn(n, generator=g))
                m.bias.data.copy_(torch.randn(n, generator=g))
    return model.eval()


class ConvBlock(nn.Module):
    """BaseConv/Conv layout: conv, bn, act."""

    def __init__(self, c_in: int, c_out: int, k: int, groups: int = 1, act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)
        self.act = act if act is not None else nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    """YOLOX Bottleneck layout: conv1, conv2, use_add."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = ConvBlock(c, c, 1)
        self.conv2 = ConvBlock(c, c, 3, groups=c)  # depthwise
        self.use_add = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


def _net() -> nn.Module:
    return nn.Sequential(
        ConvBlock(3, 8, 3),
        ConvBlock(8, 8, 3, groups=4),  # grouped
        Residual(8),
        nn.Sequential(nn.Conv2d(8, 12, 3, padding=1, bias=True), nn.BatchNorm2d(12), nn.ReLU6()),
        nn.Conv2d(12, 6, 1),
        nn.BatchNorm2d(6, affine=False),
    )


@pytest.mark.parametrize("groups,bias", [(1, False), (2, True), (6, False)])
def test_fold_conv_bn_equals_conv_then_bn(groups: int, bias: bool) -> None:
    torch.manual_seed(groups)
    conv = nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=groups, bias=bias)
    bn = _randomize_bn(nn.Sequential(nn.BatchNorm2d(12)), seed=groups)[0]
    x = torch.randn(2, 6, 11, 9)
    folded = fold_conv_bn(conv, bn)
    assert folded is not conv and folded.bias is not None and folded.groups == groups
    torch.testing.assert_close(folded(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_fold_batchnorm_model_equals_unfolded_in_eval() -> None:
    torch.manual_seed(0)
    model = _randomize_bn(_net())
    x = torch.randn(2, 3, 16, 16)
    folded = fold_batchnorm(model, example_input=x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the input model is left untouched"
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(folded[0].bn, nn.Identity) and isinstance(folded[3][1], nn.Identity)


def test_fold_batchnorm_on_detector_blocks() -> None:
    from int8track.detectors import yolox as yolox
    torch.manual_seed(1)
    block = _randomize_bn(yolox.Bottleneck(8, 8, shortcut=True, depthwise=True))
    x = torch.randn(1, 8, 12, 12)
    folded = fold_batchnorm(block, example_input=x)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), block(x), rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


class Misnamed(nn.Module):
    """Has conv and bn attributes, but bn is applied to the input, not to the conv output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(x))


def test_fold_batchnorm_refuses_bn_that_does_not_follow_its_conv() -> None:
    with pytest.raises(ValueError, match="does not consume"):
        fold_batchnorm(Misnamed(), example_input=torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="running statistics"):
        fold_conv_bn(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
