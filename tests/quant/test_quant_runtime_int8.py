"""The runtime probe: whether ONNX Runtime's int8 convolution saturates pairs of products on this CPU, checked
against a real deployment (x86 without VNNI saturates; VNNI and ARM sum in int32)."""
from __future__ import annotations

import numpy as np
from test_quant_simulate import tiny_setup

from int8track.detectors.runtime import create_session
from int8track.quant.calibration import collect_ranges
from int8track.quant.onnx_export import export_fp32, fuse_silu, insert_qdq
from int8track.quant.runtime_int8 import (
    FULL_WEIGHT_QMAX,
    REDUCED_WEIGHT_QMAX,
    int8_pairs_saturate,
    runtime_weight_qmax,
)
from int8track.quant.simulate import QuantPlan, conv_layers, run_simulated


def _largest_gap_in_output_steps(weight_qmax: int) -> float:
    model, blobs = tiny_setup(size=32)
    ranges = collect_ranges(model, blobs, "minmax", progress=False)
    plan = QuantPlan(ranges, list(conv_layers(model)), weight_qmax=weight_qmax)
    session = create_session(fuse_silu(insert_qdq(export_fp32(model, (32, 32)), model, plan)).SerializeToString(), 1)
    gaps = [np.abs(run_simulated(model, plan, blob) - session.run(None, {"images": blob})[0]).max()
            for blob in blobs[:3]]
    return float(max(gaps) / plan.act("pred:out").scale)


def test_the_probe_tells_whether_full_range_weights_deploy_as_simulated():
    full = _largest_gap_in_output_steps(FULL_WEIGHT_QMAX)
    if int8_pairs_saturate():
        assert runtime_weight_qmax() == REDUCED_WEIGHT_QMAX
        assert full > 2.0, f"the probe says pairs saturate, yet full-range weights deploy within {full:.2f} steps"
    else:
        assert runtime_weight_qmax() == FULL_WEIGHT_QMAX
        assert full <= 1.01, f"the probe says int32 sums, yet the deployment is {full:.2f} output steps off"
    # 7-bit weights never saturate: the deployment equals the simulation to one output step on any CPU
    assert _largest_gap_in_output_steps(REDUCED_WEIGHT_QMAX) <= 1.01


def test_the_report_says_when_weights_are_7_bit_and_old_reports_read_as_8_bit():
    from int8track.quant.report import QuantReport

    report = QuantReport(config={}, calibration_frames=2, eval_frames=2, observer="minmax", quantized_convs=3,
                         weight_qmax=REDUCED_WEIGHT_QMAX)
    assert any(line.startswith("int8 weights within +-63: this CPU's int8 convolution") for line in report.summary())
    assert QuantReport.from_dict(report.to_dict()) == report
    old = report.to_dict()
    del old["weight_qmax"]  # a model cached before the field existed
    assert QuantReport.from_dict(old).weight_qmax == FULL_WEIGHT_QMAX
    full = QuantReport(config={}, calibration_frames=2, eval_frames=2, observer="minmax", quantized_convs=3)
    assert not any("within +-" in line for line in full.summary())
