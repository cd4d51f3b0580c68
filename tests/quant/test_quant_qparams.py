"""quant.qparams against numpy re-implementations and ONNX Runtime's QuantizeLinear/DequantizeLinear."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from int8track.quant.qparams import (
    ASYMMETRIC_UINT8,
    SYMMETRIC_INT8,
    SYMMETRIC_INT8_FULL,
    activation_qparams,
    dequantize,
    fake_quantize,
    get_scheme,
    quantize,
    sqnr_db,
    weight_qparams_per_channel,
)


def _ort_qdq(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Run QuantizeLinear -> DequantizeLinear in ONNX Runtime; returns (q, dequantized)."""
    elem = TensorProto.UINT8 if zero_point.dtype == np.uint8 else TensorProto.INT8
    attrs = {} if axis is None else {"axis": axis}
    inits = [
        helper.make_tensor("s", TensorProto.FLOAT, scale.shape, scale.reshape(-1).tolist()),
        helper.make_tensor("z", elem, zero_point.shape, zero_point.reshape(-1).tolist()),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("q", elem, x.shape), helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    q, y = sess.run(None, {"x": x})
    return q, y


def _np_activation_qparams(lo: float, hi: float, qmin: int, qmax: int) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32((hi - lo) / (qmax - qmin))
    return float(scale), int(np.clip(np.round(qmin - lo / float(scale)), qmin, qmax))


def test_per_tensor_uint8_matches_onnxruntime_bit_exact() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 3, 17, 9)) * 3).astype(np.float32)
    scale, zp = activation_qparams(float(x.min()) * 0.8, float(x.max()) * 0.7)  # some values saturate
    # exact ties k + 0.5 (half-to-even) and values beyond both ends
    ties = ((np.arange(-20, 20) + 0.5) * scale).astype(np.float32)
    x.reshape(-1)[: ties.size] = ties
    q_ort, y_ort = _ort_qdq(x, np.array(scale, np.float32), np.array(zp, np.uint8), None)
    xt = torch.from_numpy(x)
    q = quantize(xt, scale, zp, 0, 255)
    assert q.dtype == torch.uint8
    np.testing.assert_array_equal(q.numpy(), q_ort)
    np.testing.assert_array_equal(dequantize(q, scale, zp).numpy(), y_ort)
    np.testing.assert_array_equal(fake_quantize(xt, scale, zp, 0, 255).numpy(), y_ort)
    assert (q_ort == 0).any() and (q_ort == 255).any()


def test_per_channel_int8_matches_onnxruntime_bit_exact() -> None:
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((8, 4, 3, 3)) * rng.uniform(0.01, 2, (8, 1, 1, 1))).astype(np.float32)
    scales, zps = weight_qparams_per_channel(torch.from_numpy(w), axis=0)
    q_ort, y_ort = _ort_qdq(w, scales.numpy(), zps.numpy().astype(np.int8), axis=0)
    q = quantize(torch.from_numpy(w), scales, zps, -127, 127, axis=0)
    assert q.dtype == torch.int8
    np.testing.assert_array_equal(q.numpy(), q_ort)
    np.testing.assert_array_equal(fake_quantize(torch.from_numpy(w), scales, zps, -127, 127, axis=0).numpy(), y_ort)
    # restricted symmetric range: each channel's max |w| maps to exactly +-127
    assert (np.abs(q_ort).reshape(8, -1).max(1) == 127).all()


def test_per_channel_on_axis_1_matches_onnxruntime() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 5, 4)).astype(np.float32)
    scales, zps = weight_qparams_per_channel(torch.from_numpy(w), axis=1)
    assert scales.shape == (5,)
    expected = np.abs(w).max(axis=(0, 2)) / 127
    np.testing.assert_allclose(scales.numpy(), expected, rtol=1e-6)
    _, y_ort = _ort_qdq(w, scales.numpy(), zps.numpy().astype(np.int8), axis=1)
    np.testing.assert_array_equal(fake_quantize(torch.from_numpy(w), scales, zps, -127, 127, axis=1).numpy(), y_ort)


@pytest.mark.parametrize("lo,hi", [(-1.3, 4.1), (0.5, 3.0), (-7.0, -2.0), (-0.001, 1000.0), (0.0, 6.0)])
def test_activation_qparams_asymmetric_matches_numpy_and_keeps_zero_exact(lo: float, hi: float) -> None:
    scale, zp = activation_qparams(lo, hi, ASYMMETRIC_UINT8)
    assert (scale, zp) == _np_activation_qparams(lo, hi, 0, 255)
    assert isinstance(zp, int) and 0 <= zp <= 255
    assert float(fake_quantize(torch.zeros(1), scale, zp, 0, 255)) == 0.0
    # the grid reaches the requested ends to within one step
    grid_lo, grid_hi = (0 - zp) * scale, (255 - zp) * scale
    assert grid_lo <= min(lo, 0.0) + scale and grid_hi >= max(hi, 0.0) - scale


