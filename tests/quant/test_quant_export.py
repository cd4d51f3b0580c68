"""QDQ export on a tiny conv net: ORT really runs QLinearConv, excluded convs stay float, and the deployed
int8 output equals the PyTorch simulation."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_quant_simulate import tiny_setup

from int8track.detectors.runtime import create_session
from int8track.quant.calibration import collect_ranges
from int8track.quant.onnx_export import (
    conv_nodes,
    conv_order,
    default_float_layers,
    export_fp32,
    fuse_silu,
    insert_qdq,
    int8_op_count,
    optimized_op_counts,
    output_convs,
)
from int8track.quant.simulate import QuantPlan, conv_layers, run_simulated


@pytest.fixture(scope="module")
def tiny():
    model, blobs = tiny_setup(size=32)
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    return model, blobs, ranges, export_fp32(model, (32, 32))


def deployed(proto: onnx.ModelProto, blob: np.ndarray) -> np.ndarray:
    return create_session(proto.SerializeToString(), 1).run(None, {"images": blob})[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def test_conv_nodes_map_to_torch_modules(tiny):
    model, _, _, proto = tiny
    nodes = conv_nodes(proto, model)
    assert set(nodes) == set(conv_layers(model))
    assert conv_order(proto, model) == ["stem", "dw", "pw", "pred"]
    assert output_convs(proto, model) == ["pred"]
    assert default_float_layers(proto, model, stem=1) == ["stem", "pred"]


@pytest.mark.parametrize("scheme, granularity", [("uint8", "per_channel"), ("int8", "per_channel"),
                                                 ("uint8", "per_tensor")])
def test_deployed_int8_matches_simulation(tiny, scheme, granularity):
    model, blobs, ranges, proto = tiny
    plan = QuantPlan(ranges, list(conv_layers(model)), scheme=scheme, weight_granularity=granularity)
    qproto = fuse_silu(insert_qdq(proto, model, plan))
    for blob in blobs[:3]:
        sim, dep = run_simulated(model, plan, blob), deployed(qproto, blob)
        assert cosine(sim, dep) > 0.9999
        # same integer grid: at most one output step apart (float summation order of the accumulator)
        assert np.abs(sim - dep).max() <= plan.act("pred:out").scale * 1.01


def test_ort_runs_qlinearconv_for_every_quantized_conv(tiny):
    model, _, ranges, proto = tiny
    plan = QuantPlan(ranges, list(conv_layers(model)))
    counts = optimized_op_counts(fuse_silu(insert_qdq(proto, model, plan)).SerializeToString())
    assert counts["QLinearConv"] == 4 and counts["Conv"] == 0
    assert int8_op_count(counts) == 4
    assert int8_op_count(optimized_op_counts(proto.SerializeToString())) == 0


def test_excluded_convs_stay_float_in_the_optimized_graph(tiny):
    model, blobs, ranges, proto = tiny
    plan = QuantPlan(ranges, ["dw", "pw"])
    qproto = insert_qdq(proto, model, plan)
    counts = optimized_op_counts(qproto.SerializeToString())
    assert counts["QLinearConv"] == 2
    float_convs = counts["Conv"] + counts["FusedConv"]
    assert float_convs == 2  # stem and pred: not re-quantized by ORT's WeightBiasQuantization
    # the float convs keep their exact fp32 weights in the QDQ model
    inits = {t.name: numpy_helper.to_array(t) for t in qproto.graph.initializer}
    np.testing.assert_array_equal(inits["stem.weight"], model.stem.weight.detach().numpy())
    assert "dw.weight" not in inits and inits["dw.weight_quantized"].dtype == np.int8
    assert inits["dw.bias_quantized"].dtype == np.int32
    sim, dep = run_simulated(model, plan, blobs[0]), deployed(qproto, blobs[0])
    assert cosine(sim, dep) > 0.9999


def test_fuse_silu_replaces_sigmoid_mul_without_changing_outputs(tiny):
    model, blobs, _, proto = tiny
    fused = onnx.ModelProto()
    fused.CopyFrom(proto)
    fuse_silu(fused)
    ops = [n.op_type for n in fused.graph.node]
    assert "Sigmoid" not in ops and ops.count("QuickGelu") == 3
    np.testing.assert_allclose(deployed(fused, blobs[0]), deployed(proto, blobs[0]), rtol=1e-5, atol=1e-5)


def test_unmapped_conv_weight_is_rejected(tiny):
    model, _, _, proto = tiny
    broken = onnx.ModelProto()
    broken.CopyFrom(proto)
    conv = next(n for n in broken.graph.node if n.op_type == "Conv")
    conv.input[1] = "onnx::Conv_123"
    with pytest.raises(ValueError, match="fold BatchNorm"):
        conv_nodes(broken, model)


def test_shared_constant_biases_get_one_int32_copy_per_conv():
    """Equal biases (all zero after random init) are shared by the exporter through Identity nodes."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 8, 3, padding=1), nn.SiLU(),
                          nn.Conv2d(8, 8, 1)).eval()
    with torch.no_grad():
        for conv in (model[0], model[2], model[4]):
            conv.bias.zero_()
    blobs = [np.random.default_rng(k).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32) for k in range(3)]
    proto = export_fp32(model, (16, 16))
    assert "Identity" not in [n.op_type for n in proto.graph.node]
    plan = QuantPlan(collect_ranges(model, blobs, "minmax", progress=False), ["0", "2", "4"])
    qproto = insert_qdq(proto, model, plan)
    assert optimized_op_counts(qproto.SerializeToString())["QLinearConv"] == 3
    np.testing.assert_allclose(deployed(qproto, blobs[0]).ravel(), run_simulated(model, plan, blobs[0]).ravel(),
                               atol=plan.act("4:out").scale * 1.01)
