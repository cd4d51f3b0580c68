"""Conv-output ranges chosen for what the activation after the conv keeps.

A conv's int8 output is quantized *before* its activation (``QLinearConv`` requantizes the accumulator;
SiLU/ReLU run after). Observers fit that pre-activation tensor as if every value mattered equally, but
SiLU maps everything below about -6 to (almost) 0 and ReLU maps every negative value to exactly 0.
On ByteTrack-nano the pre-SiLU outputs reach -57 on the negative side against +11 on the positive side
(percentile observer), so most of the 256 levels are spent where SiLU is flat.

Here the lower bound is chosen to minimise the expected squared error *after* the activation,
``E[(f(x) - f(fq(x)))^2]`` over the calibration histogram, with the observer's upper bound kept
(on the positive side SiLU is the identity, and the observer already chose that tail). Only convs
whose output feeds nothing but one elementwise activation are refined.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import cast

import onnx
import torch
from torch import nn

from int8track.quant.observers import HistogramBased, Observer, RunningHistogram, fake_quant_sse
from int8track.quant.qparams import QScheme, get_scheme

Activation = Callable[[torch.Tensor], torch.Tensor]

#: sub-points per histogram bin: a bin may be wider than half a quantization step, so its centre alone
#: would alias the rounding error
SUB_POINTS = 4
CANDIDATES = 128


def _activation(node: onnx.NodeProto) -> Activation | None:
    """The float function of an ONNX elementwise activation node (None for any other op)."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "QuickGelu":  # x * sigmoid(alpha x): SiLU at alpha = 1 (quant.onnx_export.fuse_silu)
        alpha = float(attrs.get("alpha", 1.702))
        return lambda x: x * torch.sigmoid(alpha * x)
    if node.op_type == "Relu":
        return torch.relu
    if node.op_type == "LeakyRelu":
        slope = float(attrs.get("alpha", 0.01))
        return lambda x: torch.where(x >= 0, x, slope * x)
    if node.op_type == "Sigmoid":
        return torch.sigmoid
    if node.op_type == "HardSwish":
        return lambda x: x * torch.clamp(x / 6 + 0.5, 0, 1)
    return None


def following_activations(proto: onnx.ModelProto, model: nn.Module) -> dict[str, Activation]:
    """Torch conv name -> the activation that is the *only* consumer of its output in ``proto``."""
    from int8track.quant.onnx_export import conv_nodes  # onnx_export imports this package's simulate; avoid a cycle

    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in proto.graph.output}
    found: dict[str, Activation] = {}
    for name, conv in conv_nodes(proto, model).items():
        users = consumers.get(conv.output[0], [])
        if len(users) == 1 and conv.output[0] not in outputs:
            act = _activation(users[0])
            if act is not None:
                found[name] = act
    return found


def activation_aware_low(hist: RunningHistogram, lo: float, hi: float, activation: Activation,
                         scheme: str | QScheme, candidates: int = CANDIDATES) -> float:
    """The lower bound in ``[lo, min(0, hi)]`` minimising the histogram's squared error after ``activation``,
    with the upper bound fixed at ``hi`` (a tensor seen all negative keeps ``lo <= hi``)."""
    if lo >= 0.0 or hist.total == 0:
        return lo
    scheme = get_scheme(scheme)
    keep = hist.counts > 0
    offsets = (torch.arange(SUB_POINTS, dtype=torch.float64) + 0.5) / SUB_POINTS - 0.5
    x = (hist.centers[keep][:, None] + offsets[None, :] * hist.width).reshape(-1)
    n = (hist.counts[keep][:, None] / SUB_POINTS).expand(-1, SUB_POINTS).reshape(-1)
    x = x.clamp(hist.min, hist.max)
    top = min(0.0, hi)
    lows = top + (lo - top) * (1.0 - torch.arange(candidates + 1, dtype=torch.float64) / candidates)  # lo ... top
    highs = torch.full_like(lows, hi)
    err = fake_quant_sse(x, n, lows, highs, scheme, transform=activation)
    return float(lows[int(torch.argmin(err))]) + 0.0  # + 0.0 turns -0.0 into 0.0


class ActivationAwareObserver(Observer):
    """Wraps an observer of a conv's pre-activation output: its upper bound, a lower bound chosen for
    the activation (``activation_aware_low``); shares the wrapped observer's histogram when it has one."""

    def __init__(self, base: Observer, activation: Activation, scheme: str | QScheme) -> None:
        self.base, self.activation, self.scheme = base, activation, get_scheme(scheme)
        self._own_hist = not isinstance(base, HistogramBased)
        self.hist = RunningHistogram(count_zeros=False) if self._own_hist else cast(HistogramBased, base).hist

    def update(self, x: torch.Tensor) -> None:
        self.base.update(x)
        if self._own_hist:
            self.hist.update(x)

    def range(self) -> tuple[float, float]:
        lo, hi = self.base.range()
        return activation_aware_low(self.hist, lo, hi, self.activation, self.scheme), hi
