"""`quantize` command line program: an int8 model made once per camera and reused.

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

from int8track.apps.cli.model_options import FLOOR_HELP, add_int8_arguments, quant_config_from_args
from int8track.apps.errors import EXIT_USAGE, UserError, fail
from int8track.apps.models.cache import speed_table_root
from int8track.apps.models.request import class_ids_from_spec
from int8track.detectors import load_detector
from int8track.files import write_text_atomically
from int8track.frames import load_frames
from int8track.quant import quantize_detector


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
    try:
        if not args.weights.is_file():
            raise FileNotFoundError(f"{args.weights}: weights file not found")
        if not Path(args.calib).exists():
            raise FileNotFoundError(f"{args.calib}: calibration source not found")
        config = quant_config_from_args(args)  # a bad option fails here, before any model is loaded
        detector = load_detector(str(args.weights), backend="onnxruntime", num_threads=args.threads,
                                 conf_thresh=args.conf, nms_thresh=args.nms)
        detector = detector.with_classes(class_ids_from_spec(args.classes, detector.spec.class_names))
        frames = load_frames(args.calib, args.calib_frames, label="calibration source")
        qdet = quantize_detector(detector, frames, config, num_threads=args.threads, progress=not args.quiet,
                                 speed_table=speed_table_root())
        output = args.output or args.weights.with_name(f"{args.weights.stem}_int8.onnx")
        qdet.save(output)
    except (UserError, OSError, ValueError) as exc:
        return fail("quantize", exc, EXIT_USAGE)
    report = qdet.quant_info
    for line in report.summary():
        print(f"quantize: int8: {line}", file=sys.stderr)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(args.report, json.dumps(report.to_dict(), indent=1, default=str) + "\n")
        print(f"wrote {args.report}")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
