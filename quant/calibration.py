"""Calibration: frames from a list/video/image folder/MOT sequence, pushed through ``det.preprocess``,
activation ranges observed at every conv input and output (see ``quant.simulate`` for the points), and
empirical bias correction of the simulated int8 model."""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from int8track import frames
from int8track.quant.activation_ranges import Activation, ActivationAwareObserver
from int8track.quant.bias_correction import correct_model_biases
from int8track.quant.config import DEFAULT_NUM_FRAMES
from int8track.quant.observers import make_observer
from int8track.quant.simulate import QuantPlan, conv_layers, simulated


def load_frames(source: str | Path | Sequence[np.ndarray], num: int | None = DEFAULT_NUM_FRAMES,
                offset: int = 0, step: int | None = None) -> list[np.ndarray]:
    """BGR frames from a list of frames, a video file, an image folder or a MOT sequence (its ``img1``).

    ``num`` frames evenly spaced over the source, or with ``step`` every ``step``-th frame from
    ``offset`` (at most ``num``) — e.g. ``step=4, offset=0`` to keep the other frames for evaluation.
    Read by ``detectors.frames``, the reader tracking uses, so whatever can be tracked can be calibrated on.
    """
    return frames.load_frames(source, num, offset, step, label="calibration source")


def preprocess_frames(preprocess: Callable[[np.ndarray], tuple[np.ndarray, object]],
                      frames: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Blobs exactly as the detector sees them (``det.preprocess``)."""
    return [np.ascontiguousarray(preprocess(f)[0], dtype=np.float32) for f in frames]


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run torch with ``num_threads`` intra-op threads inside the block (None: leave as is), then restore.

    On a shared, loaded machine one thread is faster than two for these per-layer ops: every
    multi-threaded op waits at a barrier for a thread that may be descheduled.
    """
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def collect_ranges(model: nn.Module, blobs: Sequence[np.ndarray], observer: str = "minmax",
                   layers: Iterable[str] | None = None, progress: bool = True,
                   num_threads: int | None = None, activations: Mapping[str, Activation] | None = None,
                   scheme: str = "asymmetric_uint8") -> dict[str, tuple[float, float]]:
    """Observed ``(lo, hi)`` of the input and the output (pre-activation) of every conv (or ``layers``),
    with the forward passes on ``num_threads`` torch threads (None: torch's current setting).

    ``activations`` (conv name -> the activation its output feeds, ``quant.activation_ranges``): those
    outputs get their lower bound chosen for the error after the activation on the ``scheme`` grid.
    """
    convs = conv_layers(model)
    names = list(convs) if layers is None else list(layers)
    observers = {f"{n}:{side}": make_observer(observer) for n in names for side in ("in", "out")}
    for n, act in (activations or {}).items():
        if n in names:
            observers[f"{n}:out"] = ActivationAwareObserver(observers[f"{n}:out"], act, scheme)
    handles = []
    for n in names:
        handles.append(convs[n].register_forward_pre_hook(
            lambda _m, args, o=observers[f"{n}:in"]: o.update(args[0])))
        handles.append(convs[n].register_forward_hook(
            lambda _m, _a, out, o=observers[f"{n}:out"]: o.update(out), prepend=True))  # raw conv output
    try:
        with torch_threads(num_threads):
            for blob in tqdm(blobs, desc=f"calibrating ({observer})", unit="frame", disable=not progress):
                model(torch.from_numpy(blob))
    finally:
        for h in handles:
            h.remove()
    return {
        point: cast("tuple[float, float]", tuple(float(v) for v in obs.range())) for point, obs in observers.items()
    }


@torch.no_grad()
def correct_biases(
    model: nn.Module, plan: QuantPlan, blobs: Sequence[np.ndarray], max_frames: int = 8
) -> dict[str, float]:
    """Empirical bias correction (``quant.bias_correction``) of the plan's convs, applied to ``model``'s float biases.

    The simulated int8 copy is corrected layer by layer in execution order so that each conv's mean raw
    output (its accumulator, before the output quantizer and any output rescale) per channel matches the
    float model; the corrections are then added to the float biases, from which the int32 biases are
    derived. Returns the largest |correction| per layer.
    """
    quantized = copy.deepcopy(model)
    batch = [torch.from_numpy(b) for b in blobs[:max_frames]]
    with simulated(quantized, plan):
        corrections = correct_model_biases(model, quantized, batch, names=list(plan.quantized))
    convs = conv_layers(model)
    for name, delta in corrections.items():
        conv = convs[name]
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype), requires_grad=False)
        conv.bias += delta.to(conv.bias)
    return {name: float(delta.abs().max()) for name, delta in corrections.items()}
