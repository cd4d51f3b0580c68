"""Bias correction for quantized weights (Nagel et al. 2019, Sec. 4.2).

Quantizing a conv's weights ``W -> W_q`` shifts the mean of its output by ``E[(W - W_q) x]`` per
output channel (rounding errors do not average out when the input mean is non-zero, e.g. after a
ReLU). Adding that mean back into the bias removes the shift:

* empirical: ``E[W x] - E[W_q x]`` measured on calibration inputs (per conv, or for a whole model,
  layer by layer so later layers see already-corrected inputs);
* analytical (data-free): ``(W - W_q) E[x]`` with ``E[x]`` from the preceding BatchNorm's
  statistics: the pre-activation is ``N(beta, gamma^2)`` per channel and ``E[ReLU(z)]`` has the
  clipped-normal closed form ``mu Phi(mu / sigma) + sigma phi(mu / sigma)``.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from int8track.quant.equalize import run_with_output_hooks


def output_channel_mean(
    conv: nn.Conv2d, inputs: Iterable[torch.Tensor], weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over batch and positions of ``conv(x)`` without bias, per output channel (float64).

    ``weight`` replaces ``conv.weight``; the conv is linear, so a weight difference gives the mean error.
    """
    w = conv.weight if weight is None else weight
    total = torch.zeros(conv.out_channels, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for x in inputs:
            y = conv._conv_forward(x.to(w.dtype), w.detach(), None)
            total += y.double().sum(dim=(0, 2, 3)).cpu()
            count += y.shape[0] * y.shape[2] * y.shape[3]
    if count == 0:
        raise ValueError("bias correction needs at least one non-empty input batch")
    return total / count


def _add_to_bias(conv: nn.Conv2d, delta: torch.Tensor) -> None:
    with torch.no_grad():
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros_like(conv.weight[:, 0, 0, 0]))
        conv.bias.add_(delta.to(conv.bias))


def _check_pair(float_conv: nn.Conv2d, quant_conv: nn.Conv2d) -> None:
    if float_conv.weight.shape != quant_conv.weight.shape or float_conv.groups != quant_conv.groups:
        raise ValueError(
            f"float and quantized convs differ: {tuple(float_conv.weight.shape)}/groups={float_conv.groups} "
            f"vs {tuple(quant_conv.weight.shape)}/groups={quant_conv.groups}"
        )


def empirical_bias_correction(
    float_conv: nn.Conv2d,
    quant_conv: nn.Conv2d,
    inputs: Iterable[torch.Tensor],
    quant_inputs: Iterable[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Shift ``quant_conv``'s bias so that ``E[quant_conv(x_q)] = E[float_conv(x)]`` per channel; returns the shift.

    The shift is ``E[W x] - E[W_q x_q] + b - b_q``. ``quant_inputs`` defaults to ``inputs`` (same
    input for both: corrects the weight error alone); pass the quantized network's own inputs to
    also absorb the mean error arriving from upstream.
    """
    _check_pair(float_conv, quant_conv)
    inputs = list(inputs)
    if quant_inputs is None:
        weight_error = float_conv.weight.detach() - quant_conv.weight.detach().to(float_conv.weight.dtype)
        correction = output_channel_mean(float_conv, inputs, weight_error)
    else:
        correction = output_channel_mean(float_conv, inputs) - output_channel_mean(quant_conv, quant_inputs)
    correction += _bias_or_zero(float_conv) - _bias_or_zero(quant_conv)
    _add_to_bias(quant_conv, correction)
    return correction


def _bias_or_zero(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is not None:
        return conv.bias.detach().double().cpu()
    return torch.zeros(conv.out_channels, dtype=torch.float64)


def _conv_output_means(model: nn.Module, names: list[str], batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel mean (with bias) of the named convs' raw outputs over ``batches``, in one pass."""
    modules = dict(model.named_modules())
    sums = [torch.zeros(modules[n].out_channels, dtype=torch.float64) for n in names]
    counts = [0] * len(names)

    def record(k: int, out: torch.Tensor) -> None:
        sums[k] += out.double().sum(dim=(0, 2, 3)).cpu()
        counts[k] += out.shape[0] * out.shape[2] * out.shape[3]

    run_with_output_hooks(model, [modules[n] for n in names], batches, record, prepend=True)
    return {n: sums[k] / max(counts[k], 1) for k, n in enumerate(names)}


def correct_model_biases(
    float_model: nn.Module,
    quant_model: nn.Module,
    batches: Iterable[torch.Tensor],
    names: list[str] | None = None,
    sequential: bool = True,
) -> dict[str, torch.Tensor]:
    """Empirical bias correction of every named Conv2d of ``quant_model`` (a same-structure copy of
    ``float_model`` with quantized weights and possibly quantized activations), in place.

    Each conv's bias gets ``mean float output - mean quantized output`` over ``batches``, both measured on
    the raw conv output, before any other forward hook: before the simulated output quantizer, whose
    clipping (e.g. of the negative side a SiLU discards, ``quant.activation_ranges``) is not a weight
    error to correct, and before an output rescale (``quant.rescale``), so the shift is in bias units. With
    ``sequential`` (the paper's layer-by-layer scheme) later layers are measured on inputs that
    already carry the earlier corrections: done in ONE pass of the quantized model over all
    batches concatenated (same shape required; memory grows with their number), each conv's hook
    correcting its own output in execution order. Otherwise all corrections come from one pass of
    independent measurements. Returns the corrections by name.
    """
    batches = list(batches)
    quant_convs = {n: m for n, m in quant_model.named_modules() if isinstance(m, nn.Conv2d)}
    names = list(quant_convs) if names is None else names
    missing = [n for n in names if n not in quant_convs]
    if missing:
        raise ValueError(f"not Conv2d layers of the quantized model: {missing}")
    target = _conv_output_means(float_model, names, batches)
    if not sequential:
        current = _conv_output_means(quant_model, names, batches)
        corrections = {n: target[n] - current[n] for n in names}
        for n in names:
            _add_to_bias(quant_convs[n], corrections[n])
        return corrections
    corrections = {}

    def correct(name: str):
        def hook(conv: nn.Conv2d, _args: tuple, out: torch.Tensor) -> torch.Tensor | None:
            if name in corrections:  # a conv run twice is corrected once
                return None
            corrections[name] = target[name] - out.detach().double().mean(dim=(0, 2, 3)).cpu()
            _add_to_bias(conv, corrections[name])
            return out + corrections[name].to(out).view(1, -1, 1, 1)
        return hook

    handles = [quant_convs[n].register_forward_hook(correct(n), prepend=True) for n in names]
    try:
        with torch.no_grad():
            quant_model(torch.cat(batches))
    finally:
        for h in handles:
            h.remove()
    return corrections
