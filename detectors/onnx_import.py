"""Copy the weights of a BN-folded ONNX export (official YOLOX export) into our folded PyTorch model.

ONNX node names are not reliable (older exporters emit ``Conv_41``), so Conv nodes are matched with
our model's ``nn.Conv2d`` modules in execution order (the exporter traces the same forward order),
checking every weight shape; any mismatch raises a ValueError naming the file and the layer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn


def read_onnx(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file, turning parse failures into a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError / google.protobuf errors for truncated files
        raise ValueError(f"cannot read ONNX file {path}: {exc}") from exc


def onnx_input_size(proto: onnx.ModelProto) -> tuple[int, int]:
    """(h, w) of the first graph input, which must be a fixed (1, 3, H, W) image."""
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or min(dims[2:]) <= 0:
        raise ValueError(f"ONNX input must be a fixed (1, 3, H, W) image, got dims {dims}")
    return dims[2], dims[3]


def onnx_output_channels(proto: onnx.ModelProto) -> int:
    """Last dimension of the first output (5 + number of classes)."""
    return proto.graph.output[0].type.tensor_type.shape.dim[-1].dim_value


def conv_weights_in_graph_order(proto: onnx.ModelProto) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(node name, weight, bias) for every Conv node, in graph order."""
    inits = {t.name: t for t in proto.graph.initializer}
    out = []
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else None
        out.append((node.name or node.output[0], weight, bias))
    return out


def convs_in_execution_order(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """(qualified name, module) of each Conv2d in the order a forward pass calls them."""
    names = {module: name for name, module in model.named_modules()}
    order: list[tuple[str, nn.Conv2d]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: order.append((names[mod], mod)))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, 64, 64))  # call order does not depend on the input size
    finally:
        for hook in hooks:
            hook.remove()
    return order


def load_onnx_weights(model: nn.Module, proto: onnx.ModelProto, source: str | Path) -> None:
    """Copy Conv weights/biases of ``proto`` into the folded ``model`` (shapes checked layer by layer)."""
    onnx_convs = conv_weights_in_graph_order(proto)
    torch_convs = convs_in_execution_order(model)
    if len(onnx_convs) != len(torch_convs):
        raise ValueError(
            f"{source}: ONNX graph has {len(onnx_convs)} Conv nodes, the {type(model).__name__} model has "
            f"{len(torch_convs)} convolutions: not the same architecture"
        )
    with torch.no_grad():
        for (node, weight, bias), (name, conv) in zip(onnx_convs, torch_convs):
            if tuple(weight.shape) != tuple(conv.weight.shape) or conv.bias is None or bias is None:
                raise ValueError(
                    f"{source}: ONNX Conv {node} weight {tuple(weight.shape)} does not fit layer {name} "
                    f"{tuple(conv.weight.shape)} (bias expected in folded form)"
                )
            conv.weight.copy_(torch.from_numpy(weight.copy()))
            conv.bias.copy_(torch.from_numpy(bias.copy()))
