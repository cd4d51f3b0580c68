"""Profiler statistics against numpy, file round trips and plots."""
from __future__ import annotations

import time

import numpy as np
import pytest

from int8track.apps.pipeline.profiler import StageProfiler, TimingReport, info_text, plot_reports, read_summary_csv


def _known_report() -> TimingReport:
    rng = np.random.default_rng(0)
    samples = {
        "infer": rng.integers(40_000_000, 60_000_000, size=101),
        "track": rng.integers(100_000, 900_000, size=101),
    }
    return TimingReport(stages=["infer", "track"], samples_ns=samples, info={"precision": "fp32"})


def test_statistics_match_numpy():
    report = _known_report()
    rows = {row.stage: row for row in report.summary()}
    total = report.samples_ns["infer"].astype(float) + report.samples_ns["track"]
    for stage, values in [("infer", report.samples_ns["infer"]), ("track", report.samples_ns["track"]), ("total", total)]:
        values = np.asarray(values, dtype=float)
        assert rows[stage].median_ms == pytest.approx(np.median(values) / 1e6)
        assert rows[stage].p95_ms == pytest.approx(np.percentile(values, 95) / 1e6)
        assert rows[stage].mean_ms == pytest.approx(values.mean() / 1e6)
        assert rows[stage].fps == pytest.approx(1e9 / values.mean())
    assert rows["infer"].share + rows["track"].share == pytest.approx(1.0)
    assert rows["track"].share == pytest.approx(report.samples_ns["track"].mean() / total.mean())
    assert rows["total"].share == pytest.approx(1.0)


def test_json_round_trip_keeps_samples_and_info(tmp_path):
    report = _known_report()
    loaded = TimingReport.load_json(report.save_json(tmp_path / "t.json"))
    assert loaded.stages == report.stages
    assert loaded.info == report.info
    for stage in report.stages:
        np.testing.assert_array_equal(loaded.samples_ns[stage], report.samples_ns[stage])
    assert [r.as_row() for r in loaded.summary()] == [r.as_row() for r in report.summary()]


def test_csv_round_trip(tmp_path):
    report = _known_report()
    rows = read_summary_csv(report.save_csv(tmp_path / "t.csv"))
    expected = report.summary()
    assert [r.stage for r in rows] == [r.stage for r in expected]
    for got, want in zip(rows, expected):
        assert got.mean_ms == pytest.approx(want.mean_ms) and got.p95_ms == pytest.approx(want.p95_ms)


def test_load_json_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a timing report"):
        TimingReport.load_json(bad)


def test_profiler_records_stages_per_frame_and_late_additions():
    profiler = StageProfiler(["a", "b", "never"])
    for _ in range(3):
        profiler.begin_frame()
        with profiler.stage("a"):
            time.sleep(0.002)
        profiler.add("b", 5)
        profiler.add("b", 7)
        profiler.add_to_frame(profiler.num_frames, "late", 11)  # the frame is still open
        profiler.end_frame()
    report = profiler.report()
    assert report.stages == ["a", "b", "late"]  # a declared stage that never ran is left out
    assert (report.samples_ns["a"] >= 2_000_000).all()
    np.testing.assert_array_equal(report.samples_ns["b"], [12, 12, 12])
    np.testing.assert_array_equal(report.samples_ns["late"], [11, 11, 11])
    with pytest.raises(RuntimeError):
        profiler.add("a", 1)


def test_plot_single_and_comparison(tmp_path):
    report = _known_report()
    other = TimingReport(report.stages, {s: v // 2 for s, v in report.samples_ns.items()}, {"end_to_end_fps": 30.0})
    for reports, name in [({"fp32": report}, "one.png"), ({"fp32": report, "int8": other}, "two.png")]:
        path = plot_reports(reports, tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_facts_print_small_records_inline_and_point_to_the_json_for_nested_ones():
    report = TimingReport(["read"], {"read": np.array([1_000_000, 2_000_000])},
                          {"latency_ms": {"frames": 795, "p50_ms": 12.3456}, "kept_up": True,
                           "outages": {"count": 0, "each": []}, "int8": {"plan": {"stride": 8}}})
    table = report.format_table()
    assert "latency_ms: frames 795, p50_ms 12.346" in table
    assert "kept_up: True" in table
    assert "outages: see the timing JSON" in table and "int8: see the timing JSON" in table
    assert info_text({}) == "see the timing JSON"
