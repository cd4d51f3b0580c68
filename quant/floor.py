"""The accuracy floor: int8 detections must agree with fp32 at least as well as fp32 agrees with itself on the
same frames re-encoded as JPEG (a perturbation no user would notice), at both of the tracker's thresholds.

Candidates are scored as deployed: the QDQ graph in ONNX Runtime on held-out frames, against the float graph
the int8 model was made from.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from int8track.detectors.detector import Detector
from int8track.detectors.runtime import OrtRunner, create_session
from int8track.quant.agreement import detection_f1
from int8track.quant.config import HIGH_THRESH, LOW_THRESH


@dataclass(frozen=True)
class Agreement2:
    """Detection F1 against fp32 counting boxes scored >= the tracker's high and >= its low threshold."""

    high: float
    low: float

    def __str__(self) -> str:
        return f"F1@{HIGH_THRESH} {self.high:.3f}, F1@{LOW_THRESH} {self.low:.3f}"


@dataclass(frozen=True)
class Floor:
    """The agreement every accepted int8 plan must reach, and where it comes from."""

    high: float
    low: float
    source: str

    def met_by(self, agreement: Agreement2) -> bool:
        return agreement.high >= self.high and agreement.low >= self.low


def agreement(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> Agreement2:
    """F1 of ``candidate`` against ``reference`` boxes (N,6) above each tracker threshold."""
    def above(boxes: Sequence[np.ndarray], thresh: float) -> list[np.ndarray]:
        return [b[b[:, 4] >= thresh] for b in boxes]

    return Agreement2(detection_f1(above(reference, HIGH_THRESH), above(candidate, HIGH_THRESH)),
                      detection_f1(above(reference, LOW_THRESH), above(candidate, LOW_THRESH)))


def jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    """``frame`` encoded as JPEG at ``quality`` and decoded again."""
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("cannot JPEG-encode a held-out frame")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError("cannot decode a JPEG-encoded held-out frame")
    return decoded


class HeldOut:
    """Held-out frames, the fp32 graph's detections on them, and scoring of other graphs against those.

    Boxes are decoded down to the tracker's low threshold (or the detector's own, if lower) with the detector's
    NMS and classes, so the score is about what the tracker is given.
    """

    def __init__(self, detector: Detector, fp32_model: bytes, frames: Sequence[np.ndarray],
                 num_threads: int | None = None) -> None:
        if not frames:
            raise ValueError("the accuracy floor needs held-out frames")
        self.frames = list(frames)
        self.num_threads = num_threads
        self._spec = detector.spec
        self._conf = min(detector.conf_thresh, LOW_THRESH)
        self._nms, self._classes = detector.nms_thresh, detector.classes
        self.fp32_model = fp32_model
        self.reference = self.detect(fp32_model)

    def detect(self, model: bytes, frames: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Detections of the ONNX ``model`` on the held-out frames (or ``frames``)."""
        det = Detector(self._spec, OrtRunner(create_session(model, self.num_threads)), None, self._conf,
                       self._nms, self._classes)
        return [det(f) for f in (self.frames if frames is None else frames)]

    def score(self, model: bytes) -> Agreement2:
        """Agreement of ``model``'s detections with fp32's."""
        return agreement(self.reference, self.detect(model))

    def jpeg_floor(self, quality: int) -> Floor:
        """fp32 against fp32 on the frames re-encoded as JPEG ``quality``: the default floor."""
        noisy = agreement(self.reference, self.detect(self.fp32_model, [jpeg(f, quality) for f in self.frames]))
        return Floor(noisy.high, noisy.low, f"fp32 vs fp32 on JPEG q{quality}")
