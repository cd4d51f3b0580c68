"""YOLOX (nano ... x) in PyTorch, module names as in Megvii-BaseDetection/YOLOX so official state dicts load strictly.

``forward`` returns the undecoded output of the official export with ``decode_in_inference=False``:
(B, A, 5 + C) with per level ``cat(reg, sigmoid(obj), sigmoid(cls))`` flattened over (y, x) and
concatenated over strides 8/16/32. Grid/stride decoding lives in ``detectors.postprocess``.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ConvBnAct

#: variant -> (depth multiplier, width multiplier, depthwise), from the official exps.
YOLOX_VARIANTS: dict[str, tuple[float, float, bool]] = {
    "nano": (0.33, 0.25, True),
    "tiny": (0.33, 0.375, False),
    "s": (0.33, 0.50, False),
    "m": (0.67, 0.75, False),
    "l": (1.0, 1.0, False),
    "x": (1.33, 1.25, False),
}


class BaseConv(ConvBnAct):
    """YOLOX ``BaseConv``: same-padded conv, BN, activation."""


class DWConv(nn.Module):
    """Depthwise conv (``dconv``) followed by pointwise conv (``pconv``)."""

    def __init__(self, c_in: int, c_out: int, ksize: int, stride: int = 1, act: str = "silu") -> None:
        super().__init__()
        self.dconv = BaseConv(c_in, c_in, ksize, stride, groups=c_in, act=act)
        self.pconv = BaseConv(c_in, c_out, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def _conv_class(depthwise: bool) -> type[nn.Module]:
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, expansion: float = 0.5,
                 depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        hidden = int(c_out * expansion)
        self.conv1 = BaseConv(c_in, hidden, 1, 1, act=act)
        self.conv2 = _conv_class(depthwise)(hidden, c_out, 3, 1, act=act)
        self.use_add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    """CSP bottleneck with 3 convs (YOLOv5's C3)."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True, expansion: float = 0.5,
                 depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        hidden = int(c_out * expansion)
        self.conv1 = BaseConv(c_in, hidden, 1, 1, act=act)
        self.conv2 = BaseConv(c_in, hidden, 1, 1, act=act)
        self.conv3 = BaseConv(2 * hidden, c_out, 1, 1, act=act)
        self.m = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut, 1.0, depthwise, act=act) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_1 = self.conv1(x)
        x_2 = self.conv2(x)
        return self.conv3(torch.cat((self.m(x_1), x_2), dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_sizes: tuple[int, ...] = (5, 9, 13), act: str = "silu") -> None:
        super().__init__()
        hidden = c_in // 2
        self.conv1 = BaseConv(c_in, hidden, 1, 1, act=act)
        self.m = nn.ModuleList([nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes])
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), c_out, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class Focus(nn.Module):
    """Space-to-depth (2x2 patches into channels, official order TL, BL, TR, BR), then a conv."""

    def __init__(self, c_in: int, c_out: int, ksize: int = 1, stride: int = 1, act: str = "silu") -> None:
        super().__init__()
        self.conv = BaseConv(c_in * 4, c_out, ksize, stride, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)
        return self.conv(x)


