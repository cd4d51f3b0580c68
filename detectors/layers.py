"""Building blocks shared by the YOLOX and YOLOv5 models: activations and Conv+BN folding."""
from __future__ import annotations

import copy

import torch
from torch import nn

ACTIVATIONS = {
    "silu": lambda: nn.SiLU(inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "lrelu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(0.1, inplace=True),
}


def make_activation(name: str) -> nn.Module:
    """Activation module by name (silu, relu, relu6, lrelu/leakyrelu with slope 0.1)."""
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unsupported activation {name!r}, expected one of {sorted(ACTIVATIONS)}") from None


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """New Conv2d (with bias) equal to ``bn(conv(x))`` with BN in eval mode (running statistics).

    ``W'_o = W_o * g_o``, ``b'_o = (b_o - mean_o) * g_o + beta_o`` with ``g = gamma / sqrt(var + eps)``;
    dim 0 of a conv weight is the output channel for any ``groups`` (depthwise included).
    """
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(f"fold_conv_bn needs (Conv2d, BatchNorm2d), got ({type(conv).__name__}, {type(bn).__name__})")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics (track_running_stats=False)")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"BatchNorm2d has {bn.num_features} features but the conv has "
                         f"{conv.out_channels} output channels")
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        var = bn.running_var.double()
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
        g = gamma / torch.sqrt(var + bn.eps)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
        shape = (-1,) + (1,) * (conv.weight.dim() - 1)
        fused.weight = nn.Parameter((conv.weight.double() * g.view(shape)).to(conv.weight.dtype))
        fused.bias = nn.Parameter(((bias - bn.running_mean.double()) * g + beta).to(conv.weight.dtype))
    return fused


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every ``(conv, bn)`` attribute pair (the official ``BaseConv``/``Conv`` layout) in place.

    Afterwards the block has ``conv`` with bias and ``bn = Identity``: the folded form whose
    state dict matches an ONNX export with BatchNorm folded.
    """
    for module in model.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = fold_conv_bn(conv, bn)
            module.bn = nn.Identity()
    return model


def is_fused(model: nn.Module) -> bool:
    """True when no BatchNorm layer is left (folded form)."""
    return not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


class ConvBnAct(nn.Module):
    """Conv2d -> BatchNorm2d -> activation named ``conv``/``bn``/``act`` (YOLOX BaseConv, YOLOv5 Conv)."""

    def __init__(self, c_in: int, c_out: int, ksize: int, stride: int = 1, groups: int = 1,
                 act: str = "silu", padding: int | None = None, bn_eps: float = 1e-3) -> None:
        super().__init__()
        pad = (ksize - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(c_in, c_out, ksize, stride, pad, groups=groups, bias=False)
        # Both official repos train with eps=1e-3 (YOLOX init_yolo, YOLOv5 initialize_weights).
        self.bn = nn.BatchNorm2d(c_out, eps=bn_eps, momentum=0.03)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
