"""QDQ ONNX export: the fp32 torch model exported once, then Q/DQ pairs with *our* scales inserted
exactly at the points ``quant.simulate`` fake-quantizes, so ORT fuses each quantized conv into a
``QLinearConv`` and its output matches the simulation.

Conv nodes are mapped back to torch modules through their weight initializer, which the TorchScript
exporter names ``"<module>.weight"`` when BatchNorm was folded in torch beforehand (checked: a conv
whose weight name does not map raises).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from quant.simulate import ActQuant, QuantPlan, conv_layers, quantize_bias, quantize_weight

OPSET = 13
INPUT_NAME, OUTPUT_NAME = "images", "output"
SPEC_KEY, QUANT_KEY = "int8track_spec", "int8track_quant"
#: op types that prove int8 execution in an ORT-optimized graph
INT8_OPS = ("QLinearConv", "ConvInteger", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearConcat",
            "MatMulInteger", "QLinearMatMul", "QLinearAveragePool", "QLinearGlobalAveragePool")


def export_fp32(model: nn.Module, input_hw: tuple[int, int]) -> onnx.ModelProto:
    """Export ``model`` (BatchNorm already folded) to ONNX, input ``images`` (1,3,H,W) -> ``output``."""
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, *input_hw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (dummy,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def conv_nodes(proto: onnx.ModelProto, model: nn.Module) -> dict[str, onnx.NodeProto]:
    """ONNX Conv node of every torch conv module, matched by the weight initializer name."""
    convs = conv_layers(model)
    by_weight = {f"{name}.weight": name for name in convs}
    found: dict[str, onnx.NodeProto] = {}
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        name = by_weight.get(node.input[1])
        if name is None:
            raise ValueError(f"ONNX Conv {node.name!r} has weight {node.input[1]!r}, which names no torch conv; "
                             "fold BatchNorm in torch before export")
        found[name] = node
    return found


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _act_tensors(prefix: str, q: ActQuant) -> list[TensorProto]:
    zp_dtype = np.uint8 if q.dtype == "uint8" else np.int8
    return [_init(f"{prefix}_scale", np.float32(q.scale)), _init(f"{prefix}_zp", zp_dtype(q.zero_point))]


def _qdq_nodes(src: str, dst: str, prefix: str) -> list[onnx.NodeProto]:
    scale, zp = f"{prefix}_scale", f"{prefix}_zp"
    return [helper.make_node("QuantizeLinear", [src, scale, zp], [f"{prefix}_q"], name=f"{prefix}_Q"),
            helper.make_node("DequantizeLinear", [f"{prefix}_q", scale, zp], [dst], name=f"{prefix}_DQ")]


def _const_dq(name: str, q: np.ndarray, scales: np.ndarray, out: str) -> tuple[list[TensorProto], onnx.NodeProto]:
    """Per-channel (axis 0) constant + DequantizeLinear producing ``out``."""
    inits = [_init(f"{name}_quantized", q), _init(f"{name}_scale", scales.astype(np.float32)),
             _init(f"{name}_zp", np.zeros(len(scales), q.dtype))]
    node = helper.make_node("DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zp"], [out],
                            name=f"{name}_DQ", axis=0)
    return inits, node


def insert_qdq(proto: onnx.ModelProto, model: nn.Module, plan: QuantPlan) -> onnx.ModelProto:
    """A copy of ``proto`` with the plan's convs in QDQ form (int8 weights, int32 bias, uint8/int8 activations)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    convs, nodes = conv_layers(model), conv_nodes(out, model)
    quantized = set(plan.quantized)
    missing = quantized - set(nodes)
    if missing:
        raise ValueError(f"quantized convs missing from the ONNX graph: {sorted(missing)[:5]}")
    drop = {f"{n}.weight" for n in quantized} | {nodes[n].input[2] for n in quantized if len(nodes[n].input) > 2}
    kept_inits = [t for t in graph.initializer if t.name not in drop]
    new_inits: list[TensorProto] = []
    dequantized: set[str] = set()  # tensors that are already the output of a DequantizeLinear
    input_qdq: dict[str, str] = {}  # float tensor -> its Q/DQ'd copy
    # Conv outputs are renamed and re-created by their DQ, so downstream consumers need no change.
    by_output = {nodes[n].output[0]: n for n in quantized}
    dequantized.update(by_output)
    new_nodes: list[onnx.NodeProto] = []
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        name = by_output.get(node.output[0]) if node.op_type == "Conv" else None
        if name is None:
            new_nodes.append(node)
            continue
        act_in, act_out = plan.act(f"{name}:in"), plan.act(f"{name}:out")
        src = node.input[0]
        if src not in dequantized:
            if src not in input_qdq:
                prefix = f"{src}_in"
                input_qdq[src] = f"{src}_dq"
                new_inits += _act_tensors(prefix, act_in)
                new_nodes += _qdq_nodes(src, input_qdq[src], prefix)
            node.input[0] = input_qdq[src]
        wq, ws = quantize_weight(convs[name].weight)
        inits, dq = _const_dq(f"{name}.weight", wq, ws, node.input[1])
        new_inits += inits
        new_nodes.append(dq)
        if len(node.input) > 2:
            inits, dq = _const_dq(f"{name}.bias", quantize_bias(convs[name].bias, act_in.scale, ws),
                                  (np.float32(act_in.scale) * ws).astype(np.float32), node.input[2])
            new_inits += inits
            new_nodes.append(dq)
        result = node.output[0]
        node.output[0] = f"{result}_fp"
        new_nodes.append(node)
        new_inits += _act_tensors(f"{result}_out", act_out)
        new_nodes += _qdq_nodes(node.output[0], result, f"{result}_out")
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + new_inits)
    onnx.checker.check_model(out)
    return out


def set_metadata(proto: onnx.ModelProto, spec: dict, quant: dict) -> None:
    """Attach the detector spec and quantization settings (JSON) as ``metadata_props``."""
    entries = {SPEC_KEY: json.dumps(spec), QUANT_KEY: json.dumps(quant)}
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)


def optimized_op_counts(model_bytes: bytes) -> Counter:
    """Op-type counts of the graph ORT actually runs (all optimizations on, as ``create_session`` sets them).

    Uses ``optimized_model_filepath``; ORT's ``WeightBiasQuantization`` is disabled exactly as in
    ``detectors.runtime.create_session`` (it would re-quantize the weights of convs we keep float).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = path
        options.intra_op_num_threads = 1
        options.log_severity_level = 3  # the NCHWc "hardware specific" serialization warning is expected
        ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["WeightBiasQuantization"])
        return Counter(node.op_type for node in onnx.load(path).graph.node)


def int8_op_count(counts: Counter) -> int:
    """How many nodes of the optimized graph are int8 kernels."""
    return sum(counts[op] for op in INT8_OPS)


def save_model(proto: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``proto`` to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path
