"""quantize_detector on the real ByteTrack nano detector (a few PETS09 frames): int8 really runs in ORT,
agrees with fp32 and with its own simulation, and survives a save/load round trip."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from conftest import require_data
from int8track.quant import quantize_detector
from int8track.quant.agreement import detection_f1
from int8track.quant.calibration import load_frames
from int8track.quant.onnx_export import SPEC_KEY, int8_op_count, optimized_op_counts
from int8track.quant.sensitivity import cosine
from int8track.quant.simulate import run_simulated

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
    qdet = quantize_detector(det, calib, observer="percentile", speed_aware=False, progress=False)
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
    float_layers = qdet.quant_info["float_layers"]
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


def test_target_agreement_runs_the_search_only_when_the_plan_misses_it(bytetrack):
    det, qdet, held_out = bytetrack
    calib = load_frames(require_data("MOT15/train/PETS09-S2L1"), num=3, offset=0, step=200)

    def quantize(target):
        return quantize_detector(det, calib, eval_frames=held_out, target_agreement=target, speed_aware=False,
                                 rounding="nearest", progress=False)

    met = quantize(0.0)  # any plan meets it: no sensitivity pass, no extra float convs
    assert met.sensitivity == [] and met.quant_info["float_layers"] == qdet.quant_info["float_layers"]
    missed = quantize(1.01)  # unreachable: every conv is ranked and the search ends with all of them float
    assert {row.layer for row in missed.sensitivity} == set(qdet.plan.quantized)
    assert not missed.plan.quantized and missed.quant_info["simulated_agreement"]["f1"] == 1.0


def test_auto_observer_keeps_the_candidate_that_agrees_best(bytetrack):
    from int8track.quant import AUTO_OBSERVERS

    det, _, held_out = bytetrack
    calib = load_frames(require_data("MOT15/train/PETS09-S2L1"), num=3, offset=0, step=200)
    qdet = quantize_detector(det, calib, observer="auto", eval_frames=held_out, speed_aware=False,
                             rounding="nearest", progress=False)
    scores = qdet.quant_info["observer_f1"]
    assert set(scores) == set(AUTO_OBSERVERS)
    assert qdet.quant_info["observer"] == qdet.plan.observer == max(scores, key=scores.get)
    with pytest.raises(ValueError, match="unknown observer"):
        quantize_detector(det, calib, observer="median", progress=False)
