"""YOLOv5 (v6.0+ layout: Conv, C3, Bottleneck, SPPF, Detect) built from the official model yaml dict.

Module/parameter names follow ultralytics/yolov5 (``model.0.conv.weight`` ... ``model.24.m.0.bias``,
``model.24.anchors``) so official state dicts load with ``strict=True``.

``forward`` returns the undecoded output (B, A, 5+C): ``sigmoid`` of every channel of every Detect
conv, rows ordered level -> anchor -> y -> x (the official Detect order). Grid/anchor decoding
(xy = (s*2 - 0.5 + grid) * stride, wh = (s*2)^2 * anchor) is done in float in ``detectors.postprocess``.
"""
from __future__ import annotations

import copy
import math
from typing import Any, cast

import torch
from torch import nn

from .layers import ConvBnAct

#: v6.0 backbone + head (yolov5n/s/m/l/x.yaml differ only in depth/width multiples).
V6_BACKBONE = [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
               [-1, 1, "Conv", [256, 3, 2]], [-1, 6, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]],
               [-1, 9, "C3", [512]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C3", [1024]],
               [-1, 1, "SPPF", [1024, 5]]]
V6_HEAD = [[-1, 1, "Conv", [512, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]],
           [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [256, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
           [[-1, 4], 1, "Concat", [1]], [-1, 3, "C3", [256, False]], [-1, 1, "Conv", [256, 3, 2]],
           [[-1, 14], 1, "Concat", [1]], [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [512, 3, 2]],
           [[-1, 10], 1, "Concat", [1]], [-1, 3, "C3", [1024, False]], [[17, 20, 23], 1, "Detect", ["nc", "anchors"]]]
V6_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
YOLOV5_VARIANTS = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


def yolov5_yaml(variant: str, num_classes: int = 80, activation: str | None = None) -> dict[str, Any]:
    """The official v6 model yaml dict for a variant (n, s, m, l, x)."""
    if variant not in YOLOV5_VARIANTS:
        raise ValueError(f"unknown YOLOv5 variant {variant!r}, expected one of {sorted(YOLOV5_VARIANTS)}")
    depth, width = YOLOV5_VARIANTS[variant]
    cfg = {"nc": num_classes, "depth_multiple": depth, "width_multiple": width, "anchors": copy.deepcopy(V6_ANCHORS),
           "backbone": copy.deepcopy(V6_BACKBONE), "head": copy.deepcopy(V6_HEAD)}
    if activation is not None:
        cfg["activation"] = activation
    return cfg


def variant_of_yaml(cfg: dict[str, Any]) -> str:
    """Name of the variant whose multiples match ``cfg`` ('custom' otherwise)."""
    multiples = (cfg.get("depth_multiple"), cfg.get("width_multiple"))
    return next((v for v, m in YOLOV5_VARIANTS.items() if m == multiples), "custom")


def activation_name(value: str | None) -> str:
    """Normalise a yaml ``activation`` entry (``nn.SiLU()``, ``nn.LeakyReLU(0.1)``, ``relu``) to our names."""
    if not value:
        return "silu"
    key = str(value).lower().removeprefix("nn.").split("(")[0]
    return {"leakyrelu": "lrelu"}.get(key, key)


class Conv(ConvBnAct):
    """YOLOv5 ``Conv``: conv (autopad k//2 unless given) -> BN -> activation."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: str = "silu") -> None:
        super().__init__(c1, c2, k, s, groups=g, act=act, padding=k // 2 if p is None else p)


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5, act: str = "silu") -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_, c2, 3, 1, g=g, act=act)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 act: str = "silu") -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c1, c_, 1, 1, act=act)
        self.cv3 = Conv(2 * c_, c2, 1, act=act)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0, act=act) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained k x k max pools."""

    def __init__(self, c1: int, c2: int, k: int = 5, act: str = "silu") -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_ * 4, c2, 1, 1, act=act)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Detect(nn.Module):
    """Per-level 1x1 convs; ``anchors`` buffer (nl, na, 2) in stride units, as in the official layer."""

    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int], strides: tuple[int, ...]) -> None:
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, len(anchors), len(anchors[0]) // 2
        stride = torch.tensor(strides, dtype=torch.float32)
        pixels = torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2)
        self.register_buffer("anchors", pixels / stride.view(-1, 1, 1))
        self.stride = stride
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for conv, x in zip(self.m, xs):
            y = conv(x)
            bs, _, ny, nx = y.shape
            y = y.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).reshape(bs, -1, self.no)
            out.append(y.sigmoid())
        return torch.cat(out, 1)


def _make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


class YOLOv5(nn.Module):
    """``model`` Sequential built from a yaml dict as the official ``parse_model`` does."""

    def __init__(self, cfg: dict[str, Any], num_classes: int | None = None,
                 strides: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__()
        self.yaml = copy.deepcopy(cfg)
        if num_classes is not None:
            self.yaml["nc"] = num_classes
        self.act = activation_name(self.yaml.get("activation"))
        self.model, self.save = self._parse(self.yaml, strides)

    def _parse(self, cfg: dict[str, Any], strides: tuple[int, ...]) -> tuple[nn.Sequential, set[int]]:
        nc, gd, gw = cfg["nc"], cfg["depth_multiple"], cfg["width_multiple"]
        anchors = cfg["anchors"]
        layers: list[nn.Module] = []
        save: set[int] = set()
        ch: list[int | None] = [3]  # output channels per layer; only Detect (the last layer) adds None
        module: nn.Module
        c2: int | None
        for i, (f, n, name, args) in enumerate(cfg["backbone"] + cfg["head"]):
            n = max(round(n * gd), 1) if n > 1 else n
            if name in ("Conv", "C3", "SPPF", "Bottleneck"):
                c1, c2 = cast(int, ch[f]), _make_divisible(args[0] * gw)
                rest = list(args[1:])
                if name == "C3":
                    # mypy cannot see that *rest (at most ``shortcut``) stops before ``act``
                    module = C3(c1, c2, n, *rest, act=self.act)  # type: ignore[misc]
                else:
                    cls = {"Conv": Conv, "SPPF": SPPF, "Bottleneck": Bottleneck}[name]
                    module = nn.Sequential(*(cls(c1 if j == 0 else c2, c2, *rest, act=self.act) for j in range(n))) \
                        if n > 1 else cls(c1, c2, *rest, act=self.act)
            elif name == "nn.Upsample":
                module, c2 = nn.Upsample(None, args[1], args[2]), ch[f]
            elif name == "Concat":
                module, c2 = Concat(args[0]), sum(cast(int, ch[x]) for x in f)
            elif name == "Detect":
                module = Detect(nc, anchors, cast("list[int]", [ch[x] for x in f]), strides)
                c2 = None
            else:
                raise ValueError(f"YOLOv5 yaml layer {i}: unsupported module {name!r}")
            module.i, module.f = i, f
            save.update(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
            layers.append(module)
            ch = ch[1:] if i == 0 else ch
            ch.append(c2)
        return nn.Sequential(*layers), save

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor | None] = []
        for module in self.model:
            f = cast("int | list[int]", module.f)  # set in _parse (torch stubs: Tensor | Module)
            inputs: torch.Tensor | list[torch.Tensor | None] | None = x
            if f != -1:
                inputs = outputs[f] if isinstance(f, int) else [x if j == -1 else outputs[j] for j in f]
            x = module(inputs)
            outputs.append(x if module.i in self.save else None)
        return x
