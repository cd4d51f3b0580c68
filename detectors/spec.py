"""ModelSpec: everything needed to run a detector besides its weights (JSON-serialisable)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

FAMILIES = ("yolox", "yolov5")
#: ONNX ``metadata_props`` key holding a ModelSpec as JSON (int8 models saved by ``quant``, loaded back here).
SPEC_METADATA_KEY = "int8track_spec"

#: Preprocessing conventions (see ``detectors.preprocess``):
#: "yolox"          top-left letterbox, pad 114, BGR, 0..255 (current official YOLOX weights)
#: "yolox_legacy"   top-left letterbox, pad 114, RGB, /255, ImageNet mean/std (legacy YOLOX, all ByteTrack models)
#: "yolov5"         centred letterbox, pad 114, RGB, /255
PREPROCESSINGS = ("yolox", "yolox_legacy", "yolov5")

COCO80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]


@dataclass
class ModelSpec:
    """Architecture + input convention + output decoding parameters of one detector.

    ``variant`` is the size (``nano``, ``tiny``, ``s`` ... for YOLOX; ``n`` ... ``x`` for YOLOv5).
    ``anchors`` (YOLOv5 only) are per-level lists of (w, h) pixel pairs; ``strides`` the output strides.
    ``activation`` is the conv activation the model was trained with (YOLOv5 lets it vary).
    """

    name: str
    family: str
    variant: str
    num_classes: int
    input_size: tuple[int, int]  # (h, w)
    preprocessing: str
    class_names: list[str]
    conf_thresh: float = 0.1
    nms_thresh: float = 0.65
    strides: tuple[int, ...] = (8, 16, 32)
    anchors: list[list[float]] | None = None
    activation: str = "silu"
    url: str | None = None
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"ModelSpec {self.name!r}: unknown family {self.family!r}, expected one of {FAMILIES}")
        if self.preprocessing not in PREPROCESSINGS:
            raise ValueError(
                f"ModelSpec {self.name!r}: unknown preprocessing {self.preprocessing!r}, "
                f"expected one of {PREPROCESSINGS}"
            )
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"ModelSpec {self.name!r}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.strides = tuple(int(s) for s in self.strides)
        if any(side % max(self.strides) for side in self.input_size):
            raise ValueError(f"ModelSpec {self.name!r}: input size {self.input_size} "
                             f"not a multiple of {max(self.strides)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        out = asdict(self)
        out["input_size"] = list(self.input_size)
        out["strides"] = list(self.strides)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; unknown keys raise a ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ModelSpec.from_dict: unknown keys {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (validated again)."""
        return ModelSpec.from_dict({**self.to_dict(), **changes})