class CSPDarknet(nn.Module):
    def __init__(self, dep_mul: float, wid_mul: float, depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        conv = _conv_class(depthwise)
        base_ch = int(wid_mul * 64)
        base_depth = max(round(dep_mul * 3), 1)
        self.stem = Focus(3, base_ch, ksize=3, act=act)
        self.dark2 = nn.Sequential(conv(base_ch, base_ch * 2, 3, 2, act=act),
                                   CSPLayer(base_ch * 2, base_ch * 2, base_depth, depthwise=depthwise, act=act))
        self.dark3 = nn.Sequential(conv(base_ch * 2, base_ch * 4, 3, 2, act=act),
                                   CSPLayer(base_ch * 4, base_ch * 4, base_depth * 3, depthwise=depthwise, act=act))
        self.dark4 = nn.Sequential(conv(base_ch * 4, base_ch * 8, 3, 2, act=act),
                                   CSPLayer(base_ch * 8, base_ch * 8, base_depth * 3, depthwise=depthwise, act=act))
        self.dark5 = nn.Sequential(conv(base_ch * 8, base_ch * 16, 3, 2, act=act),
                                   SPPBottleneck(base_ch * 16, base_ch * 16, act=act),
                                   CSPLayer(base_ch * 16, base_ch * 16, base_depth, shortcut=False,
                                            depthwise=depthwise, act=act))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dark2(self.stem(x))
        dark3 = self.dark3(x)
        dark4 = self.dark4(dark3)
        return dark3, dark4, self.dark5(dark4)


class YOLOPAFPN(nn.Module):
    def __init__(self, depth: float, width: float, in_channels: tuple[int, int, int] = (256, 512, 1024),
                 depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        self.backbone = CSPDarknet(depth, width, depthwise=depthwise, act=act)
        conv = _conv_class(depthwise)
        c0, c1, c2 = (int(c * width) for c in in_channels)
        n = round(3 * depth)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c2, c1, 1, 1, act=act)
        self.C3_p4 = CSPLayer(2 * c1, c1, n, False, depthwise=depthwise, act=act)
        self.reduce_conv1 = BaseConv(c1, c0, 1, 1, act=act)
        self.C3_p3 = CSPLayer(2 * c0, c0, n, False, depthwise=depthwise, act=act)
        self.bu_conv2 = conv(c0, c0, 3, 2, act=act)
        self.C3_n3 = CSPLayer(2 * c0, c1, n, False, depthwise=depthwise, act=act)
        self.bu_conv1 = conv(c1, c1, 3, 2, act=act)
        self.C3_n4 = CSPLayer(2 * c1, c2, n, False, depthwise=depthwise, act=act)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x2], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0


class YOLOXHead(nn.Module):
    """Decoupled head; inference output only (training losses are not part of this project)."""

    def __init__(self, num_classes: int, width: float, in_channels: tuple[int, int, int] = (256, 512, 1024),
                 depthwise: bool = False, act: str = "silu") -> None:
        super().__init__()
        conv = _conv_class(depthwise)
        hidden = int(256 * width)
        self.num_classes = num_classes
        self.stems = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        self.obj_preds = nn.ModuleList()
        for c in in_channels:
            self.stems.append(BaseConv(int(c * width), hidden, 1, 1, act=act))
            for branch in (self.cls_convs, self.reg_convs):
                branch.append(nn.Sequential(conv(hidden, hidden, 3, 1, act=act), conv(hidden, hidden, 3, 1, act=act)))
            self.cls_preds.append(nn.Conv2d(hidden, num_classes, 1))
            self.reg_preds.append(nn.Conv2d(hidden, 4, 1))
            self.obj_preds.append(nn.Conv2d(hidden, 1, 1))

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        outputs = []
        for k, x in enumerate(features):
            x = self.stems[k](x)
            cls_output = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            reg_output = self.reg_preds[k](reg_feat)
            obj_output = self.obj_preds[k](reg_feat)
            outputs.append(torch.cat([reg_output, obj_output.sigmoid(), cls_output.sigmoid()], 1).flatten(start_dim=2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)


class YOLOX(nn.Module):
    """``backbone`` (YOLOPAFPN) + ``head`` (YOLOXHead); blob (B,3,H,W) -> raw (B, A, 5+C)."""

    def __init__(self, variant: str = "s", num_classes: int = 80, act: str = "silu") -> None:
        super().__init__()
        if variant not in YOLOX_VARIANTS:
            raise ValueError(f"unknown YOLOX variant {variant!r}, expected one of {sorted(YOLOX_VARIANTS)}")
        depth, width, depthwise = YOLOX_VARIANTS[variant]
        self.variant = variant
        self.backbone = YOLOPAFPN(depth, width, depthwise=depthwise, act=act)
        self.head = YOLOXHead(num_classes, width, depthwise=depthwise, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
