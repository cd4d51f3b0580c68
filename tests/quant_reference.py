"""Reference implementations the tests compare the quantizer against: data-free (analytical) bias correction
and high-bias absorption. No product path uses them (empirical bias correction and activation-aware ranges
replaced them there), so they live with the tests."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from int8track.quant.bias_correction import _add_to_bias, _check_pair
from int8track.quant.equalize import (
    Layer,
    find_equalization_chains,
    is_positively_homogeneous,
    run_with_output_hooks,
    verify_chains,
)


def constant_input_response(conv: nn.Conv2d, values: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``conv`` (no bias) applied to an input that is ``values[i]`` everywhere on channel i, away from padding.

    Per output channel ``sum over taps and the group's input channels of W[o, i] values[i]``;
    ``weight`` replaces ``conv.weight`` (e.g. a weight difference). Shape (out_channels,).
    """
    w = conv.weight if weight is None else weight
    kh = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
    kw = (conv.kernel_size[1] - 1) * conv.dilation[1] + 1
    constant = values.detach().to(w).view(1, -1, 1, 1).expand(1, -1, kh, kw)
    with torch.no_grad():
        return F.conv2d(constant, w.detach(), None, 1, 0, conv.dilation, conv.groups).reshape(-1)


def high_bias_from_bn(bn: nn.BatchNorm2d, n_sigma: float = 3.0) -> torch.Tensor:
    """Data-free absorbable bias ``c = max(0, beta - n_sigma |gamma|)`` (pre-activation ~ N(beta, gamma^2))."""
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros(bn.num_features)
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones(bn.num_features)
    return torch.clamp(beta - n_sigma * gamma.abs(), min=0.0)


def absorb_high_bias(conv1: nn.Conv2d, act: nn.Module, conv2: nn.Conv2d, c: torch.Tensor) -> None:
    """In place: ``b1 -= c`` and ``b2 += W2 c`` (W2 summed over its kernel taps, per group).

    Exact where the pre-activation ``z >= c`` (then ``f(z - c) = f(z) - c`` for ReLU-like f) and
    conv2 sees no zero padding; at padded borders of a k > 1 conv2 the padded zeros now stand for
    ``-c``, so border outputs move by the padded taps times c. Measure it on real data.
    """
    if not is_positively_homogeneous(act):
        raise ValueError(f"high-bias absorption needs a ReLU-like activation, got {type(act).__name__}")
    c = c.detach().to(conv1.weight).reshape(-1)
    if c.numel() != conv1.out_channels or bool((c < 0).any()):
        raise ValueError(f"absorbed bias must be {conv1.out_channels} non-negative values")
    with torch.no_grad():
        shift = constant_input_response(conv2, c)
        if conv1.bias is None:
            conv1.bias = nn.Parameter(torch.zeros_like(conv1.weight[:, 0, 0, 0]))
        if conv2.bias is None:
            conv2.bias = nn.Parameter(torch.zeros_like(conv2.weight[:, 0, 0, 0]))
        conv1.bias.sub_(c)
        conv2.bias.add_(shift.to(conv2.bias))


def relu_normal_mean(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``E[max(0, z)]`` for ``z ~ N(mu, sigma^2)``: ``mu Phi(mu/sigma) + sigma phi(mu/sigma)`` (``max(mu, 0)`` at sigma 0)."""
    mu, sigma = mu.double(), sigma.double().abs()
    t = mu / sigma.clamp_min(1e-300)
    mean = mu * torch.special.ndtr(t) + sigma * torch.exp(-0.5 * t**2) / math.sqrt(2 * math.pi)
    return torch.where(sigma > 0, mean, mu.clamp_min(0.0))


def expected_input_from_bn(bn: nn.BatchNorm2d, act: nn.Module) -> torch.Tensor:
    """Per-channel ``E[act(z)]`` with ``z ~ N(beta, gamma^2)`` (the BN output distribution it was trained to).

    Supported: ReLU (clipped-normal mean) and Identity (``beta``).
    """
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros(bn.num_features, dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones(bn.num_features, dtype=torch.float64)
    if isinstance(act, nn.ReLU):
        return relu_normal_mean(beta, gamma)
    if isinstance(act, nn.Identity):
        return beta
    raise ValueError(f"analytical bias correction supports ReLU or Identity after BatchNorm, got {type(act).__name__}")


def analytical_bias_correction(float_conv: nn.Conv2d, quant_conv: nn.Conv2d, expected_input: torch.Tensor) -> torch.Tensor:
    """Data-free: add ``(W - W_q) E[x]`` (per output channel, over taps and group inputs) to ``quant_conv``'s bias.

    Assumes ``E[x]`` is the same at every position (true away from zero padding). Returns the correction.
    """
    _check_pair(float_conv, quant_conv)
    if expected_input.numel() != float_conv.in_channels:
        raise ValueError(f"expected_input has {expected_input.numel()} values, conv has {float_conv.in_channels} input channels")
    diff = float_conv.weight.detach().double() - quant_conv.weight.detach().double()
    correction = constant_input_response(float_conv, expected_input.double(), weight=diff).cpu()
    _add_to_bias(quant_conv, correction)
    return correction


def preactivation_minimum(model: nn.Module, convs: list[nn.Conv2d], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-channel minimum of each conv's output (its pre-activation once BN is folded) over ``inputs``.

    The data-driven estimate of the absorbable bias when BN statistics are gone: ``c = max(0, min z)``.
    """
    mins = [torch.full((conv.out_channels,), float("inf")) for conv in convs]

    def record(k: int, out: torch.Tensor) -> None:
        mins[k] = torch.minimum(mins[k], out.float().transpose(0, 1).reshape(out.shape[1], -1).amin(1).cpu())

    run_with_output_hooks(model, list(convs), inputs, record)
    return mins


def absorb_high_biases(
    model: nn.Module, inputs: list[torch.Tensor], chains: list[list[Layer]] | None = None
) -> list[tuple[str, str]]:
    """Data-driven high-bias absorption on every ReLU-like pair of ``chains`` (default: found ones).

    ``c_i = max(0, min over the data of conv1's pre-activation i)``, so ``z >= c`` holds on ``inputs``.
    Links are verified on ``inputs[0]`` first (:func:`verify_chains`). Returns the (conv1, conv2) pairs changed.
    """
    if not inputs:
        raise ValueError("absorb_high_biases needs at least one input batch")
    chains = find_equalization_chains(model) if chains is None else chains
    chains, _ = verify_chains(model, chains, inputs[0])
    pairs = [(a, b) for chain in chains for a, b in zip(chain, chain[1:]) if is_positively_homogeneous(a.act)]
    mins = preactivation_minimum(model, [a.conv for a, _ in pairs], inputs)
    for (a, b), m in zip(pairs, mins):
        absorb_high_bias(a.conv, a.act, b.conv, torch.clamp(m, min=0.0))
    return [(a.name, b.name) for a, b in pairs]
