"""Data-aware int8 weight rounding (GPTQ / Optimal Brain Quantization, Frantar et al. 2022/2023).

Rounding every weight to its nearest int8 step is optimal for the weights, not for the conv output:
on ByteTrack-nano, where some input channels of a conv are 100x larger than others, nearest rounding of
the small weights that read a large channel moves the output a lot (one 1x1 conv with 43 dB weight
SQNR, quantized alone, took the detector's output cosine to 0.91). GPTQ rounds the weights of each
output channel one input column at a time and spreads each column's rounding error over the columns
not yet rounded, weighted by the inverse Hessian ``H = X X^T`` of the conv's (int8) input patches, which
minimises ``||W X - Q X||^2`` far better than nearest rounding. The per-channel scales stay the
symmetric max-based ones of the plan (``QuantPlan.weight``): only the integers change.

Grouped and depthwise convs get one Hessian per group (its input channels x kernel positions).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from int8track.quant.runtime_int8 import FULL_WEIGHT_QMAX
from int8track.quant.simulate import QuantPlan, conv_layers, simulated

#: dampening added to the Hessian diagonal, as a fraction of its mean (the GPTQ paper's 1%)
DAMP = 0.01


def conv_patches(conv: nn.Conv2d, x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The conv's input as patches per group: ``(groups, C_in/groups * kh * kw, positions)`` in ``dtype``."""
    x = x.to(dtype)
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0):
        # a 1x1 conv's patches are its input pixels: a reshape, not an im2col copy
        return x.reshape(x.shape[0], conv.groups, conv.in_channels // conv.groups, -1).permute(1, 2, 0, 3).reshape(
            conv.groups, conv.in_channels // conv.groups, -1)
    padding = cast(tuple[int, ...], conv.padding)  # numeric padding: string modes ("same") are not supported here
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=padding, stride=conv.stride)
    d = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    return cols.reshape(x.shape[0], conv.groups, d, -1).permute(1, 2, 0, 3).reshape(conv.groups, d, -1)


@torch.no_grad()
def input_hessians(model: nn.Module, plan: QuantPlan, blobs: Sequence[np.ndarray],
                   names: Sequence[str], progress: bool = False) -> dict[str, torch.Tensor]:
    """``sum X X^T`` of each named conv's input patches ``(groups, d, d)``, with the plan simulated
    (so each conv sees the int8 input it will get), over ``blobs``."""
    convs = conv_layers(model)
    hessians: dict[str, torch.Tensor] = {}

    def record(name: str, x: torch.Tensor) -> None:
        # one frame's patches in float32 (half the memory traffic of float64; a frame has at most ~10^5
        # positions, so its sum keeps ~1e-4 relative precision, far below the 1% damping), frames summed in float64
        cols = conv_patches(convs[name], x, torch.float32)
        h = (cols @ cols.transpose(1, 2)).double()
        hessians[name] = h if name not in hessians else hessians[name] + h

    with simulated(model, plan):  # registered after the plan's input fake-quant: sees the int8 input
        handles = [convs[n].register_forward_pre_hook(lambda _m, args, n=n: record(n, args[0])) for n in names]
        try:
            for blob in tqdm(blobs, desc="GPTQ statistics", unit="frame", disable=not progress):
                model(torch.from_numpy(np.asarray(blob, np.float32)))
        finally:
            for h in handles:
                h.remove()
    return hessians


def gptq_round(weight: torch.Tensor, scales: np.ndarray, hessian: torch.Tensor, damp: float = DAMP,
               qmax: int = FULL_WEIGHT_QMAX) -> np.ndarray:
    """int8 weights in ``[-qmax, qmax]`` (same shape as ``weight``) on the per-output-channel ``scales``, rounded by
    GPTQ with one Hessian per group (``hessian``: ``(groups, d, d)``), columns in descending Hessian-diagonal order."""
    groups, d, _ = hessian.shape
    c_out = weight.shape[0]
    if c_out % groups or weight[0].numel() != d:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit {groups} Hessians of size {d}")
    w = weight.detach().double().reshape(groups, c_out // groups, d).clone()
    s = torch.from_numpy(np.asarray(scales, np.float64)).reshape(groups, -1, 1)
    h = hessian.double().clone()
    diag = torch.diagonal(h, dim1=1, dim2=2)
    dead = diag == 0
    diag[dead] = 1.0  # a constant-zero input: its weights do not matter, any rounding is exact
    diag += damp * diag.mean(dim=1, keepdim=True)
    order = torch.argsort(diag, dim=1, descending=True)  # "act order": most informative columns first
    h = torch.gather(torch.gather(h, 1, order[:, :, None].expand(-1, -1, d)), 2, order[:, None, :].expand(-1, d, -1))
    w = torch.gather(w, 2, order[:, None, :].expand(-1, w.shape[1], -1))
    # upper Cholesky factor of H^-1: row i holds the update weights for the columns after i
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i in range(d):
        col = w[:, :, i]
        q[:, :, i] = torch.clamp(torch.round(col / s[:, :, 0]), -qmax, qmax)
        err = (col - q[:, :, i] * s[:, :, 0]) / u[:, i, i][:, None]
        w[:, :, i + 1:] -= err[:, :, None] * u[:, None, i, i + 1:]
    q = torch.empty_like(q).scatter_(2, order[:, None, :].expand(-1, q.shape[1], -1), q)
    return q.reshape(weight.shape).numpy().astype(np.int8)


def gptq_plan(model: nn.Module, plan: QuantPlan, blobs: Sequence[np.ndarray], damp: float = DAMP,
              progress: bool = False) -> QuantPlan:
    """The plan with every quantized conv's int8 weights rounded by GPTQ on ``blobs``."""
    convs = conv_layers(model)
    hessians = input_hessians(model, plan, blobs, plan.quantized, progress)
    rounded = {}
    for name in plan.quantized:
        _, scales = plan.weight(name, convs[name])
        rounded[name] = gptq_round(convs[name].weight, scales, hessians[name], damp, plan.weight_qmax)
    return plan.with_rounded(rounded)
