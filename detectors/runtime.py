"""Inference backends: ONNX Runtime sessions, runners (blob -> raw) and export of our torch models to ONNX."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

#: In ORT 1.31 this optimizer re-quantizes float weights next to QDQ nodes; int8 models must not be touched.
DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]
ONNX_OPSET = 13


def create_session(model: str | Path | bytes, num_threads: int | None = None) -> ort.InferenceSession:
    """CPU ONNX Runtime session, all graph optimisations except ``WeightBiasQuantization``.

    ``num_threads`` sets intra-op threads (None = ORT default); inter-op is 1 (sequential graph).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if num_threads is not None:
        options.intra_op_num_threads = int(num_threads)
    if isinstance(model, (str, Path)) and not Path(model).is_file():
        raise FileNotFoundError(f"ONNX model not found: {model}")
    source = str(model) if isinstance(model, (str, Path)) else model
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=DISABLED_OPTIMIZERS)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        name = model if isinstance(model, (str, Path)) else f"<{len(model)} bytes>"
        raise ValueError(f"ONNX Runtime cannot load {name}: {exc}") from exc


class OrtRunner:
    """Callable blob (1,3,H,W) float32 -> raw (1,A,5+C) float32 through an ORT session's first input/output."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: blob})[0]


class TorchRunner:
    """Callable blob -> raw running a float32 eval-mode torch model under ``inference_mode``.

    ``num_threads`` sets torch's intra-op threads (a process-wide setting) when given.
    """

    def __init__(self, model: nn.Module, num_threads: int | None = None) -> None:
        self.model = model.float().eval()
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(blob)).numpy()


def export_onnx(model: nn.Module, input_size: tuple[int, int], path: str | Path, dynamic_batch: bool = False) -> Path:
    """Export ``model`` (fp32, eval) to ONNX at opset 13 with the TorchScript exporter; written atomically.

    ``dynamic_batch`` makes the batch dimension symbolic (``batch``) for batched inference of same-sized frames.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, *input_size)
    with torch.no_grad():
        torch.onnx.export(model.float().eval(), (dummy,), buffer, input_names=["images"], output_names=["output"],
                          opset_version=ONNX_OPSET, dynamo=False,
                          dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(buffer.getvalue())
    os.replace(tmp, path)
    return path
