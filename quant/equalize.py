"""Cross-layer equalization and high-bias absorption (Nagel et al. 2019, "Data-Free Quantization
through Weight Equalization and Bias Correction", Sec. 4.1).

For conv1 -> f -> conv2 with f positively homogeneous (``f(s z) = s f(z)`` for ``s > 0``: ReLU,
LeakyReLU, PReLU, identity), scaling conv1's output channel i by ``1 / s_i`` and conv2's input
channel i by ``s_i`` leaves the function unchanged. With per-channel weight ranges ``r1_i``
(conv1 output channel) and ``r2_i`` (conv2 input channel), ``s_i = (1 / r2_i) sqrt(r1_i r2_i)``
makes both ranges ``sqrt(r1_i r2_i)``, which is what per-tensor (and helps per-channel) int8 weight
quantization wants. Chains (conv -> dw -> pw) are swept pair by pair until the scales converge.

SiLU (YOLOX, YOLOv5) and ReLU6 are NOT positively homogeneous: equalizing through them changes the
network. Such pairs are skipped unless ``allow_non_homogeneous=True``; measure the output change
if you enable it. BatchNorm must be folded first (quant.fold.fold_batchnorm).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from int8track.quant.fold import ACTIVATION_TYPES

POSITIVELY_HOMOGENEOUS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Identity)


@dataclass(frozen=True)
class Layer:
    """One link of a chain: a conv (qualified ``name``) and the activation applied to its output.

    ``unfolded_bn`` marks a BatchNorm still sitting between the conv and its activation.
    """

    name: str
    conv: nn.Conv2d
    act: nn.Module
    unfolded_bn: bool = False


@dataclass
class EqualizationReport:
    """What ``cross_layer_equalize`` did: pairs equalized, pairs skipped (with reason), sweeps run."""

    equalized: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    sweeps: int = 0


def output_channel_ranges(conv: nn.Conv2d) -> torch.Tensor:
    """``max |W|`` per output channel (dim 0), shape (out_channels,)."""
    return conv.weight.detach().abs().reshape(conv.out_channels, -1).amax(dim=1)


def input_channel_ranges(conv: nn.Conv2d) -> torch.Tensor:
    """``max |W|`` over every weight that reads input channel i, shape (in_channels,), any ``groups``."""
    g = conv.groups
    w = conv.weight.detach().abs().reshape(g, conv.out_channels // g, conv.in_channels // g, -1)
    return w.amax(dim=(1, 3)).reshape(conv.in_channels)


def is_positively_homogeneous(act: nn.Module) -> bool:
    """True for activations with ``f(s z) = s f(z)``, s > 0 (ReLU, LeakyReLU, PReLU, Identity)."""
    return isinstance(act, POSITIVELY_HOMOGENEOUS)


def equalization_scales(conv1: nn.Conv2d, conv2: nn.Conv2d) -> torch.Tensor:
    """Per-channel ``s_i = sqrt(r1_i / r2_i)``; 1 where either range is 0 (dead channel: nothing to balance)."""
    r1, r2 = output_channel_ranges(conv1).double(), input_channel_ranges(conv2).double()
    if r1.numel() != r2.numel():
        raise ValueError(f"conv1 has {r1.numel()} output channels but conv2 reads {r2.numel()} input channels")
    s = torch.sqrt(r1 / r2)
    return torch.where((r1 > 0) & (r2 > 0), s, torch.ones_like(s))


def apply_equalization(conv1: nn.Conv2d, conv2: nn.Conv2d, s: torch.Tensor) -> None:
    """In place: conv1 output channel i (weights and bias) ``/ s_i``, conv2 input channel i ``* s_i``."""
    with torch.no_grad():
        shape1 = (-1,) + (1,) * (conv1.weight.dim() - 1)
        conv1.weight.div_(s.to(conv1.weight).view(shape1))
        if conv1.bias is not None:
            conv1.bias.div_(s.to(conv1.bias))
        g = conv2.groups
        w2 = conv2.weight.view(g, conv2.out_channels // g, conv2.in_channels // g, -1)
        w2.mul_(s.to(conv2.weight).view(g, 1, conv2.in_channels // g, 1))


def equalize_chain(
    chain: list[Layer], max_sweeps: int = 20, tol: float = 1e-6, allow_non_homogeneous: bool = False
) -> EqualizationReport:
    """Equalize consecutive pairs of one chain in place, sweeping until every ``|log s| < tol``."""
    report = EqualizationReport()
    pairs = []
    for a, b in zip(chain, chain[1:]):
        reason = _skip_reason(a, allow_non_homogeneous)
        if reason:
            report.skipped.append((a.name, b.name, reason))
        else:
            pairs.append((a, b))
            report.equalized.append((a.name, b.name))
    for sweep in range(1, max_sweeps + 1):
        report.sweeps = sweep
        worst = 0.0
        for a, b in pairs:
            s = equalization_scales(a.conv, b.conv)
            apply_equalization(a.conv, b.conv, s)
            worst = max(worst, float(s.log().abs().max()))
        if worst < tol:
            break
    return report


def _skip_reason(layer: Layer, allow_non_homogeneous: bool) -> str:
    if layer.unfolded_bn:
        return "BatchNorm between the convs: fold it first (quant.fold.fold_batchnorm)"
    if not is_positively_homogeneous(layer.act) and not allow_non_homogeneous:
        return f"{type(layer.act).__name__} is not positively homogeneous (allow_non_homogeneous=False)"
    return ""


def _block_layers(module: nn.Module | None, name: str) -> list[Layer] | None:
    """Layers of a conv block in execution order, or None if ``module`` is not one.

    ``conv``/``bn``/``act`` blocks (YOLOX BaseConv, YOLOv5 Conv), ``dconv``/``pconv`` (YOLOX DWConv)
    and a bare Conv2d (activation Identity).
    """
    if isinstance(module, nn.Conv2d):
        return [Layer(name, module, nn.Identity())]
    conv = getattr(module, "conv", None)
    if isinstance(conv, nn.Conv2d) and isinstance(act := getattr(module, "act", None), nn.Module):
        unfolded = isinstance(getattr(module, "bn", None), nn.BatchNorm2d)
        return [Layer(f"{name}.conv", conv, act, unfolded)]
    if module is not None and hasattr(module, "dconv") and hasattr(module, "pconv"):
        # submodules (nn.Module.__getattr__ is typed Tensor | Module)
        dconv, pconv = cast(nn.Module, module.dconv), cast(nn.Module, module.pconv)
        first, second = _block_layers(dconv, f"{name}.dconv"), _block_layers(pconv, f"{name}.pconv")
        return first + second if first and second else None
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def find_equalization_chains(model: nn.Module) -> list[list[Layer]]:
    """Conv chains in which each conv's activation output feeds only the next conv, by module structure.

    Sources: DWConv (dconv -> pconv); Bottleneck, recognised by its residual flag (``conv1 -> conv2``
    + ``use_add`` in YOLOX, ``cv1 -> cv2`` + ``add`` in YOLOv5; conv2 possibly a DWConv; SPP blocks
    and CSP/C3 layers also have conv1/conv2 but pool/concat in between); runs of consecutive conv
    blocks in an ``nn.Sequential`` (a bare Conv2d takes the BN/activation children after it). A
    chain whose convs all appear in an outer chain already found is not repeated.

    Module structure cannot prove data flow (YOLOv5 keeps its layers in a Sequential but routes
    outputs to later Concats): pass the chains through :func:`verify_chains` with an example input.
    """
    chains: list[list[Layer]] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        candidates = _sequential_chains(module, name) if isinstance(module, nn.Sequential) else []
        for first, second, flag in (("conv1", "conv2", "use_add"), ("cv1", "cv2", "add")):
            if isinstance(getattr(module, flag, None), bool):
                a = _block_layers(getattr(module, first, None), _join(name, first))
                b = _block_layers(getattr(module, second, None), _join(name, second))
                if a and b:
                    candidates.append(a + b)
        if hasattr(module, "dconv"):
            candidates.append(_block_layers(module, name) or [])
        for chain in candidates:
            ids = {id(layer.conv) for layer in chain}
            if len(chain) > 1 and not ids <= seen:
                chains.append(chain)
                seen |= ids
    return chains


def _sequential_chains(seq: nn.Sequential, prefix: str) -> list[list[Layer]]:
    """Runs of conv blocks among the children of ``seq``; anything else ends a run."""
    children = list(seq.named_children())
    runs: list[list[Layer]] = [[]]
    k = 0
    while k < len(children):
        child_name, child = children[k]
        layers = _block_layers(child, _join(prefix, child_name))
        k += 1
        if layers is None:
            runs.append([])
            continue
        if isinstance(child, nn.Conv2d):  # a bare conv owns the BN / activation children after it
            tail = []
            while k < len(children) and isinstance(
                children[k][1], ACTIVATION_TYPES + (nn.Identity, nn.PReLU, nn.BatchNorm2d)
            ):
                tail.append(children[k][1])
                k += 1
            layers = [_bare_conv_layer(layers[0], tail)]
        runs[-1].extend(layers)
    return [r for r in runs if len(r) > 1]


def _bare_conv_layer(layer: Layer, tail: list[nn.Module]) -> Layer:
    """The Layer for a Sequential's bare conv followed by ``tail`` (BN / activations / Identity)."""
    acts = [m for m in tail if not isinstance(m, (nn.Identity, nn.BatchNorm2d))]
    act = nn.Identity() if not acts else acts[0] if len(acts) == 1 else nn.Sequential(*acts)
    return Layer(layer.name, layer.conv, act, any(isinstance(m, nn.BatchNorm2d) for m in tail))


