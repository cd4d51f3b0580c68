"""Inference backends: ONNX Runtime sessions, runners (blob -> raw) and the export of our torch models to ONNX."""
from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from int8track.files import write_bytes_atomically

#: In ORT 1.31 this optimizer re-quantizes float weights next to QDQ nodes; int8 models must not be touched.
DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]
ONNX_OPSET = 13
INPUT_NAME, OUTPUT_NAME = "images", "output"


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


def export_onnx(model: nn.Module, input_size: tuple[int, int], *, dynamic_batch: bool = False) -> onnx.ModelProto:
    """The one ONNX export of our torch models: fp32, eval, opset 13, TorchScript exporter, constants folded.

    Input ``images`` (N, 3, H, W) -> ``output`` (N, A, 5+C). N is 1, or a symbolic ``batch`` dimension with
    ``dynamic_batch`` (for batched inference of same-sized sources); H and W are fixed, so a model is exported
    once per input size. The tracer's warnings (shape arithmetic traced as constants, which is what a fixed
    size wants) are silenced.
    """
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 3, *input_size)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the stub types the target as a path; the TorchScript exporter writes to any binary buffer
        torch.onnx.export(model.float().eval(), (dummy,), buffer,  # type: ignore[arg-type]
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=ONNX_OPSET, dynamo=False, do_constant_folding=True, dynamic_axes=axes)
    return onnx.load_from_string(buffer.getvalue())


def cached_onnx(path: str | Path, make: Callable[[], onnx.ModelProto]) -> Path:
    """``path`` if it holds a readable ONNX model, else ``make()`` written there atomically.

    A cached file that does not parse (truncated by a full disk or a killed copy, overwritten with garbage) is
    reported in one line, removed and made again, so it never blocks later runs.
    """
    path = Path(path)
    if path.is_file():
        try:
            onnx.load(str(path), load_external_data=False)
            return path
        except Exception as exc:  # whatever the parser raises, the file is unusable
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            print(f"warning: cached ONNX model {path} does not load ({reason}); removing it and exporting again",
                  file=sys.stderr)
            path.unlink(missing_ok=True)
    return save_onnx(make(), path)


def save_onnx(proto: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``proto`` atomically (``int8track.files``); parent folders created."""
    return write_bytes_atomically(path, proto.SerializeToString())
