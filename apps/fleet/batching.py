"""Batched inference for a worker serving several streams: one detector call on frames from different streams.

Each stream thread calls the detector's runner with its own (1, 3, H, W) blob; :class:`BatchingRunner` holds the
calls until every stream still running has one waiting (or ``max_wait_s`` passed, so a stalled stream does not
hold the others), runs them as one (N, 3, H, W) batch and hands each caller its row. It needs a model exported
with a dynamic batch dimension (:func:`batched_model_file`), which needs the float model: fp32 only.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_MAX_WAIT_S = 0.05


class _Request:
    __slots__ = ("blob", "error", "result", "taken")

    def __init__(self, blob: np.ndarray) -> None:
        self.blob = blob
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.taken = False


class BatchingRunner:
    """A runner (blob -> raw) shared by ``members`` stream threads that runs their concurrent calls as one batch.

    A thread whose stream ends must call :meth:`leave`, so the others stop waiting for it. ``batch_sizes`` records
    the size of every batch run (for the report).
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], members: int,
                 max_wait_s: float = DEFAULT_MAX_WAIT_S) -> None:
        if members < 1:
            raise ValueError(f"members must be at least 1, not {members}")
        self._run = run
        self._members = members
        self._max_wait_s = max_wait_s
        self._waiting: list[_Request] = []
        self._condition = threading.Condition()
        self.batch_sizes: list[int] = []

    def leave(self) -> None:
        with self._condition:
            self._members -= 1
            self._condition.notify_all()

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        request = _Request(blob)
        batch: list[_Request] | None = None
        with self._condition:
            self._waiting.append(request)
            self._condition.notify_all()
            deadline = time.monotonic() + self._max_wait_s
            while not request.taken:
                if len(self._waiting) >= self._members or time.monotonic() >= deadline:
                    batch, self._waiting = self._waiting, []  # this thread runs everyone waiting
                    for item in batch:
                        item.taken = True
                    break
                self._condition.wait(timeout=max(0.0, deadline - time.monotonic()))
            if batch is None:  # another thread runs this request
                while request.result is None and request.error is None:
                    self._condition.wait()
        if batch is not None:
            self._run_batch(batch)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _run_batch(self, batch: list[_Request]) -> None:
        try:
            blobs = batch[0].blob if len(batch) == 1 else np.concatenate([item.blob for item in batch])
            raw = self._run(blobs)
            results = [raw[index:index + 1] for index in range(len(batch))]
        except BaseException as exc:  # every caller of the batch gets the error
            with self._condition:
                for item in batch:
                    item.error = exc
                self._condition.notify_all()
            return
        with self._condition:
            self.batch_sizes.append(len(batch))
            for item, result in zip(batch, results):
                item.result = result
            self._condition.notify_all()


def batched_model_file(weights: str | Path, folder: Path, input_size: tuple[int, int] | None = None) -> Path:
    """The fp32 model of ``weights`` exported with a dynamic batch dimension into ``folder`` at ``input_size``
    (None: the model's own), made once per weights file and input size; later calls reuse it. ValueError for an
    int8 model (no float model to export)."""
    from int8track.detectors import load_detector
    from int8track.detectors.input_size import check_input_size
    from int8track.detectors.runtime import cached_onnx, export_onnx

    detector = load_detector(str(weights), backend="torch")
    model = detector.model
    if model is None:
        raise ValueError(f"{weights}: batching needs the float model; an int8 ONNX file has none (run fp32)")
    height, width = check_input_size(detector.spec, input_size) if input_size else detector.spec.input_size
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:16]
    path = folder / f"{detector.spec.name}-{digest}-{height}x{width}-batch.onnx"
    # fully convolutional: the float model exports at any stride-multiple size
    return cached_onnx(path, lambda: export_onnx(model, (height, width), dynamic_batch=True))
