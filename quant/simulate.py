"""Fake-quantization of a torch model exactly where ONNX Runtime will run int8.

The deployment contract (``quant.onnx_export``) quantizes *convolutions*: for every conv in the
quantized set the input activation, the weight (int8, symmetric, per output channel), the bias
(int32 with scale ``s_in * s_w``) and the conv output (before its activation) carry Q/DQ, which ORT
fuses into one ``QLinearConv``. Everything else (SiLU, residual adds, concat, upsampling, the decoding)
stays float, because on these small detectors int8 SiLU/Add kernels cost more than they save.
This module simulates exactly that in plain PyTorch with forward hooks, so simulated and deployed
outputs agree to rounding.

Quantization points are named ``"<conv module name>:in"`` and ``"<conv module name>:out"``. Two points
that are the same graph tensor (a conv output feeding another conv; one tensor feeding two convs)
observe the same float values during calibration, so they get identical parameters and fake-quantizing
twice is a no-op — which is what the single Q/DQ pair in the ONNX graph does.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from int8track.quant.qparams import (
    SYMMETRIC_INT8,
    QScheme,
    activation_qparams,
    fake_quantize,
    weight_qparams_per_channel,
)
from int8track.quant.runtime_int8 import FULL_WEIGHT_QMAX, runtime_weight_qmax

#: activation schemes: asymmetric uint8 (default) or symmetric int8 (full [-128, 127] grid, as ORT saturates)
ACT_SCHEMES = {"uint8": "asymmetric_uint8", "int8": "symmetric_int8_full"}
#: weight granularities: one scale per output channel (default) or one per tensor (the same scale on every channel)
WEIGHT_GRANULARITIES = ("per_channel", "per_tensor")
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class ActQuant:
    """Per-tensor activation quantization: ``q = clip(round(x / scale) + zero_point, qmin, qmax)``."""

    scale: float
    zero_point: int
    dtype: str  # "uint8" | "int8"

    @property
    def qmin(self) -> int:
        return 0 if self.dtype == "uint8" else -128

    @property
    def qmax(self) -> int:
        return 255 if self.dtype == "uint8" else 127


@dataclass
class QuantPlan:
    """What to quantize and with which ranges: the single source of truth for simulation and export.

    ``ranges`` maps point names (``"conv:in"``/``"conv:out"``) to observed ``(lo, hi)``;
    ``quantized`` lists the conv module names that run int8; every other conv stays float.
    """

    ranges: dict[str, tuple[float, float]]
    quantized: list[str]
    scheme: str = "uint8"
    observer: str = "minmax"
    extra: dict = field(default_factory=dict)
    #: int8 weights chosen by a rounding method (``quant.gptq``) instead of nearest rounding, by conv name
    rounded: dict[str, np.ndarray] = field(default_factory=dict)
    weight_granularity: str = "per_channel"
    #: int8 weights lie in [-weight_qmax, weight_qmax]: 127, or 63 where this machine's runtime would saturate
    #: sums of two int8 products (``quant.runtime_int8``); the deployed graph then equals the simulation there too
    weight_qmax: int = field(default_factory=runtime_weight_qmax)

    def __post_init__(self) -> None:
        if self.scheme not in ACT_SCHEMES:
            raise ValueError(f"unknown activation scheme {self.scheme!r}, expected one of {list(ACT_SCHEMES)}")
        if self.weight_granularity not in WEIGHT_GRANULARITIES:
            raise ValueError(f"unknown weight granularity {self.weight_granularity!r}, expected one of "
                             f"{list(WEIGHT_GRANULARITIES)}")
        if isinstance(self.weight_qmax, bool) or not isinstance(self.weight_qmax, int) \
                or not 1 <= self.weight_qmax <= FULL_WEIGHT_QMAX:
            raise ValueError(f"weight_qmax must be an integer in [1, {FULL_WEIGHT_QMAX}], got {self.weight_qmax!r}")
        missing = [n for n in self.quantized if f"{n}:in" not in self.ranges or f"{n}:out" not in self.ranges]
        if missing:
            raise ValueError(f"no calibrated range for quantized conv(s) {missing[:5]}; calibrate them first")

    def act(self, point: str) -> ActQuant:
        """Activation qparams of one point, from its observed range and the plan's scheme."""
        lo, hi = self.ranges[point]
        scale, zero_point = activation_qparams(lo, hi, ACT_SCHEMES[self.scheme])
        return ActQuant(float(scale), int(zero_point), self.scheme)

    def with_float(self, float_layers: list[str] | set[str]) -> QuantPlan:
        """The same plan with ``float_layers`` removed from the quantized set."""
        drop = set(float_layers)
        return replace(self, quantized=[n for n in self.quantized if n not in drop], extra=dict(self.extra),
                       rounded=dict(self.rounded))

    def with_rounded(self, rounded: dict[str, np.ndarray]) -> QuantPlan:
        """The same plan with these convs' int8 weights (shapes as their float weights) replacing nearest rounding."""
        return replace(
            self, quantized=list(self.quantized), extra=dict(self.extra), rounded={**self.rounded, **rounded}
        )

    def weight(self, name: str, conv: nn.Conv2d) -> tuple[np.ndarray, np.ndarray]:
        """int8 weight and per-output-channel scales of conv ``name`` (all equal when per tensor): the rounded
        ones if the plan has them."""
        q, scales = quantize_weight(conv.weight, self.weight_granularity == "per_channel", self.weight_qmax)
        if name in self.rounded:
            if self.rounded[name].shape != q.shape:
                raise ValueError(f"rounded weights of {name} have shape {self.rounded[name].shape}, the conv {q.shape}")
            q = self.rounded[name]
        return q, scales

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "observer": self.observer, "quantized": list(self.quantized),
                "ranges": {k: [float(v[0]), float(v[1])] for k, v in self.ranges.items()},
                "rounded": sorted(self.rounded), "weight_granularity": self.weight_granularity,
                "weight_qmax": self.weight_qmax, **self.extra}


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Every ``nn.Conv2d`` of ``model`` by module name, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def quantize_weight(weight: torch.Tensor, per_channel: bool = True,
                    qmax: int = FULL_WEIGHT_QMAX) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weight in ``[-qmax, qmax]``: ``(int8 array, float32 scales (C_out,))``, one scale per output
    channel, or with ``per_channel=False`` the largest of them on every channel (per-tensor, per-channel layout)."""
    scheme = SYMMETRIC_INT8 if qmax == FULL_WEIGHT_QMAX else QScheme(f"symmetric_int8_{qmax}", -qmax, qmax, True)
    scales = weight_qparams_per_channel(weight.detach().cpu().float(), 0, scheme)[0].numpy().astype(np.float32)
    if not per_channel:
        scales = np.full_like(scales, scales.max())
    w = weight.detach().cpu().numpy().astype(np.float32)
    q = np.clip(np.rint(w / scales.reshape(-1, *([1] * (w.ndim - 1)))), -qmax, qmax).astype(np.int8)
    return q, scales


def quantize_bias(bias: torch.Tensor | None, input_scale: float, weight_scales: np.ndarray) -> np.ndarray:
    """int32 bias with per-channel scale ``input_scale * weight_scales`` (what QLinearConv adds to the accumulator)."""
    b = np.zeros(len(weight_scales), np.float32) if bias is None else bias.detach().cpu().numpy().astype(np.float32)
    scale = (np.float32(input_scale) * weight_scales).astype(np.float32)
    # clipped in float64: float32 rounds INT32_MAX up to 2**31, which wraps to -2**31 in the cast
    return np.clip(np.rint(b / scale).astype(np.float64), -INT32_MAX, INT32_MAX).astype(np.int32)


def fake_quant(x: torch.Tensor, q: ActQuant) -> torch.Tensor:
    """Quantize-dequantize ``x`` per tensor, with ORT's QuantizeLinear arithmetic (``quant.qparams``)."""
    return fake_quantize(x, q.scale, q.zero_point, q.qmin, q.qmax)


