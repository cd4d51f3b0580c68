"""Restricted unpickling of torch checkpoints that reference foreign classes (YOLOv5 ``.pt``).

Used as ``torch.load(path, weights_only=False, pickle_module=detectors.safe_pickle)``. Only tensor
rebuilding functions and plain containers resolve to real objects; every other global reference
(``models.yolo.Model``, ``torch.nn.Conv2d``, numpy helpers ...) becomes an inert :class:`Stub` that just
records its constructor arguments and pickled state. No code from the checkpoint ever runs.
"""
from __future__ import annotations

import collections
import pickle
from typing import Any

import torch
import torch._utils

#: Globals resolved to the real object: tensor/parameter rebuilding and harmless containers.
ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch", "Size"): torch.Size,
}
ALLOWED.update({("torch", name): getattr(torch, name) for name in ("float16", "float32", "float64", "bfloat16",
                                                                      "int64", "int32", "uint8", "bool")})


class Stub:
    """Inert stand-in for a pickled object of a class we refuse to import; keeps args and state."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = object.__new__(cls)
        obj.__dict__["_stub_args"] = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_stub_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_stub_state"] = state

    def __repr__(self) -> str:
        return f"<Stub {self.qualname}>"


_STUB_CLASSES: dict[tuple[str, str], type[Stub]] = {}


def stub_class(module: str, name: str) -> type[Stub]:
    """One Stub subclass per foreign global, named after it (so callers can check ``qualname``)."""
    key = (module, name)
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(name, (Stub,), {"qualname": f"{module}.{name}"})
    return _STUB_CLASSES[key]


class Unpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` never imports: allowed globals or a :class:`Stub` subclass."""

    def find_class(self, module: str, name: str) -> Any:
        return ALLOWED.get((module, name)) or stub_class(module, name)


def load(file: Any, **kwargs: Any) -> Any:
    return Unpickler(file, **kwargs).load()

