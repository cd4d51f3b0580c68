"""Per-layer sensitivity, greedy float set and the report files, on the tiny conv net."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from test_quant_simulate import tiny_setup

from int8track.quant.calibration import collect_ranges
from int8track.quant.pipeline import widen_float_set
from int8track.quant.qparams import sqnr_db
from int8track.quant.sensitivity import EvalSet, evaluate_plan, layer_sensitivity, local_sensitivity, report
from int8track.quant.simulate import QuantPlan, conv_layers, conv_sim


def decode(raw: np.ndarray, _meta) -> np.ndarray:
    """Toy decoding: anchors with channel 4 > 0 become boxes at their grid position (channels 0/1 = size)."""
    rows = raw[0]
    keep = np.flatnonzero(rows[:, 4] > 0.0)
    x = (keep % 16).astype(np.float64) * 4
    y = (keep // 16).astype(np.float64) * 4
    w, h = 2 + np.abs(rows[keep, 0]) * 4, 2 + np.abs(rows[keep, 1]) * 4
    return np.stack([x, y, x + w, y + h, rows[keep, 4], np.zeros(len(keep))], axis=1)


@pytest.fixture(scope="module")
def setup():
    model, blobs = tiny_setup(seed=3, frames=8)
    ranges = collect_ranges(model, blobs[:5], "minmax", progress=False)
    evalset = EvalSet.build(model, blobs[5:], [None] * 3, decode)
    assert sum(len(b) for b in evalset.boxes_fp32) > 20  # the toy decoding yields enough boxes to compare
    return model, blobs, QuantPlan(ranges, list(conv_layers(model))), evalset


def test_sensitivity_table_has_every_layer_most_sensitive_first(setup):
    model, _, plan, evalset = setup
    table = layer_sensitivity(model, plan, evalset, progress=False)
    assert sorted(r.layer for r in table) == sorted(plan.quantized)
    keys = [(r.f1, r.sqnr_db) for r in table]
    assert keys == sorted(keys)
    assert all(0.0 <= r.f1 <= 1.0 and r.l1 > 0 and np.isfinite(r.sqnr_db) for r in table)
    # quantizing everything is worse (lower SQNR) than quantizing the least sensitive layer alone
    assert evaluate_plan(model, plan, evalset).sqnr_db < table[-1].sqnr_db


def test_float_set_is_the_shortest_prefix_meeting_the_target(setup):
    model, _, plan, evalset = setup
    table = layer_sensitivity(model, plan, evalset, progress=False)
    order = [r.layer for r in table]

    def meets(target):
        return lambda candidate: evaluate_plan(model, candidate, evalset).f1 >= target

    # the plan itself was scored before widening: the shortest widened prefix is one conv
    assert widen_float_set(plan, order, meets(0.0)).quantized == [n for n in plan.quantized if n != order[0]]
    widened = widen_float_set(plan, order, meets(1.0))
    chosen = [n for n in plan.quantized if n not in widened.quantized]
    assert set(chosen) == set(order[:len(chosen)]) and evaluate_plan(model, widened, evalset).f1 == 1.0
    if chosen:  # one layer fewer misses the target (bisection found the boundary)
        assert evaluate_plan(model, plan.with_float(order[:len(chosen) - 1]), evalset).f1 < 1.0


def test_report_writes_csv_json_png(setup, tmp_path):
    model, _, plan, evalset = setup
    table = layer_sensitivity(model, plan, evalset, progress=False)
    paths = report(table, tmp_path / "sens", title="tiny")
    with open(paths["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["layer"] for r in rows] == [r.layer for r in table]
    assert json.loads(paths["json"].read_text())[0]["layer"] == table[0].layer
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_local_sensitivity_matches_a_direct_computation(setup):
    model, blobs, plan, _ = setup
    rows = local_sensitivity(model, plan, blobs[:1], progress=False)
    assert [r.sqnr_db for r in rows] == sorted(r.sqnr_db for r in rows) and len(rows) == 4
    x = torch.from_numpy(blobs[0])
    with torch.no_grad():
        sim = conv_sim(model.stem, plan.act("stem:in"), plan.act("stem:out"))
        expected = sqnr_db(model.stem(x), sim(model.stem, x))
    assert next(r for r in rows if r.layer == "stem").sqnr_db == pytest.approx(expected, abs=1e-6)


def test_detection_f1_counts_one_to_one_same_class_matches():
    from int8track.quant.agreement import detection_f1, match_count

    a = np.array([[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 0], [40, 40, 50, 50, 0.7, 2]])
    b = np.array([[1, 1, 10, 10, 0.9, 0],    # IoU 0.81 with a[0]
                  [0, 0, 10, 10, 0.5, 0],    # duplicate of a[0]: only one of them may match
                  [20, 20, 30, 30, 0.8, 1],  # right place, wrong class
                  [40, 40, 44, 44, 0.7, 2]])  # right class, IoU 0.16
    assert match_count(a, b) == 1
    assert detection_f1([a], [b]) == pytest.approx(2 * 1 / 7)
    assert detection_f1([a, a[:0]], [a, a[:0]]) == 1.0
    assert detection_f1([a[:0]], [a[:0]]) == 1.0 and detection_f1([a], [a[:0]]) == 0.0
    assert detection_f1([a], [b]) == detection_f1([b], [a])
    with pytest.raises(ValueError):
        detection_f1([a, a], [a])
