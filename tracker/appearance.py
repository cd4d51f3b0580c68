"""Appearance embeddings of detected boxes (person re-identification), for ``tracker.reid``.

An *embedder* is any callable taking a list of BGR uint8 crops and returning an (N, D) float array, one row per
crop (any model: a torchreid network, a colour histogram, a test double). :class:`OnnxEmbedder` is the default:
torchreid's OSNet x0.25 exported to ONNX (``osnet_x0_25_msmt17.onnx``), run with ONNX Runtime, the frame's crops
in one batch. **Its weights were trained on MSMT17, whose terms allow research use only**: fine for evaluation
and development, not for a commercial deployment without other weights.

:class:`BoxEmbedder` is what the tracker calls: it cuts the boxes out of the frame (clipped to it), gives no
embedding to boxes too small to show a person (fewer than ``min_side`` pixels a side after clipping), calls the
embedder once for the rest, checks the shape it returns (and that its width never changes: embeddings of two
sizes cannot be compared) and L2-normalises the rows, so a dot product is the cosine similarity.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: Any function from a list of BGR crops to an (N, D) array of embeddings.
Embedder = Callable[[Sequence[np.ndarray]], np.ndarray]

#: ImageNet statistics (RGB, on [0, 1] pixels): torchreid trains and exports its models with them.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# (x / 255 - mean) / std = x * _SCALE - _SHIFT, per RGB channel, shaped to broadcast over (N, 3, H, W).
_SCALE = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32).reshape(3, 1, 1)
_SHIFT = (IMAGENET_MEAN / IMAGENET_STD).astype(np.float32).reshape(3, 1, 1)
#: torchreid's person input size, height x width.
REID_INPUT_SIZE = (256, 128)


class OnnxEmbedder:
    """Person embeddings from an ONNX re-identification model (default: OSNet x0.25, MSMT17, 512-d).

    Crops are resized to ``input_size`` (height, width; 256x128 for torchreid models), converted to RGB,
    scaled to [0, 1] and normalised with the ImageNet mean/std, then run as one batch (the model's batch axis
    must be dynamic for more than one crop). **The default OSNet weights were trained on MSMT17: research use
    only.** ``num_threads``: ONNX Runtime intra-op threads (1 leaves the other cores to the detector).

    Raises FileNotFoundError naming the path when it does not exist, ValueError naming it when ONNX Runtime
    cannot load it or it is not an image model (one 4-D float input, one 2-D output).
    """

    def __init__(self, path: str | os.PathLike[str], num_threads: int = 1,
                 input_size: tuple[int, int] = REID_INPUT_SIZE) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"re-identification weights not found: {self.path}")
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for unreadable models
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{self.path} is not a loadable ONNX model: {first_line}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) != 1 or len(outputs[0].shape) != 2:
            raise ValueError(f"{self.path} is not an embedding model: expected one (N, 3, H, W) input and one (N, D) "
                             f"output, got inputs {[i.shape for i in inputs]}, outputs {[o.shape for o in outputs]}")
        self.input_name = inputs[0].name
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 3, H, W) float32 model input of BGR uint8 crops.

        Each resized crop's channels are copied into their RGB planes, then one multiply and one subtract on the
        contiguous batch (``/255``, mean and std folded into a per-channel scale and shift): about 10x less time
        than normalising an interleaved (N, H, W, 3) batch step by step and transposing it (on this CPU).
        """
        height, width = self.input_size
        batch = np.empty((len(crops), 3, height, width), dtype=np.float32)
        for i, crop in enumerate(crops):
            resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
            for channel in range(3):
                batch[i, 2 - channel] = resized[:, :, channel]  # BGR -> RGB planes
        batch *= _SCALE
        batch -= _SHIFT
        return batch

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) float32 embeddings (not normalised: ``BoxEmbedder`` does it)."""
        if len(crops) == 0:
            return np.empty((0, 0), dtype=np.float32)
        (output,) = self.session.run(None, {self.input_name: self.preprocess(crops)})
        return np.asarray(output, dtype=np.float32)


@dataclass(frozen=True)
class CropSettings:
    """Which boxes get an embedding: at least ``min_side`` pixels wide and high once clipped to the frame (a
    person a few pixels tall carries no appearance the model can use)."""

    min_side: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.min_side, bool) or not isinstance(self.min_side, int) or self.min_side < 1:
            raise ValueError(f"CropSettings.min_side must be an integer >= 1, got {self.min_side!r}")


def crop_boxes(frame: np.ndarray, boxes: np.ndarray, min_side: int = 8) -> tuple[list[np.ndarray], np.ndarray]:
    """Crops of ``boxes`` (N, 4 x1, y1, x2, y2) clipped to ``frame`` (H, W, 3 uint8), and the (N,) bool mask of
    the boxes that got one (clipped sides of at least ``min_side`` pixels; the others, and non-finite boxes, none).
    The crops are views of the frame."""
    image = np.asarray(frame)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"frame must be an (H, W, 3) uint8 BGR image, got shape {image.shape}, dtype {image.dtype}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = image.shape[:2]
    finite = np.asarray(np.isfinite(boxes).all(axis=1))
    safe = np.where(finite[:, None], boxes, 0.0)
    x1 = np.clip(np.floor(safe[:, 0]), 0, width).astype(np.int64)
    y1 = np.clip(np.floor(safe[:, 1]), 0, height).astype(np.int64)
    x2 = np.clip(np.ceil(safe[:, 2]), 0, width).astype(np.int64)
    y2 = np.clip(np.ceil(safe[:, 3]), 0, height).astype(np.int64)
    valid: np.ndarray = finite & (x2 - x1 >= min_side) & (y2 - y1 >= min_side)
    crops = [image[y1[i]:y2[i], x1[i]:x2[i]] for i in valid.nonzero()[0]]
    return crops, valid


class BoxEmbedder:
    """Unit-length embeddings of boxes in a frame, through any ``embedder`` (see the module docstring).

    ``embed(frame, boxes)`` returns (N, D) float32 rows, NaN for boxes that get none (too small, see
    :func:`crop_boxes`), and the (N,) mask of the others; ``dim`` is D once known. ``crops_embedded`` counts
    the crops sent to the embedder (the cost driver).
    """

    def __init__(self, embedder: Embedder, settings: CropSettings | None = None) -> None:
        if not callable(embedder):
            raise ValueError(f"embedder must be callable (crops -> (N, D) array), got {type(embedder).__name__}")
        self.embedder = embedder
        self.settings = settings or CropSettings()
        self.dim: int | None = None
        self.crops_embedded = 0

    def embed(self, frame: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crops, valid = crop_boxes(frame, boxes, self.settings.min_side)
        count = valid.size
        if not crops:
            return np.full((count, self.dim or 0), np.nan, dtype=np.float32), valid
        raw = np.asarray(self.embedder(crops), dtype=np.float32)
        if raw.ndim != 2 or raw.shape[0] != len(crops):
            raise ValueError(f"the embedder must return an ({len(crops)}, D) array for {len(crops)} crops, "
                             f"got shape {raw.shape}")
        if self.dim is None:
            self.dim = raw.shape[1]
        elif raw.shape[1] != self.dim:
            raise ValueError(f"the embedder returned {raw.shape[1]}-d embeddings after {self.dim}-d ones")
        self.crops_embedded += len(crops)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        if not (np.isfinite(raw).all() and (norms > 0).all()):
            raise ValueError("the embedder returned a zero or non-finite embedding")
        out = np.full((count, self.dim), np.nan, dtype=np.float32)
        out[valid] = raw / norms
        return out, valid
