"""``load_detector``: zoo name or weights file -> Detector on the torch or onnxruntime backend.

Accepted sources: a zoo name (weights looked up in / downloaded to the cache dir), or a local path to
an official YOLOX ``.pth`` / ByteTrack ``.pth.tar`` / YOLOv5 ``.pt`` / BN-folded YOLOX ``.onnx`` export,
or an int8track-quantized ``.onnx`` (metadata key ``int8track_spec``; ORT only, ``model=None``).
The architecture and conventions come from ``spec`` (a ModelSpec or zoo name) when given, else from
a zoo name equal to the file's stem, else from the weights themselves (1-class YOLOX = ByteTrack
conventions, 80-class = official YOLOX conventions).
Every torch model is returned in folded form (BatchNorm folded into conv biases), fp32, eval.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from torch import nn

from .checkpoints import (
    YOLOX_WIDTH_TO_VARIANT,
    load_state_strict,
    read_torch_checkpoint,
    yolov5_checkpoint,
    yolox_arch_of_state,
    yolox_state_dict,
)
from .detector import Detector, Runner
from .input_size import InputSizeChoice, resolve_input_size
from .layers import fuse_conv_bn
from .onnx_import import (
    conv_weights_in_graph_order,
    load_onnx_weights,
    onnx_input_size,
    onnx_output_channels,
    read_onnx,
)
from .runtime import OrtRunner, TorchRunner, cached_onnx, create_session, export_onnx
from .spec import COCO80, SPEC_METADATA_KEY, ModelSpec
from .yolov5 import YOLOv5, activation_name, variant_of_yaml, yolov5_yaml
from .yolox import YOLOX
from .zoo import ZOO, cache_dir, sha256_of, zoo_spec, zoo_weights

BACKENDS = ("torch", "onnxruntime")
#: Part of the exported-ONNX cache key: bump when the models' graph or raw output layout changes.
EXPORT_FORMAT = 1


def load_detector(source: str | Path, backend: str = "torch", num_threads: int | None = None,
                  conf_thresh: float | None = None, nms_thresh: float | None = None,
                  classes: list[int] | None = None, spec: ModelSpec | str | None = None,
                  imgsz: InputSizeChoice | str | Sequence[int] | None = None,
                  frame_shape: Sequence[int] | None = None) -> Detector:
    """Build a Detector from a zoo name or weights file (see module doc). None thresholds = spec defaults.

    ``imgsz`` sets the input size: None or ``"native"`` the model's own, an (h, w) pair or ``"HxW"`` exactly
    that, ``"fitted"`` or ``"N"`` (longer side) for frames of ``frame_shape`` (see ``detectors.input_size``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}, expected one of {BACKENDS}")
    choice = _input_size_choice(imgsz)
    declared = zoo_spec(spec) if isinstance(spec, str) else spec
    path = _resolve(source)
    if declared is None and _stem(path) in ZOO:
        declared = zoo_spec(_stem(path))
    options: dict[str, Any] = {"conf_thresh": conf_thresh, "nms_thresh": nms_thresh, "classes": classes}

    if path.suffix == ".onnx":
        proto = read_onnx(path)
        stored = {p.key: p.value for p in proto.metadata_props}.get(SPEC_METADATA_KEY)
        if stored is not None:
            saved_spec = ModelSpec.from_dict(json.loads(stored))
            detector = Detector(saved_spec, OrtRunner(create_session(path, num_threads)), model=None, **options)
            return detector.with_input_size(resolve_input_size(saved_spec, choice, frame_shape)[0])
        model, resolved = _model_from_onnx(proto, path, declared)
    elif path.suffix == ".pt":
        model, resolved = _model_from_yolov5_pt(path, declared)
    elif path.name.endswith((".pth", ".pth.tar", ".tar")):
        model, resolved = _model_from_yolox_pth(path, declared)
    else:
        raise ValueError(f"{path}: unsupported weights format {path.suffix!r} (expected .pth, .pth.tar, .pt or .onnx)")

    model = fuse_conv_bn(model).float().eval()
    factory = RunnerBuilder(backend, num_threads, path)
    size = resolve_input_size(resolved, choice, frame_shape)[0]
    if backend == "onnxruntime" and path.suffix == ".onnx" and size == resolved.input_size:
        runner: Runner = OrtRunner(create_session(path, num_threads))  # the file itself, at its own size
    else:
        resolved = resolved.replace(input_size=list(size))
        runner = factory(model, resolved)
    return Detector(resolved, runner, model=model, runner_factory=factory, **options)


@dataclass(frozen=True)
class RunnerBuilder:
    """The runner of a loaded float model at any input size: the model itself (torch) or an ORT session on its
    export at that size, cached on disk by weights hash and size (``onnxruntime``)."""

    backend: str
    num_threads: int | None
    weights: Path

    def __call__(self, model: nn.Module, spec: ModelSpec) -> Runner:
        if self.backend == "torch":
            return TorchRunner(model, self.num_threads)
        return OrtRunner(create_session(_exported_onnx(model, spec, self.weights), self.num_threads))


