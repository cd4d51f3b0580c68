"""Reading official checkpoints into state dicts, without executing pickled code, and strict loading.

* YOLOX ``.pth`` (``{"model": state_dict, ...}``) and ByteTrack ``.pth.tar`` (same, more keys).
* YOLOv5 ``.pt``: a pickled checkpoint holding an FP16 ``models.yolo.Model``; unpickled with
  :mod:`detectors.safe_pickle` (stubs instead of YOLOv5 classes) and its module tree walked into a
  state dict (``model.0.conv.weight`` ...), plus its yaml dict, class names and anchors.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from . import safe_pickle

YOLOX_STEM_KEY = "backbone.backbone.stem.conv.conv.weight"
YOLOX_DEPTHWISE_KEY = "backbone.backbone.dark2.0.dconv.conv.weight"
YOLOX_CLS_KEY = "head.cls_preds.0.weight"
#: stem conv output channels (int(64 * width)) -> variant; nano is told apart by its depthwise convs.
YOLOX_WIDTH_TO_VARIANT = {24: "tiny", 32: "s", 48: "m", 64: "l", 80: "x"}


def read_torch_checkpoint(path: str | Path) -> Any:
    """``torch.load`` through the restricted unpickler; unreadable/truncated files: ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, TypeError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: not a readable torch checkpoint ({exc})") from exc


def yolox_state_dict(checkpoint: Any, source: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of an official YOLOX/ByteTrack checkpoint (``ckpt["model"]`` or the dict itself)."""
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: expected a YOLOX checkpoint {{'model': state_dict}}, "
                         f"got {type(checkpoint).__name__}")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def yolox_arch_of_state(state: dict[str, torch.Tensor], source: str | Path) -> tuple[str, int]:
    """(variant, num_classes) of a YOLOX state dict, read from the stem width and the class conv."""
    if YOLOX_STEM_KEY not in state or YOLOX_CLS_KEY not in state:
        raise ValueError(f"{source}: not a YOLOX state dict (no {YOLOX_STEM_KEY!r} / {YOLOX_CLS_KEY!r})")
    width = state[YOLOX_STEM_KEY].shape[0]
    variant = "nano" if YOLOX_DEPTHWISE_KEY in state else YOLOX_WIDTH_TO_VARIANT.get(width)
    if variant is None:
        raise ValueError(f"{source}: YOLOX stem width {width} matches no official variant")
    return variant, int(state[YOLOX_CLS_KEY].shape[0])


def stub_state_dict(module: safe_pickle.Stub, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a stubbed ``nn.Module`` tree, keyed like ``state_dict()``."""
    state: dict[str, torch.Tensor] = {}
    non_persistent = module.__dict__.get("_non_persistent_buffers_set", set())
    for name, tensor in module.__dict__.get("_parameters", {}).items():
        if tensor is not None:
            state[prefix + name] = tensor.detach().float()
    for name, tensor in module.__dict__.get("_buffers", {}).items():
        if tensor is not None and name not in non_persistent:
            state[prefix + name] = tensor.float() if tensor.is_floating_point() else tensor
    for name, child in module.__dict__.get("_modules", {}).items():
        if child is not None:
            state.update(stub_state_dict(child, f"{prefix}{name}."))
    return state


def yolov5_checkpoint(path: str | Path) -> dict[str, Any]:
    """{state_dict, yaml, names, activation class name} of an official YOLOv5 ``.pt`` checkpoint."""
    checkpoint = read_torch_checkpoint(path)
    model = (checkpoint.get("ema") or checkpoint.get("model")) if isinstance(checkpoint, dict) else None
    if not isinstance(model, safe_pickle.Stub) or not isinstance(getattr(model, "yaml", None), dict):
        raise ValueError(f"{path}: not a YOLOv5 checkpoint (no 'model' object with a yaml dict)")
    state = stub_state_dict(model)
    names = model.__dict__.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    tree = cast(Any, model)  # a Stub's attributes are its unpickled state (checked above: a yaml dict)
    first_conv = tree._modules["model"]._modules["0"]
    return {"state_dict": state, "yaml": dict(tree.yaml), "names": list(names) if names else None,
            "activation": type(first_conv._modules["act"]).__name__}


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict(strict=True)``; on failure an error listing missing/unexpected/mis-shaped keys (counts)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            problems.append(f"{len(items)} {label} keys (e.g. {', '.join(items[:3])})")
    if problems:
        raise ValueError(f"{source}: checkpoint does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
