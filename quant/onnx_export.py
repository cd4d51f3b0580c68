"""QDQ ONNX export: the fp32 torch model exported once, then Q/DQ pairs with *our* scales inserted
exactly at the points ``quant.simulate`` fake-quantizes, so ORT fuses each quantized conv into a
``QLinearConv`` and its output matches the simulation.

Conv nodes are mapped back to torch modules through their weight initializer, which the TorchScript
exporter names ``"<module>.weight"`` when BatchNorm was folded in torch beforehand (checked: a conv
whose weight name does not map raises).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from int8track.detectors.detector import Detector
from int8track.detectors.runtime import OrtRunner, create_session, export_onnx
from int8track.detectors.spec import SPEC_METADATA_KEY as SPEC_KEY
from int8track.detectors.spec import ModelSpec
from int8track.files import write_bytes_atomically
from int8track.quant.rescale import input_scale, output_scale, suspended
from int8track.quant.simulate import ActQuant, QuantPlan, conv_layers, quantize_bias

if TYPE_CHECKING:
    from int8track.quant.report import QuantReport

QUANT_KEY = "int8track_quant"
#: op types that prove int8 execution in an ORT-optimized graph
INT8_OPS = ("QLinearConv", "ConvInteger", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearConcat",
            "MatMulInteger", "QLinearMatMul", "QLinearAveragePool", "QLinearGlobalAveragePool")


def export_fp32(model: nn.Module, input_hw: tuple[int, int]) -> onnx.ModelProto:
    """Export ``model`` (BatchNorm already folded) with ``detectors.runtime.export_onnx``, rescale hooks as Muls."""
    with suspended(model):
        proto = export_onnx(model, input_hw)
    return _add_rescale_muls(_inline_identity_initializers(proto), model)


def _add_rescale_muls(proto: onnx.ModelProto, model: nn.Module) -> onnx.ModelProto:
    """Insert the float ``Mul`` of every rescale hook (``quant.rescale``) around its conv, named by the conv.

    The hooks are suspended while tracing, so that each conv's rescale is one named node (the traced version
    would be the same math). ``insert_qdq`` then puts the conv's Q after the input ``Mul`` and its DQ before
    the output ``Mul``, as ``quant.simulate`` does; folding them into per-channel Q/DQ scales instead makes
    ONNX Runtime run per-axis QuantizeLinear, many times slower (benchmarks/README.md, "Measurements behind
    design choices").
    """
    convs = conv_layers(model)
    if all(input_scale(c) is None and output_scale(c) is None for c in convs.values()):
        return proto
    by_output = {node.output[0]: name for name, node in conv_nodes(proto, model).items()}
    graph = proto.graph
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        name = by_output.get(node.output[0]) if node.op_type == "Conv" else None
        hooks = (None, None) if name is None else (input_scale(convs[name]), output_scale(convs[name]))
        names = {"in": f"{name}.input_rescale", "out": f"{name}.output_rescale"}
        if hooks[0] is not None:
            graph.initializer.append(_init(names["in"], hooks[0].values.numpy().reshape(1, -1, 1, 1)))
            new_nodes.append(helper.make_node("Mul", [node.input[0], names["in"]], [f"{names['in']}_y"],
                                              name=names["in"]))
            node.input[0] = f"{names['in']}_y"
        new_nodes.append(node)
        if hooks[1] is not None:
            result = node.output[0]
            node.output[0] = f"{names['out']}_x"
            graph.initializer.append(_init(names["out"], hooks[1].values.numpy().reshape(1, -1, 1, 1)))
            new_nodes.append(helper.make_node("Mul", [node.output[0], names["out"]], [result], name=names["out"]))
    kept = [onnx.NodeProto() for _ in new_nodes]
    for copy, node in zip(kept, new_nodes):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(kept)
    return proto


def _inline_identity_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Give every ``Identity(initializer)`` output its own initializer copy and drop the Identity.

    The exporter shares equal constants (e.g. the all-zero biases of a randomly initialised model)
    through Identity nodes; each conv must own its weight and bias to get its own int8/int32 copy.
    """
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return proto


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


def conv_order(proto: onnx.ModelProto, model: nn.Module) -> list[str]:
    """Torch conv names in ONNX graph order (= forward execution order for a traced export)."""
    by_output = {node.output[0]: name for name, node in conv_nodes(proto, model).items()}
    return [by_output[n.output[0]] for n in proto.graph.node if n.op_type == "Conv"]


def output_convs(proto: onnx.ModelProto, model: nn.Module) -> list[str]:
    """Convs whose output reaches a graph output without passing another conv (the head's pred convs)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in proto.graph.output}

    def reaches_output(tensor: str, seen: set[str]) -> bool:
        if tensor in outputs:
            return True
        seen.add(tensor)
        return any(reaches_output(out, seen) for node in consumers.get(tensor, []) if node.op_type != "Conv"
                   for out in node.output if out not in seen)

    return [name for name, node in conv_nodes(proto, model).items() if reaches_output(node.output[0], set())]


def default_float_layers(proto: onnx.ModelProto, model: nn.Module, stem: int = 2, head: bool = True) -> list[str]:
    """The measured default float set: the first ``stem`` convs (they see raw pixels; with BN folded their
    per-channel weight ranges differ ~800x, so per-tensor activation quantization wipes out small channels)
    and, with ``head``, the final pred convs (box regression and scores share the output tensor)."""
    chosen = conv_order(proto, model)[:stem] + (output_convs(proto, model) if head else [])
    return list(dict.fromkeys(chosen))


def fuse_silu(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every ``Mul(x, Sigmoid(x))`` by one ``com.microsoft.QuickGelu(x, alpha=1)`` (same math).

    ORT fuses this itself in a float graph, but not when ``x`` comes from a DequantizeLinear, and the
    unfused Sigmoid + Mul pair costs well over the fused kernel on the big early feature maps (two passes
    over the tensor instead of one; benchmarks/README.md, "Measurements behind design choices").
    """
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    fused_muls: dict[str, onnx.NodeProto] = {}
    dead_sigmoids: set[str] = set()
    for node in graph.node:
        if node.op_type != "Mul":
            continue
        for x, s in (tuple(node.input), tuple(reversed(node.input))):
            sig = producer.get(s)
            if sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x and users[s] == 1:
                fused_muls[node.output[0]] = helper.make_node(
                    "QuickGelu", [x], [node.output[0]], name=f"{node.name or node.output[0]}_silu",
                    domain="com.microsoft", alpha=1.0)
                dead_sigmoids.add(s)
                break
    kept = []
    for node in graph.node:
        if node.op_type == "Sigmoid" and node.output[0] in dead_sigmoids:
            continue
        kept.append(fused_muls.get(node.output[0], node))
    del graph.node[:]
    graph.node.extend(kept)
    if fused_muls and not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.add(domain="com.microsoft", version=1)
    return proto


def _init(name: str, array: np.ndarray | np.generic) -> TensorProto:
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
        wq, ws = plan.weight(name, convs[name])
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
    """Write ``proto`` to ``path`` atomically (parent folders created): a killed run leaves no truncated model."""
    return write_bytes_atomically(path, proto.SerializeToString())


class QuantizedDetector(Detector):
    """An int8 detector: the fp32 detector's preprocess/postprocess around an ORT session on the QDQ model.

    ``proto`` is the int8 ONNX (with metadata), ``quant_info`` the decisions and measurements behind it
    (``quant.report.QuantReport``), ``plan`` and ``float_model`` what it was made from (for simulation), and
    ``sensitivity`` the per-layer table when the float set had to grow.
    """

    def __init__(self, spec: ModelSpec, proto: onnx.ModelProto, quant_info: QuantReport,
                 num_threads: int | None = None, conf_thresh: float | None = None, nms_thresh: float | None = None,
                 classes: list[int] | None = None, *, plan: QuantPlan, float_model: nn.Module,
                 sensitivity: Sequence[object] = ()) -> None:
        set_metadata(proto, spec.to_dict(), quant_info.to_dict())
        session = create_session(proto.SerializeToString(), num_threads)
        super().__init__(spec, OrtRunner(session), None, conf_thresh, nms_thresh, classes)
        self.proto = proto
        self.quant_info = quant_info
        self.plan = plan
        self.float_model = float_model
        self.sensitivity = list(sensitivity)

    def save(self, path: str | Path) -> Path:
        """Write the int8 ONNX; ``detectors.load_detector(path)`` loads it without calibration."""
        return save_model(self.proto, path)
