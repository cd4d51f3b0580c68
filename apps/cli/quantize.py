"""`quantize` command line program, and the int8 options and model loading that `track --int8` shares with it.

``quantize WEIGHTS --calib SOURCE -o model_int8.onnx`` calibrates once (on a video, image folder or MOT
sequence of the camera), checks the int8 model against the accuracy floor, prints what it decided and writes the
model; ``track OTHER_VIDEO --weights model_int8.onnx`` then runs it with no calibration. No labels are needed.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from int8track.apps.cli.arg_types import checked_number
from int8track.quant.config import DEFAULT_NUM_FRAMES, QuantConfig, held_out_count

EXIT_USAGE = 2

FLOOR_HELP = ("every int8 model must agree with fp32 on calibration frames held out from calibrating, at the "
              "tracker's high (0.5) and low (0.1) score thresholds, at least as well as fp32 agrees with itself on "
              "the same frames re-encoded as JPEG (--int8-floor-jpeg quality); plans that miss it are rejected and "
              "more layers kept float, all float as the last resort")


def add_int8_arguments(parser: argparse.ArgumentParser, calib_required: bool = False) -> None:
    """The calibration and accuracy-floor options of ``track --int8`` and ``quantize``."""
    parser.add_argument("--calib", type=Path, required=calib_required,
                        help="calibrate on this video, image folder or MOT sequence" +
                             ("" if calib_required else " instead of the source"))
    parser.add_argument("--calib-frames", type=_positive_int, default=DEFAULT_NUM_FRAMES,
                        help=f"frames read evenly spaced over the calibration source; half are held out to "
                             f"check the floor (default {DEFAULT_NUM_FRAMES})")
    parser.add_argument("--int8-target", type=_agreement, metavar="F1",
                        help="explicit accuracy floor: detection F1 vs fp32 at both thresholds (e.g. 0.95) instead "
                             "of the JPEG floor; " + FLOOR_HELP)
    parser.add_argument("--int8-floor-jpeg", type=_quality, default=QuantConfig.floor_jpeg_quality, metavar="Q",
                        help="JPEG quality of the default floor (default %(default)s; lower is a looser floor)")
    parser.add_argument("--int8-observer", default=QuantConfig.observer,
                        help="range observer: auto (percentile or minmax, whichever agrees best), or a name of "
                             "int8track.quant.observers (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> QuantConfig:
    """The ``QuantConfig`` the options ask for (frames are read by the caller, so ``num_frames`` is None)."""
    held = held_out_count(args.calib_frames)
    return QuantConfig(observer=args.int8_observer, target_agreement=args.int8_target,
                       floor_jpeg_quality=args.int8_floor_jpeg, num_frames=None, held_out_frames=held,
                       ranking="full" if args.int8_target is not None else "local")


def summary_dict(report: dict[str, Any]) -> dict[str, Any]:
    """The int8 decisions worth keeping beside the timings (a subset of ``quant.QuantReport``)."""
    keys = ("observer", "observer_scores", "floor", "agreement", "quantized_convs", "speed_ms", "speed_choice",
            "int8_faster", "accepted", "all_float", "rejected", "calibration_frames", "eval_frames", "seconds",
            "cpu_seconds", "frames_per_second", "extra")
    out = {k: report[k] for k in keys if k in report}
    out["float_convs"] = len(report.get("float_layers", []))
    out["calibration_seconds"] = sum(report.get("seconds", {}).values())
    return out


def print_summary(report: dict[str, Any], prog: str) -> None:
    """The report's summary lines on stderr."""
    from int8track.quant.report import QuantReport

    if not report:
        print(f"{prog}: int8 model without a quantization report", file=sys.stderr)
        return
    for line in QuantReport.from_dict(report).summary():
        print(f"{prog}: int8: {line}", file=sys.stderr)


def read_calibration_frames(location: str | Path, count: int) -> list[np.ndarray]:
    """``count`` frames evenly spaced over a video, image folder or MOT sequence."""
    from int8track.quant.calibration import load_frames

    return load_frames(location, num=count)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantize",
        description="Make an int8 ONNX model of a YOLOX/YOLOv5 detector, calibrated on frames of one camera; "
                    "`track VIDEO --weights OUT` then runs it without calibrating. " + FLOOR_HELP + ".")
    parser.add_argument("weights", type=Path, help="weights file (.onnx, .pth, .pt)")
    parser.add_argument("-o", "--output", type=Path, help="int8 ONNX file to write (default WEIGHTS_int8.onnx)")
    add_int8_arguments(parser, calib_required=True)
    parser.add_argument("--conf", type=float, help="detector score threshold (default: the model's)")
    parser.add_argument("--nms", type=float, help="detector NMS IoU threshold (default: the model's)")
    parser.add_argument("--classes", default="person",
                        help="comma-separated class names or ids the floor is measured on (default person)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: its choice)")
    parser.add_argument("--report", type=Path, help="also write the full quantization report (JSON) here")
    parser.add_argument("--quiet", action="store_true", help="do not print the steps")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from int8track.apps.cli.track import UserError, _class_ids
    from int8track.apps.models.cache import speed_table_root
    from int8track.detectors import load_detector
    from int8track.quant import quantize_detector

    try:
        if not args.weights.is_file():
            raise FileNotFoundError(f"{args.weights}: weights file not found")
        if not args.calib.exists():
            raise FileNotFoundError(f"{args.calib}: calibration source not found")
        config = config_from_args(args)  # a bad option fails here, before any model is loaded
        detector = load_detector(str(args.weights), backend="onnxruntime", num_threads=args.threads,
                                 conf_thresh=args.conf, nms_thresh=args.nms)
        detector = detector.with_classes(_class_ids(args.classes, detector.spec.class_names))
        frames = read_calibration_frames(args.calib, args.calib_frames)
        qdet = quantize_detector(detector, frames, config, num_threads=args.threads, progress=not args.quiet,
                                 speed_table=speed_table_root())
        output = args.output or args.weights.with_name(f"{args.weights.stem}_int8.onnx")
        qdet.save(output)
    except (UserError, OSError, ValueError) as exc:
        print(f"quantize: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = qdet.quant_info.to_dict()
    print_summary(report, "quantize")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {args.report}")
    print(f"wrote {output}")
    return 0


_positive_int = checked_number(int, lambda v: v >= 2, "{value}: need at least 2 frames (calibration and held-out)",
                               "a whole number")
_quality = checked_number(int, lambda v: 1 <= v <= 100, "{value} is not a JPEG quality in [1, 100]", "a JPEG quality")
_agreement = checked_number(float, lambda v: 0.0 < v <= 1.0, "{text} is not an F1 in (0, 1]")  # --int8-target


if __name__ == "__main__":
    raise SystemExit(main())
