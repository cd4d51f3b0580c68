"""Quantization parameters and the exact ONNX QuantizeLinear / DequantizeLinear arithmetic.

Conventions (chosen to match what ONNX Runtime executes, so that a simulation in PyTorch
reproduces the int8 ONNX model bit for bit):

* ``q = saturate(round_half_to_even(x / scale) + zero_point)`` and ``x' = (q - zero_point) * scale``,
  computed in float32 with a true division (ONNX QuantizeLinear; ``torch.round`` is half-to-even).
* Activations: asymmetric uint8, full 8 bits ``[0, 255]`` (no 7-bit ``reduce_range``), integer zero
  point. The represented range always contains 0 so that zero padding is exact.
* Weights: symmetric int8 per output channel with the *restricted* range ``[-127, 127]`` and zero
  point 0 (as TensorRT and ONNX Runtime's ``WeightSymmetric``): the grid is symmetric, so
  ``-w`` quantizes to ``-q`` and int8 x int8 products never hit the ``-128 * -128`` corner.
* Scales are rounded to float32 before the zero point is derived, because that is what is stored
  in the ONNX initializer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class QScheme:
    """An integer grid: ``[qmin, qmax]`` and whether the zero point is fixed at 0 (symmetric)."""

    name: str
    qmin: int
    qmax: int
    symmetric: bool

    @property
    def torch_dtype(self) -> torch.dtype:
        """Smallest torch integer dtype holding the grid (uint8, int8, else int32)."""
        return integer_dtype(self.qmin, self.qmax)


def integer_dtype(qmin: int, qmax: int) -> torch.dtype:
    """Smallest torch integer dtype holding ``[qmin, qmax]`` (uint8, int8, else int32)."""
    if qmin >= 0 and qmax <= 255:
        return torch.uint8
    if qmin >= -128 and qmax <= 127:
        return torch.int8
    return torch.int32


ASYMMETRIC_UINT8 = QScheme("asymmetric_uint8", 0, 255, symmetric=False)
SYMMETRIC_INT8 = QScheme("symmetric_int8", -127, 127, symmetric=True)
SYMMETRIC_INT8_FULL = QScheme("symmetric_int8_full", -128, 127, symmetric=True)
SCHEMES: dict[str, QScheme] = {s.name: s for s in (ASYMMETRIC_UINT8, SYMMETRIC_INT8, SYMMETRIC_INT8_FULL)}


def get_scheme(scheme: str | QScheme) -> QScheme:
    """Return the QScheme for a name (``asymmetric_uint8``, ``symmetric_int8``, ``symmetric_int8_full``)."""
    if isinstance(scheme, QScheme):
        return scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; expected one of {sorted(SCHEMES)}")
    return SCHEMES[scheme]


def _as_float32(value: float) -> float:
    return float(np.float32(value))


def activation_qparams(lo: float, hi: float, scheme: str | QScheme = ASYMMETRIC_UINT8) -> tuple[float, int]:
    """Per-tensor (scale, zero_point) covering ``[lo, hi]`` extended to contain 0.

    Asymmetric: ``scale = (hi - lo) / (qmax - qmin)``, ``zero_point = round(qmin - lo / scale)``.
    Symmetric: ``scale = 2 max(|lo|, |hi|) / (qmax - qmin)``, ``zero_point = 0``.
    A degenerate range (scale would be below float32 ``tiny``, e.g. an all-zero tensor) gets scale 1.0,
    as ONNX Runtime's calibrator does, so that it still quantizes 0 exactly.
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"activation range must be finite, got [{lo}, {hi}]")
    if lo > hi:
        raise ValueError(f"activation range is inverted: lo={lo} > hi={hi}")
    s = get_scheme(scheme)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if s.symmetric:
        width = 2.0 * max(-lo, hi)
    else:
        width = hi - lo
    if width / (s.qmax - s.qmin) < _FLOAT32_TINY:
        return 1.0, int(np.clip(0, s.qmin, s.qmax))
    scale = _as_float32(width / (s.qmax - s.qmin))
    if s.symmetric:
        return scale, 0
    zero_point = int(np.clip(np.round(s.qmin - lo / scale), s.qmin, s.qmax))
    return scale, zero_point


