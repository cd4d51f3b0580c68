"""One calibration pass for every observer: conv input/output histograms gathered once.

Each distinct tensor gets one ``RunningHistogram`` (a tensor feeding two convs is counted once; the ONNX
graph says which points share a tensor), and every histogram-based observer
(minmax, percentile, histogram, mse) and the activation-aware lower bound read their ranges from that same
histogram, so choosing between observers costs no extra pass over the frames.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnx
from torch import nn

from int8track.quant.activation_ranges import Activation, ActivationAwareObserver
from int8track.quant.observers import (
    HistogramBased,
    MinMaxObserver,
    Observer,
    RunningHistogram,
    make_observer,
)

#: observers whose range is a function of the running histogram (and its min/max) alone
HISTOGRAM_OBSERVERS = ("minmax", "percentile", "histogram", "mse")
#: values binned per tensor and frame (see ``gather_statistics``)
SAMPLE_VALUES = 1 << 16


@dataclass
class ConvStatistics:
    """Histograms of every conv's input and output tensor, by quantization point (``"conv:in"``/``"conv:out"``)."""

    histograms: dict[str, RunningHistogram]
    frames: int
    seconds: float

    def ranges(self, observer: str, activations: Mapping[str, Activation] | None = None,
               scheme: str = "asymmetric_uint8") -> dict[str, tuple[float, float]]:
        """``(lo, hi)`` of every point as ``observer`` would choose it from these statistics; outputs that feed
        one activation (``activations``) get the activation-aware lower bound, as ``collect_ranges`` does."""
        if observer not in HISTOGRAM_OBSERVERS:
            raise ValueError(f"observer {observer!r} needs its own pass; one-pass statistics serve "
                             f"{list(HISTOGRAM_OBSERVERS)}")
        out = {}
        for point, hist in self.histograms.items():
            obs = _observer_on(observer, hist)
            conv, side = point.rsplit(":", 1)
            if side == "out" and activations and conv in activations:
                obs = ActivationAwareObserver(obs, activations[conv], scheme)
                obs.hist = hist
            out[point] = tuple(float(v) for v in obs.range())
        return out  # type: ignore[return-value]


def _observer_on(name: str, hist: RunningHistogram) -> Observer:
    """An observer of kind ``name`` whose state is ``hist`` (no data of its own)."""
    if name == "minmax":
        obs = MinMaxObserver()
        if hist.total > 0:
            obs.lo, obs.hi = hist.min, hist.max
        return obs
    observer = make_observer(name)
    assert isinstance(observer, HistogramBased)
    observer.hist = hist
    return observer


def conv_tensors(proto: onnx.ModelProto, model: nn.Module) -> dict[str, str]:
    """Quantization point -> the ONNX tensor it observes (conv input, raw conv output)."""
    from int8track.quant.onnx_export import conv_nodes  # onnx_export imports simulate; avoid a cycle

    points = {}
    for name, node in conv_nodes(proto, model).items():
        points[f"{name}:in"], points[f"{name}:out"] = node.input[0], node.output[0]
    return points


def gather_statistics(proto: onnx.ModelProto, model: nn.Module, blobs: Sequence[np.ndarray],
                      num_threads: int | None = None, sample: int = SAMPLE_VALUES) -> ConvStatistics:
    """Histograms of every conv input/output over ``blobs`` (preprocessed frames), one forward pass each.

    The passes run the fp32 ONNX graph ``proto`` (exported from ``model``) in ONNX Runtime with every observed
    tensor as an extra output: the tensors of the graph that will be quantized, and faster than eager PyTorch
    with hooks (min and max in ONNX Runtime's reductions were slower than NumPy's). Min and max are exact;
    the bins of a tensor with more than ``sample`` values get every k-th value (a fixed stride, so the result
    depends only on the frames).
    """
    from int8track.detectors.runtime import create_session  # onnxruntime: loaded when statistics are gathered

    start = time.perf_counter()
    points = conv_tensors(proto, model)
    tensors = list(dict.fromkeys(points.values()))  # a tensor feeding two convs is observed once
    hists = {t: RunningHistogram(count_zeros=False) for t in tensors}
    observed = onnx.ModelProto()
    observed.CopyFrom(proto)
    graph_outputs = {o.name for o in proto.graph.output}
    observed.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in graph_outputs)
    session = create_session(observed.SerializeToString(), num_threads)
    input_name = session.get_inputs()[0].name

    def run(blob: np.ndarray) -> list[np.ndarray]:
        return session.run(tensors, {input_name: np.asarray(blob, np.float32)})

    # the next frame's pass (ONNX Runtime releases the GIL) overlaps this frame's binning; the histograms are
    # still updated in frame order, so the result does not depend on the overlap
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(run, blobs[0]) if blobs else None
        for k in range(len(blobs)):
            assert pending is not None
            outputs = pending.result()
            pending = pool.submit(run, blobs[k + 1]) if k + 1 < len(blobs) else None
            for tensor, values in zip(tensors, outputs):
                flat = values.reshape(-1)
                step = max(1, -(-flat.size // sample))
                hists[tensor].update_array(flat[::step], extrema=(float(flat.min()), float(flat.max())))
            del outputs
    return ConvStatistics({p: hists[t] for p, t in points.items()}, len(blobs), time.perf_counter() - start)
