"""The detector options shared by `track` and `quantize` (model, input size, int8 calibration and floor), and
the typed requests they become."""
from __future__ import annotations

import argparse

from int8track.apps.cli.arg_types import checked_number
from int8track.apps.models.request import CalibrationRequest, ModelRequest
from int8track.detectors.input_size import InputSizeChoice
from int8track.quant.config import DEFAULT_NUM_FRAMES, QuantConfig, held_out_count

FLOOR_HELP = ("every int8 model must agree with fp32 on calibration frames held out from calibrating, at the "
              "tracker's high (0.5) and low (0.1) score thresholds, at least as well as fp32 agrees with itself on "
              "the same frames re-encoded as JPEG (--int8-floor-jpeg quality); plans that miss it are rejected and "
              "more layers kept float, all float as the last resort")

IMGSZ_HELP = ("detector input size: 'fitted' (default: the model's native scale for the source's frames, padding "
              "trimmed to the stride), 'native' (the model's own size, e.g. 608x1088), N (longer side N pixels, "
              "the frames' aspect) or HxW (exactly that); sides must be multiples of the model's stride (32)")


def add_imgsz_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--imgsz`` (parsed into an :class:`InputSizeChoice`; checked against the model's stride later)."""
    parser.add_argument("--imgsz", type=_imgsz, default=InputSizeChoice("fitted"), metavar="SIZE", help=IMGSZ_HELP)


def add_int8_arguments(parser: argparse.ArgumentParser, calib_required: bool = False) -> None:
    """The calibration and accuracy-floor options of ``track --int8`` and ``quantize``."""
    parser.add_argument("--calib", type=str, required=calib_required,
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


def quant_config_from_args(args: argparse.Namespace) -> QuantConfig:
    """The ``QuantConfig`` the options ask for (frames are read by the caller, so ``num_frames`` is None)."""
    held = held_out_count(args.calib_frames)
    return QuantConfig(observer=args.int8_observer, target_agreement=args.int8_target,
                       floor_jpeg_quality=args.int8_floor_jpeg, num_frames=None, held_out_frames=held,
                       ranking="full" if args.int8_target is not None else "local")


def model_request_from_args(args: argparse.Namespace) -> ModelRequest:
    """``track``'s detector options as a :class:`ModelRequest` (int8 only with ``--int8``)."""
    int8 = None
    if args.int8:
        int8 = CalibrationRequest(quant=quant_config_from_args(args), source=args.calib, frames=args.calib_frames,
                                  refresh=args.recalibrate)
    return ModelRequest(model=args.model, weights=args.weights, classes=args.classes, conf=args.conf, nms=args.nms,
                        imgsz=args.imgsz, threads=args.threads, int8=int8)


def _imgsz(text: str) -> InputSizeChoice:
    try:
        return InputSizeChoice.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_positive_int = checked_number(int, lambda v: v >= 2, "{value}: need at least 2 frames (calibration and held-out)",
                               "a whole number")
_quality = checked_number(int, lambda v: 1 <= v <= 100, "{value} is not a JPEG quality in [1, 100]", "a JPEG quality")
_agreement = checked_number(float, lambda v: 0.0 < v <= 1.0, "{text} is not an F1 in (0, 1]")  # --int8-target
