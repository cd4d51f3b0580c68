"""Scale migration (quant.migrate): exact in float, better int8 on planted outlier channels, and the deployed
graph (float Mul around QLinearConv) matches the simulation."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from test_quant_simulate import tiny_setup

from int8track.detectors.runtime import create_session
from int8track.quant.calibration import collect_ranges
from int8track.quant.migrate import channel_absmax, channel_spread, migrate_convs, migration_scales
from int8track.quant.onnx_export import export_fp32, insert_qdq, optimized_op_counts
from int8track.quant.qparams import sqnr_db
from int8track.quant.rescale import input_scale, output_scale
from int8track.quant.simulate import QuantPlan, conv_layers, run_simulated

SIZE = 32


def outlier_setup():
    """The tiny net with two stem output channels scaled 60x: the dw/pw inputs get outlier channels."""
    model, blobs = tiny_setup(seed=1, size=SIZE)
    with torch.no_grad():
        model.stem.weight[:2] *= 60.0
        model.stem.bias[:2] *= 60.0
    return model, blobs


def outputs(model, blobs):
    with torch.no_grad():
        return [model(torch.from_numpy(b)).numpy() for b in blobs]


def int8_sqnr(model, blobs) -> float:
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)))
    ref = np.concatenate(outputs(model, blobs))
    sim = np.concatenate([run_simulated(model, plan, b) for b in blobs])
    return sqnr_db(torch.from_numpy(ref), torch.from_numpy(sim))


@pytest.fixture(scope="module")
def migrated():
    model, blobs = outlier_setup()
    original = copy.deepcopy(model)
    report = migrate_convs(model, blobs, list(conv_layers(model)))
    return original, model, blobs, report


def test_planted_outliers_are_seen_and_migrated(migrated):
    original, model, blobs, report = migrated
    absmax = channel_absmax(original, blobs, ["dw", "pw"], "in")
    assert channel_spread(absmax["dw"]) > 20 and channel_spread(absmax["pw"]) > 20
    assert set(report["inputs"]) == set(report["outputs"]) == set(conv_layers(model))
    assert all(input_scale(c) is not None and output_scale(c) is not None for c in conv_layers(model).values())
    s = migration_scales(absmax["dw"], original.dw)
    assert s[:2].min() > 3 * s[2:].max()  # the outlier channels are divided most


def test_migration_leaves_the_float_output_unchanged(migrated):
    original, model, blobs, _ = migrated
    for ref, out in zip(outputs(original, blobs), outputs(model, blobs)):
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_exported_float_graph_has_one_mul_per_rescale_and_matches_torch(migrated):
    _, model, blobs, _ = migrated
    proto = export_fp32(model, (SIZE, SIZE))
    assert sum(n.op_type == "Mul" and n.name.endswith("_rescale") for n in proto.graph.node) == 8
    session = create_session(proto.SerializeToString(), 1)
    for blob, ref in zip(blobs[:2], outputs(model, blobs[:2])):
        np.testing.assert_allclose(session.run(None, {"images": blob})[0], ref, rtol=1e-4,
                                   atol=1e-5 * np.abs(ref).max())


def test_migration_improves_int8_sqnr_on_outlier_channels(migrated):
    original, model, blobs, _ = migrated
    before, after = int8_sqnr(original, blobs), int8_sqnr(model, blobs)
    assert after > before + 2.0, (before, after)  # measured 31.4 -> 34.8 dB


def test_deployed_int8_with_rescales_matches_simulation(migrated):
    _, model, blobs, _ = migrated
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)))
    qproto = insert_qdq(export_fp32(model, (SIZE, SIZE)), model, plan)
    onnx.checker.check_model(qproto)
    counts = optimized_op_counts(qproto.SerializeToString())
    assert counts["QLinearConv"] == 4 and counts["Conv"] == 0
    session = create_session(qproto.SerializeToString(), 1)
    for blob in blobs[:3]:
        sim, dep = run_simulated(model, plan, blob), session.run(None, {"images": blob})[0]
        # the pred output is rescaled after its DQ: one output step per channel, times that channel's t
        step = plan.act("pred:out").scale * float(output_scale(model.pred).values.max())
        assert np.abs(sim - dep).max() <= step * 1.01


def test_migration_scales_reject_bad_alpha(migrated):
    original, _, blobs, _ = migrated
    with pytest.raises(ValueError, match="alpha"):
        migration_scales(torch.ones(16), original.dw, alpha=1.5)


def test_bias_correction_of_output_rescaled_convs_moves_means_to_float(migrated):
    from int8track.quant.calibration import correct_biases
    from int8track.quant.simulate import simulated

    original, model, blobs, _ = migrated
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)))
    x = torch.from_numpy(np.concatenate(blobs[:4]))
    with torch.no_grad():
        reference = original(x).mean(dim=(0, 1))

    def mean_error(net) -> float:
        with torch.no_grad(), simulated(net, plan):
            return float((net(x).mean(dim=(0, 1)) - reference).abs().mean())

    corrected = copy.deepcopy(model)
    correct_biases(corrected, plan, blobs[:4])  # corrections measured after the output rescale, divided back
    before, after = mean_error(model), mean_error(corrected)
    assert after < 0.5 * before, (before, after)
