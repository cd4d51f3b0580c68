"""One calibration pass for every observer: conv input/output histograms gathered once.

Each distinct tensor gets one ``RunningHistogram`` (a tensor feeding two convs is counted once; the ONNX
graph says which points share a tensor), and every histogram-based observer
(minmax, percentile, histogram, mse) and the activation-aware lower bound read their ranges from that same
histogram, so choosing between observers costs no extra pass over the frames.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from torch import nn

from int8track.quant.activation_ranges import Activation, ActivationAwareObserver
from int8track.quant.calibration import torch_threads
from int8track.quant.observers import (
    MinMaxObserver,
    Observer,
    RunningHistogram,
    _flat_numpy,
    _HistogramBased,
    make_observer,
)
from int8track.quant.simulate import conv_layers

#: observers whose range is a function of the running histogram (and its min/max) alone
HISTOGRAM_OBSERVERS = ("minmax", "percentile", "histogram", "mse")
#: values binned per tensor and frame (see ``gather_statistics``)
SAMPLE_VALUES = 1 << 18


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
    assert isinstance(observer, _HistogramBased)
    observer.hist = hist
    return observer


def conv_tensors(proto: onnx.ModelProto, model: nn.Module) -> dict[str, str]:
    """Quantization point -> the ONNX tensor it observes (conv input, raw conv output)."""
    from int8track.quant.onnx_export import conv_nodes  # onnx_export imports simulate; avoid a cycle

    points = {}
    for name, node in conv_nodes(proto, model).items():
        points[f"{name}:in"], points[f"{name}:out"] = node.input[0], node.output[0]
    return points


@torch.no_grad()
def gather_statistics(proto: onnx.ModelProto, model: nn.Module, blobs: Sequence[np.ndarray],
                      num_threads: int | None = None, sample: int = SAMPLE_VALUES) -> ConvStatistics:
    """Histograms of every conv input/output over ``blobs`` (preprocessed frames), in one forward pass each.

    Min and max are exact; the bins of a tensor with more than ``sample`` values get every k-th value (a
    fixed stride, so the result depends only on the frames): the 99.99th percentile of 32 frames still rests
    on hundreds of values, and binning every value was two thirds of the calibration time.
    """
    start = time.perf_counter()
    points = conv_tensors(proto, model)
    hists = {t: RunningHistogram(count_zeros=False) for t in dict.fromkeys(points.values())}
    convs = conv_layers(model)
    first: dict[str, str] = {}  # one hook per tensor: a tensor feeding two convs is observed once
    for point, tensor in points.items():
        first.setdefault(tensor, point)

    def observe(hist: RunningHistogram, x: torch.Tensor) -> None:
        values = _flat_numpy(x)
        step = max(1, -(-values.size // sample))
        hist.update_array(values[::step], extrema=(float(values.min()), float(values.max())))

    handles = []
    for tensor, point in first.items():
        conv, side = point.rsplit(":", 1)
        if side == "in":
            handles.append(convs[conv].register_forward_pre_hook(
                lambda _m, args, h=hists[tensor]: observe(h, args[0])))
        else:
            handles.append(convs[conv].register_forward_hook(
                lambda _m, _a, out, h=hists[tensor]: observe(h, out), prepend=True))
    try:
        with torch_threads(num_threads):
            for blob in blobs:
                model(torch.from_numpy(blob))
    finally:
        for h in handles:
            h.remove()
    return ConvStatistics({p: hists[t] for p, t in points.items()}, len(blobs), time.perf_counter() - start)