def _input_size_choice(imgsz: InputSizeChoice | str | Sequence[int] | None) -> InputSizeChoice:
    if imgsz is None:
        return InputSizeChoice("native")
    if isinstance(imgsz, InputSizeChoice):
        return imgsz
    if isinstance(imgsz, str):
        return InputSizeChoice.parse(imgsz)
    return InputSizeChoice("exact", tuple(int(v) for v in imgsz))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".pth.tar", ".pth", ".tar", ".pt", ".onnx"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _resolve(source: str | Path) -> Path:
    """A zoo name -> cached (or downloaded) weights; anything else must be an existing file."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if isinstance(source, str) and source in ZOO:
        return zoo_weights(zoo_spec(source))
    if path.exists():
        raise ValueError(f"{path} is not a file")
    hint = "" if any(c in str(source) for c in "/\\.") else f"; zoo names: {', '.join(sorted(ZOO))}"
    raise FileNotFoundError(f"no weights file or zoo model named {source!r}{hint}")


def _yolox_spec_for(variant: str, num_classes: int, name: str, declared: ModelSpec | None) -> ModelSpec:
    """The declared spec, or the zoo spec matching the weights (ByteTrack for 1 class, YOLOX for 80)."""
    if declared is not None:
        return declared
    zoo_name = f"bytetrack_{variant}_mot17" if num_classes == 1 else f"yolox_{variant}"
    base = zoo_spec(zoo_name)
    names = base.class_names if num_classes == base.num_classes else [f"class{i}" for i in range(num_classes)]
    return base.replace(name=name, num_classes=num_classes, class_names=names, url=None, sha256=None)


def _model_from_yolox_pth(path: Path, declared: ModelSpec | None) -> tuple[nn.Module, ModelSpec]:
    state = yolox_state_dict(read_torch_checkpoint(path), path)
    if declared is not None:
        variant, num_classes = declared.variant, declared.num_classes
    else:
        variant, num_classes = yolox_arch_of_state(state, path)
    spec = _yolox_spec_for(variant, num_classes, _stem(path), declared)
    _require_family(spec, "yolox", path)
    model = YOLOX(spec.variant, spec.num_classes, act=spec.activation)
    load_state_strict(model, state, path)
    return model, spec


def _model_from_onnx(proto: onnx.ModelProto, path: Path, declared: ModelSpec | None) -> tuple[nn.Module, ModelSpec]:
    """Folded YOLOX whose conv weights are copied from a BN-folded official ONNX export."""
    input_size = onnx_input_size(proto)
    num_classes = onnx_output_channels(proto) - 5
    variant = declared.variant if declared is not None else _yolox_variant_of_onnx(proto, path)
    spec = _yolox_spec_for(variant, num_classes, _stem(path), declared).replace(input_size=list(input_size))
    _require_family(spec, "yolox", path)
    if spec.num_classes != num_classes:
        raise ValueError(f"{path}: ONNX output has {num_classes} classes, spec {spec.name} expects {spec.num_classes}")
    model = fuse_conv_bn(YOLOX(spec.variant, spec.num_classes, act=spec.activation)).eval()
    load_onnx_weights(model, proto, path)
    return model, spec


def _yolox_variant_of_onnx(proto: onnx.ModelProto, path: Path) -> str:
    convs = conv_weights_in_graph_order(proto)
    if any(w.shape[1] == 1 and w.shape[0] > 1 for _, w, _ in convs):
        return "nano"
    width = convs[0][1].shape[0]
    if width not in YOLOX_WIDTH_TO_VARIANT:
        raise ValueError(f"{path}: first conv width {width} matches no YOLOX variant")
    return YOLOX_WIDTH_TO_VARIANT[width]


def _model_from_yolov5_pt(path: Path, declared: ModelSpec | None) -> tuple[nn.Module, ModelSpec]:
    ckpt = yolov5_checkpoint(path)
    cfg = dict(ckpt["yaml"])
    cfg.setdefault("activation", activation_name(ckpt["activation"]))
    if declared is not None:
        _require_family(declared, "yolov5", path)
        cfg = yolov5_yaml(declared.variant, declared.num_classes, declared.activation)
        spec = declared
    else:
        num_classes = int(cfg["nc"])
        names = ckpt["names"] if ckpt["names"] and len(ckpt["names"]) == num_classes else (
            list(COCO80) if num_classes == 80 else [f"class{i}" for i in range(num_classes)])
        base = ZOO["yolov5n"]
        spec = base.replace(name=_stem(path), variant=variant_of_yaml(cfg), num_classes=num_classes,
                            class_names=names, anchors=[list(map(float, a)) for a in cfg["anchors"]],
                            activation=activation_name(cfg.get("activation")), url=None, sha256=None)
    model = YOLOv5(cfg)
    load_state_strict(model, ckpt["state_dict"], path)
    return model, spec


def _require_family(spec: ModelSpec, family: str, path: Path) -> None:
    if spec.family != family:
        raise ValueError(f"{path}: spec {spec.name} is a {spec.family} model, the file holds a {family} model")


def _exported_onnx(model: nn.Module, spec: ModelSpec, weights: Path) -> Path:
    """Our model exported to ONNX, cached by weights hash + input size (second loads skip the export)."""
    h, w = spec.input_size
    key = f"{spec.name}-{sha256_of(weights)[:16]}-{h}x{w}-{spec.activation}-v{EXPORT_FORMAT}"
    target = cache_dir() / "onnx" / f"{key}.onnx"
    return cached_onnx(target, lambda: export_onnx(model, spec.input_size))

