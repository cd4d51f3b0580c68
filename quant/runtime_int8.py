"""What ONNX Runtime's int8 convolution computes on this CPU: exact int32 sums, or saturating 16-bit pairs.

On x86 CPUs without VNNI (AVX2 only; AVX-512 without VNNI), ONNX Runtime's u8s8 kernels multiply with
VPMADDUBSW, which adds two uint8 x int8 products into a *saturating* int16: two products of 255 x 127 (64,770)
do not fit and are clamped to 32,767 (ONNX Runtime's quantization documentation). The deployed model then
departs from the simulation by far more than rounding, silently. Weights within +-63 (7 bits, ORT's
``reduce_range``) keep every pair inside int16 (2 x 255 x 63 = 32,130). CPUs with VNNI (VPDPBUSD) and ARM
(SDOT/UDOT) accumulate in int32 and keep the full +-127.

:func:`int8_pairs_saturate` asks the runtime itself, once per process, with one QLinearConv whose exact and
saturated results differ, so the answer holds for whatever kernel ONNX Runtime picks on this machine.
:func:`runtime_weight_qmax` is the weight range that follows (``QuantPlan``'s default).
"""
from __future__ import annotations

import functools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from int8track.detectors.runtime import create_session

#: Symmetric int8 weights in [-127, 127]: where the runtime sums int8 products exactly.
FULL_WEIGHT_QMAX = 127
#: Weights in [-63, 63] (7 bits): where the runtime's pairwise int16 sums would otherwise saturate.
REDUCED_WEIGHT_QMAX = 63

_PROBE_CHANNELS = 8  # input channels: four pairs of products per output value
_PROBE_OUTPUT_SCALE = 2000.0  # exact sum 8 x 255 x 127 = 259,080 -> 130; with saturated pairs 4 x 32,767 -> 66


@functools.lru_cache(maxsize=1)
def int8_pairs_saturate() -> bool:
    """True when ONNX Runtime's int8 convolution on this CPU clamps pairs of products to int16."""
    session = create_session(_probe_model().SerializeToString(), 1)
    image = np.full((1, _PROBE_CHANNELS, 4, 4), 255, dtype=np.uint8)
    out = session.run(None, {"x": image})[0]
    exact = round(_PROBE_CHANNELS * 255 * FULL_WEIGHT_QMAX / _PROBE_OUTPUT_SCALE)
    return bool(np.any(out.astype(np.int64) != exact))


def runtime_weight_qmax() -> int:
    """The largest int8 weight magnitude this machine's runtime sums exactly: 127, or 63 where pairs saturate."""
    return REDUCED_WEIGHT_QMAX if int8_pairs_saturate() else FULL_WEIGHT_QMAX


def _probe_model() -> onnx.ModelProto:
    """One 1x1 QLinearConv: uint8 input of 255s, int8 weights of 127s, unit scales, zero points 0."""
    weight = np.full((1, _PROBE_CHANNELS, 1, 1), FULL_WEIGHT_QMAX, dtype=np.int8)
    initializers = [
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.uint8), "x_zero"),
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "w_zero"),
        numpy_helper.from_array(np.array(_PROBE_OUTPUT_SCALE, dtype=np.float32), "y_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.uint8), "y_zero"),
    ]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"],
                            ["y"])
    graph = helper.make_graph([node], "int8_saturation_probe",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, _PROBE_CHANNELS, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1, 4, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
