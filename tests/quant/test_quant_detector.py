"""quantize_detector on the real ByteTrack nano detector (a few PETS09 frames): int8 really runs in ORT,
agrees with fp32 and with its own simulation, and survives a save/load round trip."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from int8track.quant import quantize_detector
from int8track.quant.agreement import detection_f1
from int8track.quant.calibration import load_frames
from int8track.quant.onnx_export import SPEC_KEY, int8_op_count, optimized_op_counts
from int8track.quant.sensitivity import cosine
from int8track.quant.simulate import run_simulated

from conftest import require_data

# Measured 2026-11-22 (percentile ranges from the 3 calibration frames, stem (2 convs) + head preds float,
# 384x512): F1 0.836 on the 3 held-out frames below (0.854 on 20 other frames). The bound leaves room for
# rounding noise, not for a broken pipeline (minmax ranges at full size: F1 ~0.15).
MIN_F1 = 0.78
INPUT_SIZE = (384, 512)


@pytest.fixture(scope="module")
def bytetrack():
    from int8track.detectors import Detector, TorchRunner, load_detector

    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    sequence = require_data("MOT15/train/PETS09-S2L1")
    loaded = load_detector(weights)
    # the fully convolutional model at 384x512 (PETS is 4:3) keeps the test fast on a shared CPU
    det = Detector(loaded.spec.replace(input_size=INPUT_SIZE), TorchRunner(loaded.model), loaded.model)
    calib = load_frames(sequence, num=3, offset=0, step=200)
    held_out = load_frames(sequence, num=3, offset=61, step=250)
    qdet = quantize_detector(det, calib, eval_frames=held_out, observer="percentile", speed_aware=False,
                             target_agreement=0.5, progress=False)
    return det, qdet, held_out


def test_int8_detections_agree_with_fp32_on_held_out_frames(bytetrack):
    det, qdet, frames = bytetrack
    reference, int8 = [det(f) for f in frames], [qdet(f) for f in frames]
    assert sum(len(b) for b in reference) >= 15
    assert detection_f1(reference, int8) >= MIN_F1


def test_deployed_int8_matches_the_simulation(bytetrack):
    _, qdet, frames = bytetrack
    blob, _ = qdet.preprocess(frames[0])
    assert cosine(run_simulated(qdet.float_model, qdet.plan, blob), qdet.infer(blob)) > 0.99


def test_ort_runs_int8_convs_and_keeps_the_float_set_float(bytetrack):
    _, qdet, _ = bytetrack
    counts = optimized_op_counts(qdet.proto.SerializeToString())
    assert counts["QLinearConv"] == len(qdet.plan.quantized) > 90
    assert int8_op_count(counts) == counts["QLinearConv"]
    float_layers = qdet.quant_info.float_layers
    assert any("stem" in n for n in float_layers) and sum("preds" in n for n in float_layers) == 9
    assert counts["Conv"] + counts["FusedConv"] == len(float_layers)


def test_save_load_round_trip_gives_identical_outputs(bytetrack, tmp_path):
    from int8track.detectors import load_detector

    _, qdet, frames = bytetrack
    path = qdet.save(tmp_path / "bytetrack_nano_int8.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta[SPEC_KEY])["name"] == qdet.spec.name
    loaded = load_detector(path, backend="onnxruntime")
    assert loaded.model is None
    blob, _ = qdet.preprocess(frames[1])
    np.testing.assert_array_equal(loaded.infer(blob), qdet.infer(blob))
    np.testing.assert_array_equal(loaded(frames[1]), qdet(frames[1]))


def test_detector_without_torch_model_is_rejected(bytetrack):
    from int8track.detectors import Detector

    det, _, frames = bytetrack
    with pytest.raises(ValueError, match="needs the float torch model"):
        quantize_detector(Detector(det.spec, det.runner, None), frames[:1])


def test_search_scores_configurations_and_ranks_them(bytetrack, tmp_path):
    from int8track.quant.search import search, write_table

    det, _, frames = bytetrack
    rows = search(det, frames[:1], frames[1:], observers=["minmax"], schemes=["uint8"], equalize=[False],
                  float_sets=["none", "stem+head"], progress=False)
    assert len(rows) == 4 and {(r.observer, r.scheme, r.equalized) for r in rows} == {("minmax", "uint8", False)}
    assert [r.f1 for r in rows] == sorted((r.f1 for r in rows), reverse=True)
    by = {(r.weight_granularity, r.float_set): r for r in rows}
    assert by["per_channel", "none"].float_layers == 0 and by["per_channel", "stem+head"].float_layers == 11
    # keeping the stem and the head's pred convs float is measurably closer to fp32, and so are per-channel
    # weight scales (BN folding spreads the channel ranges of one conv far apart)
    assert by["per_channel", "stem+head"].sqnr_db > by["per_channel", "none"].sqnr_db
    # measured: SQNR 9.0 vs 7.2 dB, F1 0.89 vs 0.68 with minmax activation ranges on the 2 held-out frames
    assert by["per_channel", "stem+head"].sqnr_db > by["per_tensor", "stem+head"].sqnr_db + 1
    assert by["per_channel", "stem+head"].f1 > by["per_tensor", "stem+head"].f1 + 0.1
    paths = write_table(rows, tmp_path / "search")
    assert paths["csv"].read_text().startswith("observer,scheme,weight_granularity,equalized,float_set")
    # every link of ByteTrack nano goes through SiLU: equalization is never exact there, so no CLE rows
    assert search(det, frames[:1], frames[1:2], observers=["minmax"], schemes=["uint8"], equalize=[True],
                  granularities=["per_channel"], float_sets=["none"], progress=False) == []
    with pytest.raises(ValueError, match="unknown float sets"):
        search(det, frames[:1], frames[1:], float_sets=["everything"])
    with pytest.raises(ValueError, match="unknown weight granularities"):
        search(det, frames[:1], frames[1:], granularities=["per_group"])


def test_a_plan_that_reaches_the_floor_is_accepted_as_is(bytetrack):
    det, qdet, held_out = bytetrack
    report = qdet.quant_info
    assert qdet.sensitivity == [] and report.rejected == [] and report.accepted == "percentile"
    assert report.floor == {"high": 0.5, "low": 0.5, "source": "target_agreement"}
    assert min(report.agreement.values()) >= 0.5


def test_the_floor_rejects_an_over_quantized_plan(bytetrack):
    """Every conv int8 with min/max ranges (stem and head included) misses the JPEG q95 floor; the model shipped
    instead keeps its most sensitive convs float and reaches the floor, measured on the deployed ORT graph."""
    from int8track.quant.floor import HeldOut, agreement

    det, _, held_out = bytetrack
    calib = load_frames(require_data("MOT15/train/PETS09-S2L1"), num=3, offset=0, step=200)
    qdet = quantize_detector(det, calib, eval_frames=held_out, observer="minmax", float_layers=(),
                             speed_aware=False, rounding="nearest", progress=False)
    report = qdet.quant_info
    (rejected, *_) = report.rejected
    assert rejected["candidate"] == "minmax" and min(rejected["high"], rejected["low"]) < 0.7
    assert report.floor["source"] == "fp32 vs fp32 on JPEG q95"
    assert report.agreement["high"] >= report.floor["high"] and report.agreement["low"] >= report.floor["low"]
    assert len(report.float_layers) > 0 and len(qdet.sensitivity) > 0
    # the reported agreement is the shipped model's: recompute it independently
    reference = HeldOut(det, qdet.proto.SerializeToString(), held_out)  # any graph: only .detect is used
    fp32 = reference.detect(_fp32_graph(qdet))
    reached = agreement(fp32, reference.detect(qdet.proto.SerializeToString()))
    assert (reached.high, reached.low) == (report.agreement["high"], report.agreement["low"])


def _fp32_graph(qdet) -> bytes:
    from int8track.quant.onnx_export import export_fp32, fuse_silu

    return fuse_silu(export_fp32(qdet.float_model, qdet.spec.input_size)).SerializeToString()


def test_auto_observer_keeps_the_candidate_that_agrees_best(bytetrack):
    from int8track.quant.config import AUTO_OBSERVERS

    det, _, held_out = bytetrack
    calib = load_frames(require_data("MOT15/train/PETS09-S2L1"), num=3, offset=0, step=200)
    qdet = quantize_detector(det, calib, observer="auto", eval_frames=held_out, speed_aware=False,
                             rounding="nearest", target_agreement=0.01, progress=False)
    scores = qdet.quant_info.observer_scores
    assert set(scores) == set(AUTO_OBSERVERS)
    best = max(scores, key=lambda n: (min(scores[n].values()), sum(scores[n].values())))
    assert qdet.quant_info.observer == qdet.plan.observer == best


@pytest.mark.parametrize("option, value", [("observer", "median"), ("scheme", "uint4"), ("rounding", "floor"),
                                           ("target_agreement", 1.5), ("no_such_option", 1)])
def test_bad_settings_fail_before_any_work(bytetrack, option, value):
    det, _, _ = bytetrack
    with pytest.raises(ValueError, match=option):  # not FileNotFoundError: checked before frames are read
        quantize_detector(det, "/nonexistent/frames", **{option: value})
