"""Outlier-aware scale migration (SmoothQuant, Xiao et al. 2023) for conv inputs.

A conv input with a few outlier channels (max |x| of 100+ next to channels of std ~1) quantized per tensor
leaves the ordinary channels with 2-3 uint8 levels. Dividing input channel c by ``s_c`` and multiplying the
weights that read channel c by ``s_c`` computes the same conv (exact in real arithmetic):
``conv(x / s, W * s) = conv(x, W)``. With ``s_c = max|x_c|^alpha / max|W_:,c|^(1 - alpha)`` the activation
ranges shrink towards each other and the weights (int8 per output channel) absorb part of the spread.

The output side is the mirror: output channel c (weights, bias) divided by ``t_c`` and multiplied back after
the conv, so the per-tensor output quantizer sees equal channel ranges (int8 weights are per output channel,
so their rounding does not change). Both rescales are hooks (``quant.rescale``): float ``Mul`` nodes where
a conv stays float, and where it runs int8 too (its Q after the input ``Mul``, its DQ before the output
``Mul``): each costs one elementwise pass over the tensor. It raises agreement with fp32, but the ~200 extra
``Mul`` nodes cost ByteTrack-nano more time than int8 saves, so ``quantize_detector`` leaves it off
(benchmarks/README.md, "Measurements behind design choices").
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from int8track.quant.equalize import input_channel_ranges
from int8track.quant.rescale import InputScale, OutputScale
from int8track.quant.simulate import conv_layers

#: migrate only tensors whose largest channel range is at least this many times the median channel range
#: (1 = every tensor: on ByteTrack-nano, migrating only spreads >= 16 gained nothing end to end, all did)
DEFAULT_MIN_SPREAD = 1.0


@torch.no_grad()
def channel_absmax(model: nn.Module, blobs: Sequence[np.ndarray], names: Sequence[str],
                   side: str) -> dict[str, torch.Tensor]:
    """``max |x|`` per channel of each named conv's input (``side="in"``) or raw output (``"out"``) over ``blobs``."""
    if side not in ("in", "out"):
        raise ValueError(f"side must be 'in' or 'out', got {side!r}")
    convs = conv_layers(model)
    stats: dict[str, torch.Tensor] = {}

    def record(name: str, x: torch.Tensor) -> None:
        m = x.detach().abs().amax(dim=(0, 2, 3)).cpu()
        stats[name] = m if name not in stats else torch.maximum(stats[name], m)

    if side == "in":
        handles = [convs[n].register_forward_pre_hook(lambda _m, args, n=n: record(n, args[0])) for n in names]
    else:  # prepended: before an existing output rescale
        handles = [convs[n].register_forward_hook(lambda _m, _a, out, n=n: record(n, out), prepend=True)
                   for n in names]
    try:
        for blob in blobs:
            model(torch.from_numpy(np.asarray(blob, np.float32)))
    finally:
        for h in handles:
            h.remove()
    return stats


def migration_scales(x_absmax: torch.Tensor, conv: nn.Conv2d, alpha: float = 0.5) -> torch.Tensor:
    """``s_c = max|x_c|^alpha / max|W_:,c|^(1-alpha)`` (1 where either range is 0), shape (in_channels,)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"migration alpha must be in [0, 1], got {alpha}")
    w = input_channel_ranges(conv).cpu().double()
    x = x_absmax.double()
    s = x.pow(alpha) / w.pow(1.0 - alpha)
    return torch.where((x > 0) & (w > 0) & torch.isfinite(s), s, torch.ones_like(s)).float()


def channel_spread(x_absmax: torch.Tensor) -> float:
    """Largest over median per-channel ``max |x|``: how badly one per-tensor range fits the channels."""
    median = float(x_absmax.median())
    return float(x_absmax.max()) / median if median > 0 else float("inf")


def apply_migration(conv: nn.Conv2d, s: torch.Tensor) -> None:
    """Scale the weights reading input channel c by ``s_c`` and register the ``x * (1 / s)`` input hook."""
    if s.numel() != conv.in_channels:
        raise ValueError(f"migration scales have {s.numel()} entries, the conv has {conv.in_channels} input channels")
    g = conv.groups
    per_group = s.reshape(g, 1, conv.in_channels // g).expand(g, conv.out_channels // g, -1)
    factor = per_group.reshape(conv.out_channels, conv.in_channels // g, *([1] * (conv.weight.dim() - 2)))
    conv.weight.data = conv.weight.data * factor.to(conv.weight)
    conv.register_forward_pre_hook(InputScale((1.0 / s.double()).float()))


def apply_output_migration(conv: nn.Conv2d, t: torch.Tensor) -> None:
    """Divide output channel c (weights and bias) by ``t_c`` and register the ``out * t`` hook.

    int8 weights are per output channel, so their rounding is unchanged; only the (per-tensor) output
    range moves: with ``t_c`` proportional to channel c's range every channel fills the uint8 grid alike.
    """
    inverse = (1.0 / t.double()).float()
    conv.weight.data = conv.weight.data * inverse.reshape(-1, *([1] * (conv.weight.dim() - 1))).to(conv.weight)
    if conv.bias is not None:
        conv.bias.data = conv.bias.data * inverse.to(conv.bias)
    conv.register_forward_hook(OutputScale(t))


def migrate_outputs(model: nn.Module, blobs: Sequence[np.ndarray], names: Sequence[str], beta: float = 1.0,
                    min_spread: float = DEFAULT_MIN_SPREAD) -> dict[str, float]:
    """Equalize the output channel ranges of the named convs whose output spread is at least ``min_spread``:
    ``t_c = (max|y_c| / median_c max|y_c|)^beta`` (1 for dead channels). Returns ``{conv: spread before}``."""
    absmax = channel_absmax(model, blobs, names, "out")
    convs = conv_layers(model)
    migrated = {}
    for name in names:
        spread = channel_spread(absmax[name])
        if spread >= min_spread:
            m = absmax[name].double()
            t = (m / m.median()).pow(beta)
            apply_output_migration(convs[name], torch.where(m > 0, t, torch.ones_like(t)).float())
            migrated[name] = spread
    return migrated


def migrate_inputs(model: nn.Module, blobs: Sequence[np.ndarray], names: Sequence[str], alpha: float = 0.5,
                   min_spread: float = DEFAULT_MIN_SPREAD) -> dict[str, float]:
    """Migrate the input scales of the named convs whose input channel spread is at least ``min_spread``.

    Modifies ``model`` in place (weights and hooks). Returns ``{conv: spread before}`` of the migrated convs.
    """
    absmax = channel_absmax(model, blobs, names, "in")
    convs = conv_layers(model)
    migrated = {}
    for name in names:
        spread = channel_spread(absmax[name])
        if spread >= min_spread:
            apply_migration(convs[name], migration_scales(absmax[name], convs[name], alpha))
            migrated[name] = spread
    return migrated


def migrate_convs(model: nn.Module, blobs: Sequence[np.ndarray], names: Sequence[str], alpha: float = 0.5,
                  min_spread: float = DEFAULT_MIN_SPREAD) -> dict[str, list[str]]:
    """Input scale migration, then output range equalization, of the named convs (in place, exact in float).

    Returns the migrated conv names per side, ``{"inputs": [...], "outputs": [...]}``.
    """
    inputs = migrate_inputs(model, blobs, names, alpha, min_spread)
    outputs = migrate_outputs(model, blobs, names, 1.0, min_spread)
    return {"inputs": list(inputs), "outputs": list(outputs)}

