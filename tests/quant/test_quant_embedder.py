"""int8 for the appearance embedder: the OSNet ONNX graph run as a torch module (equal to ONNX Runtime), its QDQ
export equal to the simulation, and the held-out floor and speed decision of ``quantize_embedder``."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from benchmarks.reid_int8 import gt_crops
from int8track.detectors.runtime import create_session
from int8track.quant.calibration import collect_ranges
from int8track.quant.embedder import EmbedderFloor, quantize_embedder
from int8track.quant.onnx_export import conv_nodes, insert_qdq, optimized_op_counts
from int8track.quant.onnx_module import load_onnx_convnet
from int8track.quant.simulate import QuantPlan, conv_layers, run_simulated
from int8track.quant.speed import clearly_faster
from int8track.tracker.appearance import OnnxEmbedder

from conftest import require_data


@pytest.fixture(scope="module")
def osnet():
    return require_data("weights/osnet_x0_25_msmt17.onnx")


@pytest.fixture(scope="module")
def crops(osnet):
    """Preprocessed PETS09-S2L1 ground-truth person crops: 24 from the first half, 16 from the second."""
    sequence = require_data("MOT15/train/PETS09-S2L1")
    embedder = OnnxEmbedder(osnet)
    return (embedder.preprocess(gt_crops(sequence, range(1, 400, 25))[:24]),
            embedder.preprocess(gt_crops(sequence, range(410, 795, 25))[:16]))


def test_the_onnx_graph_runs_as_a_torch_module_with_the_same_output(osnet, crops):
    model, renamed = load_onnx_convnet(osnet)
    assert len(conv_layers(model)) == len(conv_nodes(renamed, model)) == 187  # shared gate weights: one each
    batch = crops[1][:4]
    session = create_session(str(osnet), 1)
    expected = session.run(None, {session.get_inputs()[0].name: batch})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    renamed_session = create_session(renamed.SerializeToString(), 1)  # upgraded to opset 13, weights renamed
    np.testing.assert_allclose(renamed_session.run(None, {"input": batch})[0], expected, rtol=1e-5, atol=1e-5)


def test_the_int8_embedder_deploys_as_simulated(osnet, crops):
    model, proto = load_onnx_convnet(osnet)
    ranges = collect_ranges(model, [crop[None] for crop in crops[0]], "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)))
    int8 = insert_qdq(proto, model, plan).SerializeToString()
    assert optimized_op_counts(int8)["QLinearConv"] > 150
    deployed = create_session(int8, 1).run(None, {"input": crops[1]})[0]
    simulated = run_simulated(model, plan, crops[1])
    cosine = np.einsum("ij,ij->i", deployed, simulated) / np.linalg.norm(deployed, axis=1) / \
        np.linalg.norm(simulated, axis=1)
    # one-step rounding differences (ORT's accumulation order) compound over 187 requantized convs: measured min
    # 0.998, median 0.9993 on these crops; a wrong grid (8-bit weights where ORT saturates pairs) gives 0.90 / 0.95
    assert cosine.min() > 0.99 and np.median(cosine) > 0.998, cosine


def test_quantize_embedder_ships_int8_only_when_faithful_and_faster(osnet, crops):
    int8, report = quantize_embedder(osnet, *crops)
    faithful = report.cosine_min >= 0.98 and report.decision_agreement >= 0.99
    faster = clearly_faster(report.fp32_ms, report.int8_ms, 0.15)  # the detector's speed rule
    assert (report.accepted == "int8") == (faithful and faster), report.summary()
    assert ("below the floor" in report.accepted) == (not faithful)
    assert ("not 15% faster" in report.accepted) == (not faster)
    assert (report.calibration_crops, report.held_out_crops, report.pairs) == (24, 16, 16 * 15 // 2)
    assert 0.5 < report.cosine_min <= report.cosine_mean <= 1.0 + 1e-6 and report.int8_convs == 187
    assert create_session(int8, 1).run(None, {"input": crops[1][:2]})[0].shape == (2, 512)
    _, strict = quantize_embedder(osnet, *crops, floor=EmbedderFloor(min_cosine=1.0))
    assert strict.accepted.startswith("fp32 (int8 below the floor")
    with pytest.raises(ValueError, match="min_cosine"):
        EmbedderFloor(min_cosine=2.0)


def test_unsupported_graphs_and_bad_files_get_clear_errors(tmp_path):
    node = helper.make_node("LeakyRelu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    path = tmp_path / "leaky.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ValueError, match="not supported for quantization: LeakyRelu"):
        load_onnx_convnet(path)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_onnx_convnet(tmp_path / "missing.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="garbage.onnx: not an ONNX model"):
        load_onnx_convnet(tmp_path / "garbage.onnx")
