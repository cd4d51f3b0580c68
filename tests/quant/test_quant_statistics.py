"""The one-pass calibration statistics (ONNX Runtime, sampled bins) against each observer's own PyTorch pass."""
from __future__ import annotations

import numpy as np
import pytest
from test_quant_simulate import tiny_setup

from int8track.quant.calibration import collect_ranges
from int8track.quant.onnx_export import export_fp32, fuse_silu
from int8track.quant.simulate import conv_layers
from int8track.quant.statistics import gather_statistics


@pytest.fixture(scope="module")
def tiny():
    model, blobs = tiny_setup(seed=5, frames=6, size=64)
    return model, blobs, fuse_silu(export_fp32(model, (64, 64)))


def test_every_point_is_observed_with_exact_extremes(tiny):
    model, blobs, proto = tiny
    stats = gather_statistics(proto, model, blobs, num_threads=1)
    points = {f"{n}:{side}" for n in conv_layers(model) for side in ("in", "out")}
    assert set(stats.histograms) == points and stats.frames == len(blobs)
    reference = collect_ranges(model, blobs, "minmax", progress=False)
    for point, (lo, hi) in stats.ranges("minmax").items():  # ORT and torch convs agree to float rounding
        assert lo == pytest.approx(reference[point][0], rel=1e-5, abs=1e-6), point
        assert hi == pytest.approx(reference[point][1], rel=1e-5, abs=1e-6), point


@pytest.mark.parametrize("observer", ["percentile", "mse"])
def test_histogram_observers_match_their_own_pass(tiny, observer):
    model, blobs, proto = tiny
    ranges = gather_statistics(proto, model, blobs, num_threads=1).ranges(observer)
    reference = collect_ranges(model, blobs, observer, progress=False)
    for point, (lo, hi) in ranges.items():
        scale = max(abs(reference[point][0]), abs(reference[point][1]))
        assert abs(lo - reference[point][0]) <= 0.01 * scale and abs(hi - reference[point][1]) <= 0.01 * scale, point


def test_sampling_keeps_extremes_and_is_deterministic(tiny):
    model, blobs, proto = tiny
    full = gather_statistics(proto, model, blobs, num_threads=1)
    sampled = [gather_statistics(proto, model, blobs, num_threads=1, sample=97) for _ in range(2)]
    assert sampled[0].ranges("percentile") == sampled[1].ranges("percentile")
    assert sampled[0].ranges("minmax") == full.ranges("minmax")  # extremes come from every value
    stem_out = "stem:out"
    assert sampled[0].histograms[stem_out].total < full.histograms[stem_out].total  # bins got a sample only
    assert np.isclose(full.histograms[stem_out].total, len(blobs) * 16 * 32 * 32)