def test_activation_qparams_symmetric_schemes() -> None:
    scale, zp = activation_qparams(-2.0, 5.08, SYMMETRIC_INT8)
    assert zp == 0 and scale == pytest.approx(5.08 / 127, rel=1e-7)
    scale_full, _ = activation_qparams(-2.0, 5.08, "symmetric_int8_full")
    assert scale_full == pytest.approx(2 * 5.08 / 255, rel=1e-7)
    assert get_scheme("symmetric_int8_full") is SYMMETRIC_INT8_FULL


def test_degenerate_and_bad_ranges() -> None:
    assert activation_qparams(0.0, 0.0) == (1.0, 0)
    assert activation_qparams(0.0, 0.0, SYMMETRIC_INT8) == (1.0, 0)
    with pytest.raises(ValueError, match="inverted"):
        activation_qparams(1.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        activation_qparams(float("nan"), 1.0)
    with pytest.raises(ValueError, match="unknown quantization scheme"):
        activation_qparams(0.0, 1.0, "int4")
    w = torch.randn(3, 4)
    w[1] = 0
    scales, _ = weight_qparams_per_channel(w)
    assert scales[1] == 1.0 and torch.all(fake_quantize(w, scales, 0, -127, 127, axis=0)[1] == 0)
    with pytest.raises(ValueError, match="symmetric"):
        weight_qparams_per_channel(w, scheme=ASYMMETRIC_UINT8)
    with pytest.raises(ValueError, match="needs an axis"):
        fake_quantize(w, scales, 0, -127, 127)


def test_sqnr_db_matches_formula() -> None:
    ref = torch.randn(1000)
    noise = 0.01 * torch.randn(1000)
    expected = 10 * np.log10((ref.double() ** 2).sum().item() / (noise.double() ** 2).sum().item())
    assert sqnr_db(ref, ref + noise) == pytest.approx(expected, rel=1e-5)  # ref + noise rounds in float32
    assert sqnr_db(ref, ref) == float("inf")
    # 8-bit uniform quantization of a uniform signal: ~6.02 * 8 dB
    u = torch.rand(100_000) * 2 - 1
    s, z = activation_qparams(-1.0, 1.0)
    assert sqnr_db(u, fake_quantize(u, s, z, 0, 255)) == pytest.approx(6.02 * 8, abs=0.3)


@settings(max_examples=60, deadline=None)
@given(
    lo=st.floats(-1e4, 0.0, allow_nan=False),
    hi=st.floats(0.0, 1e4, allow_nan=False),
    symmetric=st.booleans(),
)
def test_property_zero_exact_and_error_at_most_half_step(lo: float, hi: float, symmetric: bool) -> None:
    scheme = SYMMETRIC_INT8 if symmetric else ASYMMETRIC_UINT8
    scale, zp = activation_qparams(lo, hi, scheme)
    assert scheme.qmin <= zp <= scheme.qmax and scale > 0
    x = torch.linspace(lo, hi, 257, dtype=torch.float64).float()
    fq = fake_quantize(x, scale, zp, scheme.qmin, scheme.qmax)
    assert float(fake_quantize(torch.zeros(1), scale, zp, scheme.qmin, scheme.qmax)) == 0.0
    # inside the grid every value is within half a step (plus float32 rounding) of its reconstruction
    grid_lo, grid_hi = (scheme.qmin - zp) * scale, (scheme.qmax - zp) * scale
    inside = (x >= grid_lo) & (x <= grid_hi)
    err = (fq - x).abs()[inside]
    assert err.numel() == 0 or float(err.max()) <= 0.5 * scale * (1 + 1e-5) + 1e-6 * max(abs(lo), hi)
    # integer grid values survive quantize -> dequantize exactly
    q = torch.arange(scheme.qmin, scheme.qmax + 1, dtype=torch.int32).to(scheme.torch_dtype)
    assert torch.equal(quantize(dequantize(q, scale, zp), scale, zp, scheme.qmin, scheme.qmax), q)


def test_subnormal_scales_are_avoided() -> None:
    tiny = float(np.finfo(np.float32).tiny)
    assert activation_qparams(0.0, 100 * tiny) == (1.0, 0)  # scale would be subnormal
    scale, _ = activation_qparams(0.0, 1000 * tiny)
    assert scale >= tiny
    scales, _ = weight_qparams_per_channel(torch.tensor([[50 * tiny], [1.0]]))
    assert scales[0] == 1.0 and scales[1] == pytest.approx(1 / 127)
