"""Per-channel rescale hooks on convs (``quant.migrate``): input ``x * (1 / s)``, output ``y * t``.

They are float ``Mul`` nodes in the deployed graph (``quant.onnx_export.export_fp32`` inserts them by name).
For an int8 conv the input Q/DQ sits after the input ``Mul`` and the output Q/DQ before the output ``Mul``;
calibration and simulation observe the same points (their input hooks run after :class:`InputScale`,
their output hooks are prepended before :class:`OutputScale`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class _ChannelScale:
    """A per-channel float32 factor (``values``) applied along axis 1; the identity while not ``enabled``."""

    def __init__(self, values: torch.Tensor) -> None:
        self.values = values.detach().float().cpu().reshape(-1)
        self.enabled = True

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.values.reshape(1, -1, 1, 1).to(x)


class InputScale(_ChannelScale):
    """Forward pre-hook: the conv's input times ``values`` (= ``1 / s``)."""

    def __call__(self, _module: nn.Module, args: tuple) -> tuple | None:
        return (self.apply(args[0]),) + tuple(args[1:]) if self.enabled else None


class OutputScale(_ChannelScale):
    """Forward hook: the conv's output times ``values`` (= ``t``)."""

    def __call__(self, _module: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        return self.apply(out) if self.enabled else None


def input_scale(conv: nn.Module) -> InputScale | None:
    """The conv's input rescale hook, if it has one."""
    return next((h for h in conv._forward_pre_hooks.values() if isinstance(h, InputScale)), None)


def output_scale(conv: nn.Module) -> OutputScale | None:
    """The conv's output rescale hook, if it has one."""
    return next((h for h in conv._forward_hooks.values() if isinstance(h, OutputScale)), None)


@contextmanager
def suspended(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every rescale hook of ``model`` is the identity (for tracing the bare convs)."""
    hooks = [h for m in model.modules() for h in (input_scale(m), output_scale(m)) if h is not None]
    for h in hooks:
        h.enabled = False
    try:
        yield model
    finally:
        for h in hooks:
            h.enabled = True
