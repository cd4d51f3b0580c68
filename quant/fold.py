"""BatchNorm folding before quantization.

Folding works on module structure (no torch.fx), following the attribute names of the
YOLOX / YOLOv5 blocks: ``BaseConv``/``Conv`` hold ``conv``, ``bn``, ``act``; ``DWConv`` holds
``dconv``/``pconv``; ``Bottleneck`` holds ``conv1``/``conv2`` + ``use_add`` (YOLOX) or
``cv1``/``cv2`` + ``add`` (YOLOv5). ``nn.Sequential`` containers with consecutive
``Conv2d, BatchNorm2d[, activation]`` children are handled as well.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from int8track.detectors.layers import fold_conv_bn

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish, nn.Hardtanh, nn.Sigmoid, nn.GELU, nn.Mish
)


def _sequential_pairs(seq: nn.Sequential) -> list[tuple[str, str]]:
    names = list(seq._modules)
    return [
        (a, b)
        for a, b in zip(names, names[1:])
        if isinstance(seq._modules[a], nn.Conv2d) and isinstance(seq._modules[b], nn.BatchNorm2d)
    ]


def fold_batchnorm(model: nn.Module, inplace: bool = False, example_input: torch.Tensor | None = None) -> nn.Module:
    """Fold every Conv2d -> BatchNorm2d pair found by module structure; BN becomes ``nn.Identity``.

    Pairs: any module with attributes ``conv`` (Conv2d) and ``bn`` (BatchNorm2d), and consecutive
    ``Conv2d, BatchNorm2d`` children of an ``nn.Sequential``. The structural rule assumes ``bn``
    consumes ``conv``'s output; with ``example_input`` this is checked with forward hooks before
    anything is changed (ValueError naming the block otherwise). Returns the (copied unless
    ``inplace``) model in eval mode.
    """
    target = model if inplace else copy.deepcopy(model)
    pairs: list[tuple[nn.Module, str, str, str]] = []  # (parent, conv attr, bn attr, qualified name)
    for name, module in target.named_modules():
        if isinstance(getattr(module, "conv", None), nn.Conv2d) and isinstance(
            getattr(module, "bn", None), nn.BatchNorm2d
        ):
            pairs.append((module, "conv", "bn", name))
        if isinstance(module, nn.Sequential):
            pairs.extend((module, a, b, f"{name}.{a}" if name else a) for a, b in _sequential_pairs(module))
    if example_input is not None:
        _check_bn_follows_conv(target, pairs, example_input)
    for parent, conv_attr, bn_attr, _ in pairs:
        setattr(parent, conv_attr, fold_conv_bn(getattr(parent, conv_attr), getattr(parent, bn_attr)))
        setattr(parent, bn_attr, nn.Identity())
    return target.eval()


def _check_bn_follows_conv(
    model: nn.Module, pairs: list[tuple[nn.Module, str, str, str]], example_input: torch.Tensor
) -> None:
    """Run the model once and verify each paired BN's input is the very tensor its conv produced."""
    outputs: dict[int, torch.Tensor] = {}  # keyed by module id; tensors kept alive so identity is meaningful
    inputs: dict[int, torch.Tensor] = {}
    handles = []
    for parent, conv_attr, bn_attr, _ in pairs:
        conv, bn = getattr(parent, conv_attr), getattr(parent, bn_attr)
        handles.append(conv.register_forward_hook(lambda m, a, out: outputs.__setitem__(id(m), out)))
        handles.append(bn.register_forward_pre_hook(lambda m, a: inputs.__setitem__(id(m), a[0])))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for parent, conv_attr, bn_attr, name in pairs:
        conv_out = outputs.get(id(getattr(parent, conv_attr)))
        if conv_out is None or inputs.get(id(getattr(parent, bn_attr))) is not conv_out:
            raise ValueError(
                f"cannot fold BatchNorm in {name or 'model'!r}: its {bn_attr!r} does not consume {conv_attr!r}'s output"
            )