def weight_qparams_per_channel(
    w: torch.Tensor, axis: int = 0, scheme: str | QScheme = SYMMETRIC_INT8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-channel (scales float32 (C,), zero_points int32 (C,) all 0) along ``axis``.

    ``scale_c = 2 max|w_c| / (qmax - qmin)`` (``max|w_c| / 127`` for the default restricted range);
    a channel whose scale would be below float32 ``tiny`` (all zero) gets scale 1.0.
    """
    s = get_scheme(scheme)
    if not s.symmetric:
        raise ValueError(f"weight quantization is symmetric; got scheme {s.name!r}")
    if w.dim() == 0:
        raise ValueError("weight_qparams_per_channel needs a tensor with at least one dimension")
    axis = axis % w.dim()
    amax = w.detach().abs().transpose(0, axis).reshape(w.shape[axis], -1).amax(dim=1).double()
    scales = (2.0 * amax / (s.qmax - s.qmin)).float()
    scales = torch.where(scales.double() < _FLOAT32_TINY, torch.ones_like(scales), scales)
    return scales, torch.zeros(w.shape[axis], dtype=torch.int32)


def _broadcast(
    param: torch.Tensor | float | int, x: torch.Tensor, axis: int | None, dtype: torch.dtype
) -> torch.Tensor:
    """Scalar or per-channel parameter shaped to broadcast against ``x`` along ``axis``."""
    p = torch.as_tensor(param, dtype=dtype, device=x.device)
    if p.numel() == 1:
        return p.reshape(())
    if axis is None:
        raise ValueError(f"per-channel parameter with {p.numel()} values needs an axis")
    axis = axis % x.dim()
    if p.numel() != x.shape[axis]:
        raise ValueError(f"per-channel parameter has {p.numel()} values but x has {x.shape[axis]} along axis {axis}")
    shape = [1] * x.dim()
    shape[axis] = -1
    return p.reshape(shape)


def _quantize_float(
    x: torch.Tensor, scale: torch.Tensor | float, zero_point: torch.Tensor | int, qmin: int, qmax: int, axis: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(integer values held in float32, broadcast scale, broadcast zero point) of QuantizeLinear."""
    xf = x.float()
    s = _broadcast(scale, xf, axis, torch.float32)
    zp = _broadcast(zero_point, xf, axis, torch.float32)
    return torch.clamp(torch.round(xf / s) + zp, qmin, qmax), s, zp


def quantize(
    x: torch.Tensor,
    scale: torch.Tensor | float,
    zero_point: torch.Tensor | int,
    qmin: int,
    qmax: int,
    axis: int | None = None,
) -> torch.Tensor:
    """ONNX QuantizeLinear: integer tensor ``clamp(round_half_even(x / scale) + zp, qmin, qmax)``."""
    q, _, _ = _quantize_float(x, scale, zero_point, qmin, qmax, axis)
    return q.to(integer_dtype(qmin, qmax))


def dequantize(
    q: torch.Tensor, scale: torch.Tensor | float, zero_point: torch.Tensor | int, axis: int | None = None
) -> torch.Tensor:
    """ONNX DequantizeLinear: float32 ``(q - zero_point) * scale``."""
    s = _broadcast(scale, q, axis, torch.float32)
    zp = _broadcast(zero_point, q, axis, torch.int32)
    return (q.to(torch.int32) - zp).float() * s


def fake_quantize(
    x: torch.Tensor,
    scale: torch.Tensor | float,
    zero_point: torch.Tensor | int,
    qmin: int,
    qmax: int,
    axis: int | None = None,
) -> torch.Tensor:
    """Quantize-dequantize in float32, identical to DequantizeLinear(QuantizeLinear(x)).

    Per-tensor when ``scale`` is a scalar; per-channel along ``axis`` when it has one value per channel.
    """
    q, s, zp = _quantize_float(x, scale, zero_point, qmin, qmax, axis)
    return (q - zp) * s


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum ref^2 / sum (ref - approx)^2)`` in dB.

    ``inf`` when the approximation is exact; ``-inf`` when the reference is all zero but the
    approximation is not.
    """
    if reference.shape != approx.shape:
        raise ValueError(f"sqnr_db: shapes differ {tuple(reference.shape)} vs {tuple(approx.shape)}")
    ref = reference.detach().double()
    signal = float((ref**2).sum())
    noise = float(((ref - approx.detach().double()) ** 2).sum())
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))