def _tensors(obj: object) -> list[torch.Tensor]:
    """Every tensor inside nested lists/tuples/dicts."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def verify_chains(
    model: nn.Module, chains: list[list[Layer]], example_input: torch.Tensor
) -> tuple[list[list[Layer]], list[tuple[str, str, str]]]:
    """Keep only the links ``a -> b`` that one forward pass confirms; split chains at the others.

    Confirmed means: each conv runs once, b's input equals ``a.act(a.conv(x))``, and no other leaf
    module consumes that tensor (YOLOv5 routes Sequential outputs to later Concat modules); leaves
    returning the very tensor they got (Identity, in-place activations) are pass-throughs.
    Consumers inside a parent's ``forward`` (``torch.cat``, ``+``) are invisible to module hooks;
    the structural patterns of :func:`find_equalization_chains` exclude those. Every leaf input is
    held during the pass, so use a small ``example_input``. Returns (chains, rejected links + reason).
    """
    calls: list[tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]]] = []  # (leaf, inputs, outputs)
    conv_out: dict[int, list[torch.Tensor]] = {}
    a_convs = {id(layer.conv): layer.conv for chain in chains for layer in chain[:-1]}
    handles = [m.register_forward_hook(lambda m, args, out: calls.append((m, _tensors(args), _tensors(out))))
               for m in model.modules() if not any(True for _ in m.children())]
    handles += [c.register_forward_hook(lambda m, _a, out: conv_out.setdefault(id(m), []).append(out.detach().clone()))
                for c in a_convs.values()]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    kept: list[list[Layer]] = []
    rejected: list[tuple[str, str, str]] = []
    for chain in chains:
        current = [chain[0]]
        for a, b in zip(chain, chain[1:]):
            reason = _link_problem(a, b, calls, conv_out)
            if reason:
                rejected.append((a.name, b.name, reason))
                kept.append(current)
                current = [b]
            else:
                current.append(b)
        kept.append(current)
    return [c for c in kept if len(c) > 1], rejected


def _link_problem(
    a: Layer,
    b: Layer,
    calls: list[tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]]],
    conv_out: dict[int, list[torch.Tensor]],
) -> str:
    """Why the link a -> b is not confirmed by the recorded leaf calls ('' when it is)."""
    b_inputs = [ins for m, ins, _ in calls if m is b.conv]
    outs = conv_out.get(id(a.conv), [])
    if len(b_inputs) != 1 or len(outs) != 1:
        return f"convs ran {len(outs)} and {len(b_inputs)} times in the example pass (need once each)"
    u = b_inputs[0][0]
    with torch.no_grad():
        expected = a.act(outs[0].clone())
    if u.shape != expected.shape or not torch.allclose(u, expected, rtol=1e-5, atol=1e-6):
        return f"{b.name} does not read {a.name}'s activation"
    # pass-through leaves (Identity, in-place activations) hand the same tensor on: not consumers
    others = {
        type(m).__name__ for m, ins, outs in calls
        if m is not b.conv and any(t is u for t in ins) and not any(t is u for t in outs)
    }
    return f"{a.name}'s activation also feeds {sorted(others)}" if others else ""


def cross_layer_equalize(
    model: nn.Module,
    chains: list[list[Layer]] | None = None,
    allow_non_homogeneous: bool = False,
    max_sweeps: int = 20,
    tol: float = 1e-6,
    example_input: torch.Tensor | None = None,
) -> EqualizationReport:
    """Equalize every chain (default: ``find_equalization_chains(model)``) in place; BN must be folded.

    Pairs through SiLU/ReLU6/... are skipped (and listed) unless ``allow_non_homogeneous``. With
    ``example_input`` the chains first go through :func:`verify_chains` (rejected links are skipped).
    """
    total = EqualizationReport()
    chains = find_equalization_chains(model) if chains is None else chains
    if example_input is not None:
        chains, total.skipped = verify_chains(model, chains, example_input)
    for chain in chains:
        r = equalize_chain(chain, max_sweeps, tol, allow_non_homogeneous)
        total.equalized += r.equalized
        total.skipped += r.skipped
        total.sweeps = max(total.sweeps, r.sweeps)
    return total


def run_with_output_hooks(
    model: nn.Module,
    modules: list[nn.Module],
    inputs: Iterable[torch.Tensor],
    record: Callable[[int, torch.Tensor], None],
    prepend: bool = False,
) -> None:
    """Run ``model`` on every input without gradients, calling ``record(k, output)`` for ``modules[k]``
    (with ``prepend``, before the modules' other forward hooks: the raw output)."""
    handles = [m.register_forward_hook(lambda _m, _a, out, k=k: record(k, out.detach()), prepend=prepend)
               for k, m in enumerate(modules)]
    try:
        with torch.no_grad():
            for x in inputs:
                model(x)
    finally:
        for h in handles:
            h.remove()
