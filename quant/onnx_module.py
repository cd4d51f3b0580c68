"""A BatchNorm-folded ONNX CNN run as a torch module, so the quantization library (which simulates and calibrates
torch ``nn.Conv2d`` layers) can quantize a model that only exists as ONNX, such as torchreid's OSNet export.

:class:`OnnxConvNet` holds one ``nn.Conv2d`` per ONNX Conv node (named ``conv<k>``, in graph order) and executes
the graph's nodes in order with torch operations. :func:`load_onnx_convnet` also returns the graph with each Conv's
initializers renamed ``conv<k>.weight`` / ``conv<k>.bias``, which is how ``quant.onnx_export`` pairs ONNX Conv nodes
with torch convs. Supported: the operators of plain CNN classifiers and embedders (``SUPPORTED_OPS``); anything else
raises ValueError naming the operator.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper, version_converter
from torch import nn

_ELEMENTWISE: dict[str, Callable[..., torch.Tensor]] = {
    "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Add": torch.add, "Mul": torch.mul,
}
#: The opset the graph is converted to, at least: QDQ export writes per-channel DequantizeLinear (axis).
QDQ_OPSET = 13
SUPPORTED_OPS = ("Conv", "GlobalAveragePool", "AveragePool", "MaxPool", "Gemm", "BatchNormalization", "Flatten",
                 "Reshape", "Shape", "Gather", "Unsqueeze", "Concat", "Constant", *_ELEMENTWISE)


class OnnxConvNet(nn.Module):
    """The nodes of an ONNX CNN graph executed with torch (see the module docstring); one input, one output."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        super().__init__()
        graph = proto.graph
        unsupported = sorted({n.op_type for n in graph.node} - set(SUPPORTED_OPS))
        if unsupported:
            raise ValueError(f"ONNX operators not supported for quantization: {', '.join(unsupported)}")
        inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        names = [i.name for i in graph.input if i.name not in inits]
        if len(names) != 1 or len(graph.output) != 1:
            raise ValueError(f"expected one image input and one output, got inputs {names} and "
                             f"{len(graph.output)} outputs")
        self.input_name, self.output_name = names[0], graph.output[0].name
        self._constants = {name: torch.from_numpy(np.array(value)) for name, value in inits.items()}
        self._nodes = list(graph.node)
        # read once here, not on every forward pass (calibration runs hundreds of them over ~400 nodes)
        self._attrs = [{a.name: helper.get_attribute_value(a) for a in node.attribute} for node in self._nodes]
        self._convs: dict[int, str] = {}
        for index, node in enumerate(self._nodes):
            if node.op_type == "Conv":
                name = f"conv{len(self._convs)}"
                self.add_module(name, _conv_module(node, self._attrs[index], inits))
                self._convs[index] = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, Any] = {self.input_name: x, **self._constants}
        for index, node in enumerate(self._nodes):
            inputs = [values[name] if name else None for name in node.input]
            if index in self._convs:
                result = getattr(self, self._convs[index])(inputs[0])
            else:
                result = _run_node(node, self._attrs[index], inputs)
            values[node.output[0]] = result
        return values[self.output_name]


def load_onnx_convnet(path: str | Path) -> tuple[OnnxConvNet, onnx.ModelProto]:
    """The torch module of an ONNX CNN and its graph with Conv initializers named after the module's convs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise ValueError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    if _opset(proto) < QDQ_OPSET:  # per-channel DequantizeLinear (axis) needs opset 13
        proto = version_converter.convert_version(proto, QDQ_OPSET)
    model = OnnxConvNet(proto).eval()
    renamed = onnx.ModelProto()
    renamed.CopyFrom(proto)
    graph = renamed.graph
    inits = {t.name: t for t in graph.initializer}
    # each Conv gets its own copy: convs may share weights (OSNet's channel gates), torch modules do not
    copies: list[onnx.TensorProto] = []
    for k, node in enumerate(n for n in graph.node if n.op_type == "Conv"):
        for slot, suffix in ((1, "weight"), (2, "bias")):
            if len(node.input) > slot:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[node.input[slot]])
                copy.name = node.input[slot] = f"conv{k}.{suffix}"
                copies.append(copy)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + copies)
    return model, renamed


def _opset(proto: onnx.ModelProto) -> int:
    return max((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), default=0)


def _conv_module(node: onnx.NodeProto, attrs: dict[str, Any], inits: dict[str, np.ndarray]) -> nn.Conv2d:
    weight = inits[node.input[1]]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise ValueError(f"Conv {node.name!r}: asymmetric padding {pads} is not supported")
    groups = int(attrs.get("group", 1))
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                     stride=tuple(attrs.get("strides", [1, 1])), padding=tuple(pads[:2]),
                     dilation=tuple(attrs.get("dilations", [1, 1])), groups=groups, bias=len(node.input) > 2)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.array(weight)))
        if conv.bias is not None:
            conv.bias.copy_(torch.from_numpy(np.array(inits[node.input[2]])))
    return conv


def _run_node(node: onnx.NodeProto, attrs: dict[str, Any], inputs: list[Any]) -> Any:
    op = node.op_type
    if op in _ELEMENTWISE:
        return _ELEMENTWISE[op](*inputs)
    if op == "GlobalAveragePool":
        return inputs[0].mean(dim=(2, 3), keepdim=True)
    if op in ("AveragePool", "MaxPool"):
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise ValueError(f"{op} {node.name!r}: asymmetric padding {pads} is not supported")
        kernel, stride = tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", [1, 1]))
        padding, ceil_mode = tuple(pads[:2]), bool(attrs.get("ceil_mode", 0))
        if op == "MaxPool":
            return F.max_pool2d(inputs[0], kernel, stride, padding, ceil_mode=ceil_mode)
        return F.avg_pool2d(inputs[0], kernel, stride, padding, ceil_mode=ceil_mode,
                            count_include_pad=bool(attrs.get("count_include_pad", 0)))
    if op == "Gemm":
        x, w = inputs[0], inputs[1]
        x = x.transpose(0, 1) if attrs.get("transA", 0) else x
        w = w if attrs.get("transB", 0) else w.transpose(0, 1)
        bias = inputs[2] * attrs.get("beta", 1.0) if len(inputs) > 2 and inputs[2] is not None else None
        return F.linear(x * attrs.get("alpha", 1.0), w, bias)
    if op == "BatchNormalization":
        x, scale, bias, mean, var = inputs
        return F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))
    if op == "Flatten":
        return torch.flatten(inputs[0], int(attrs.get("axis", 1)))
    if op == "Reshape":
        return inputs[0].reshape([int(v) for v in inputs[1].tolist()])
    if op == "Shape":
        return torch.tensor(inputs[0].shape, dtype=torch.int64)
    if op == "Gather":
        return torch.index_select(inputs[0], int(attrs.get("axis", 0)), inputs[1].reshape(-1)).reshape(
            inputs[1].shape if inputs[1].dim() else ())
    if op == "Unsqueeze":  # axes: an attribute before opset 13, an input from it on
        out = inputs[0]
        axes = attrs["axes"] if "axes" in attrs else inputs[1].tolist()
        for axis in sorted(int(a) for a in axes):
            out = out.unsqueeze(axis)
        return out
    if op == "Concat":
        return torch.cat(inputs, dim=int(attrs["axis"]))
    if op == "Constant":
        return torch.from_numpy(np.array(numpy_helper.to_array(attrs["value"])))
    raise ValueError(f"ONNX operator {op} is not supported")  # unreachable: checked in OnnxConvNet.__init__