@dataclass
class ConvSim:
    """A conv's int8 version as float tensors on the integer grids (weights, bias) plus its activation qparams."""

    weight: torch.Tensor
    bias: torch.Tensor
    act_in: ActQuant
    act_out: ActQuant

    def __call__(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """What the QLinearConv computes for float input ``x`` (dequantized output)."""
        return fake_quant(conv._conv_forward(fake_quant(x, self.act_in), self.weight, self.bias), self.act_out)


def conv_sim(conv: nn.Conv2d, act_in: ActQuant, act_out: ActQuant,
             weight: tuple[np.ndarray, np.ndarray] | None = None) -> ConvSim:
    """Quantized weight/bias of ``conv`` for the given input/output activation qparams (``weight``: the
    int8 weight and scales to use, default nearest rounding)."""
    wq, ws = quantize_weight(conv.weight) if weight is None else weight
    bq = quantize_bias(conv.bias, act_in.scale, ws)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    sim_weight = torch.from_numpy(wq.astype(np.float32) * ws.reshape(shape)).to(conv.weight)
    bias = torch.from_numpy(bq.astype(np.float64) * (np.float32(act_in.scale) * ws)).to(conv.weight)
    return ConvSim(sim_weight, bias, act_in, act_out)


@contextmanager
def simulated(model: nn.Module, plan: QuantPlan) -> Iterator[nn.Module]:
    """Within the block, ``model`` runs with the plan's convs fake-quantized (weights restored on exit)."""
    convs = conv_layers(model)
    unknown = [n for n in plan.quantized if n not in convs]
    if unknown:
        raise ValueError(f"plan quantizes convs not in the model: {unknown[:5]}")
    saved: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    handles = []
    try:
        for name in plan.quantized:
            conv = convs[name]
            sim = conv_sim(conv, plan.act(f"{name}:in"), plan.act(f"{name}:out"), plan.weight(name, conv))
            saved[name] = (conv.weight.data, None if conv.bias is None else conv.bias.data)
            conv.weight.data = sim.weight
            if conv.bias is None:
                conv.bias = nn.Parameter(sim.bias, requires_grad=False)
            else:
                conv.bias.data = sim.bias
            handles.append(conv.register_forward_pre_hook(  # after an input rescale hook (quant.rescale)
                lambda _m, args, q=sim.act_in: (fake_quant(args[0], q),) + tuple(args[1:])))
            handles.append(conv.register_forward_hook(  # prepended: before an output rescale hook
                lambda _m, _a, out, q=sim.act_out: fake_quant(out, q), prepend=True))
        yield model
    finally:
        for h in handles:
            h.remove()
        for name, (weight, bias) in saved.items():
            convs[name].weight.data = weight
            if bias is None:
                convs[name].bias = None
            else:
                conv_bias = convs[name].bias
                assert conv_bias is not None  # the conv had a bias when saved and keeps it
                conv_bias.data = bias


@torch.no_grad()
def run_simulated(model: nn.Module, plan: QuantPlan, blob: np.ndarray | torch.Tensor) -> np.ndarray:
    """Output of ``model`` on ``blob`` with the plan fake-quantized, as a numpy array."""
    x = torch.as_tensor(np.asarray(blob, dtype=np.float32))
    with simulated(model, plan):
        return model(x).cpu().numpy()
