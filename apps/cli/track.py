"""`track` command line program: detect and track objects in a video, folder, MOT sequence, camera or stream.

Writes into the output folder: the annotated video, a MOTChallenge results file, the per-stage timing report
(JSON, CSV) and its plot, and prints the timing table at the end. ``--int8`` calibrates the detector on the
source's own frames (or ``--calib``'s) once and caches the int8 model for later runs on the same calibration
source (see ``apps.model_cache``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from int8track.apps.cli.quantize import add_int8_arguments, config_from_args, print_summary, summary_dict
from int8track.apps.cli.track_options import add_ecosystem_arguments, range_problem
from int8track.apps.cli.tracker_options import add_tracker_arguments, tracker_config_from_args
from int8track.apps.fleet.pool import add_fleet_arguments, fleet_main, fleet_requested
from int8track.apps.io.sources import FrameSource, ReadAhead, SourceError, open_source
from int8track.apps.models.cache import Int8ModelCache, resolve_weights, source_fingerprint
from int8track.apps.models.input_fit import PeekedSource, add_imgsz_arguments, fit_detector
from int8track.apps.pipeline.interrupt import StopOnSignal
from int8track.apps.pipeline.profiler import plot_reports
from int8track.apps.pipeline.progress import limit_tqdm_redraws
from int8track.apps.pipeline.run import OutputFilter, RunResult, run_tracking
from int8track.tracker import ByteTracker, TrackerConfig

DEFAULT_MODEL = "bytetrack_nano_mot17"
DEFAULT_TRACKER_FPS = 30.0  # when the source does not say (image folders), as in the official demo
EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


class UserError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    defaults_filter = OutputFilter()
    parser = argparse.ArgumentParser(
        prog="track",
        description="Track objects with a YOLOX/YOLOv5 detector (fp32 or int8, ONNX Runtime) and ByteTrack.",
        epilog="int8 model cache: --int8 keeps each calibrated model in $INT8TRACK_HOME/int8 (default "
               "~/.cache/int8track/int8), keyed by the weights, input size, settings and calibration source. "
               "A video file or folder is recognised by its full path, size and modification time (a folder by "
               "the count, sizes and times of its files), a camera or stream by its index or URL as typed. So "
               "another video, or the same one edited or moved, is calibrated anew; the same one reuses its "
               "model, and the program says which model it reuses and what it was calibrated on. Each model "
               "has a .json record beside it.",
    )
    parser.add_argument("source", nargs="*",
                        help="video file, image folder, MOT sequence folder, camera index or rtsp/http URL; several "
                             "sources, a folder of videos, a glob or @FILE (one source a line) run as a fleet")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", default=DEFAULT_MODEL, help=f"model zoo name (default {DEFAULT_MODEL})")
    model.add_argument("--weights", type=Path, help="weights file (.onnx, .pth, .pt) instead of a zoo name")
    parser.add_argument("--output-dir", type=Path, help="where to write outputs (default runs/track/<source name>)")
    parser.add_argument("--int8", action="store_true",
                        help="run the detector in int8 (calibrated once per calibration source, then cached)")
    add_int8_arguments(parser)
    parser.add_argument("--recalibrate", action="store_true",
                        help="quantize again even if a model calibrated on this source is cached (e.g. a camera "
                             "whose scene changed: live sources are known only by index or URL)")
    add_imgsz_arguments(parser)
    parser.add_argument("--conf", type=float, help="detector score threshold (default: the model's)")
    parser.add_argument("--nms", type=float, help="detector NMS IoU threshold (default: the model's)")
    parser.add_argument("--classes", default="person",
                        help="comma-separated class names or ids to track (default person)")
    add_tracker_arguments(parser, config_file=True)
    parser.add_argument("--min-box-area", type=float, default=defaults_filter.min_box_area,
                        help="tracks with a smaller box are not drawn or written (default %(default)s)")
    parser.add_argument("--aspect-ratio-thresh", type=float, default=defaults_filter.aspect_ratio_thresh,
                        help="tracks with width/height above this are not drawn or written (default %(default)s)")
    parser.add_argument("--fps", type=float, help="source frame rate, overriding what the source says")
    parser.add_argument("--threads", type=int, help="inference threads (default: ONNX Runtime's choice)")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--no-video", action="store_true", help="do not write the annotated video")
    parser.add_argument("--show", action="store_true", help="show the annotated frames in a window (needs a display)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ecosystem_arguments(parser)
    add_fleet_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (problem := range_problem(args)) is not None:
        return _fail(problem, EXIT_USAGE)
    limit_tqdm_redraws()  # calibration and download bars: one redraw per few seconds in a log
    if fleet_requested(args):
        return fleet_main(args)
    args.source = args.source[0]
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    try:
        tracker_config = tracker_config_from_args(args).replace(class_aware=args.class_aware)
        source = open_source(args.source, fps=args.fps, live=args.live)
    except (OSError, SourceError, ValueError) as exc:
        return _fail(exc, EXIT_USAGE)
    stop = StopOnSignal()
    try:
        source = PeekedSource(source)  # the first frame's shape sizes the detector's input
    except SourceError as exc:
        source.close()
        return _fail(exc, EXIT_FAILED)
    try:
        output_dir = _prepare_output_dir(args.output_dir or Path("runs") / "track" / source.info.name)
        detector, precision, extra_info = _load_detector(args, source)
        with stop:
            result = _run(args, tracker_config, source, detector, precision, output_dir, extra_info, stop)
            _write_report(result, output_dir, source.info.name, precision)
    except (UserError, OSError, ValueError) as exc:
        source.close()
        return _fail(exc, EXIT_USAGE)
    except KeyboardInterrupt:  # before tracking started, or a second signal: unfinished outputs are deleted
        source.close()
        when = "by a second signal" if stop.requested else "before tracking started"
        return _fail(f"interrupted {when}; outputs not finished are not written", EXIT_INTERRUPTED)
    if stop.exit_code is not None:
        print(f"track: stopped by {stop.signal_name} after frame {result.interrupted_at}; the outputs hold the "
              f"{result.frames} frames processed", file=sys.stderr)
        return stop.exit_code
    if result.error is not None:
        return _fail(f"{result.error} (outputs of the {result.frames} frames read are written)", EXIT_FAILED)
    if result.frames == 0:
        return _fail(f"{source.info.location}: no frames read", EXIT_FAILED)
    return 0


def _fail(message: object, code: int) -> int:
    print(f"track: error: {message}", file=sys.stderr)
    return code


def _prepare_output_dir(path: Path) -> Path:
    """Create the folder and prove it is writable, or raise UserError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{path}: output folder is not writable ({exc.strerror or exc})") from exc
    return path


def _load_detector(args: argparse.Namespace, source: PeekedSource):
    """The fp32 detector sized by ``--imgsz`` for the source's frames, or its cached/freshly calibrated int8
    version (calibrated at that size); returns (detector, precision, the input size's reason and the int8
    decisions for the timing report)."""
    from int8track.detectors import load_detector

    weights = resolve_weights(args.model, args.weights)
    detector = load_detector(str(weights), backend="onnxruntime", num_threads=args.threads,
                             conf_thresh=args.conf, nms_thresh=args.nms)
    detector = detector.with_classes(_class_ids(args.classes, detector.spec.class_names))  # before calibrating
    fitted = fit_detector(detector, args.imgsz, source.first.shape)  # before calibrating: int8 runs at this size
    detector = fitted.detector
    print(f"track: detector input {fitted.input_size[0]}x{fitted.input_size[1]} ({fitted.reason})", file=sys.stderr)
    if not args.int8:
        return detector, "fp32", {"input_size_reason": fitted.reason}
    calibration = {"frames": args.calib_frames, "source": _calibration_source(args, source)}
    cached = Int8ModelCache().get(
        detector, weights, lambda: _calibration_frames(args, source), config_from_args(args), calibration,
        num_threads=args.threads, refresh=args.recalibrate,
    )
    verb = "reusing cached" if cached.reused else "calibrated and cached"
    origin = cached.calibration["source"]
    took = "" if cached.reused else f", {cached.make_seconds:.1f} s"
    print(f"track: {verb} int8 model {cached.path} (calibrated on {cached.calibration['frames']} frames of "
          f"{origin.get('path', origin.get('live'))}{took})", file=sys.stderr)
    print_summary(cached.quant_report, "track")
    summary = summary_dict(cached.quant_report)
    if not cached.reused:  # the whole wait before tracking: frames read, calibration process started, calibrated
        summary["calibration_wall_seconds"] = cached.make_seconds
    return cached.detector, "int8", {"input_size_reason": fitted.reason, "int8": summary}


def _calibration_source(args: argparse.Namespace, source: FrameSource) -> dict:
    """The fingerprint of what ``_calibration_frames`` reads: ``--calib``, else the source."""
    if args.calib is not None:
        return source_fingerprint(args.calib)
    # a URL is known by its text even when it is read like a file: nothing local to stat
    return source_fingerprint(source.info.location, live=source.info.is_live or source.info.kind == "stream")


def _calibration_frames(args: argparse.Namespace, source: FrameSource) -> list[np.ndarray]:
    """``--calib-frames`` frames evenly spaced over ``--calib`` or the source; the first ones of a live source."""
    from int8track.quant.calibration import load_frames

    print(f"track: calibrating int8 on {args.calib_frames} frames of {args.calib or source.info.location}",
          file=sys.stderr)
    if args.calib is not None or not source.info.is_live:
        return load_frames(args.calib or source.info.location, num=args.calib_frames)
    live = open_source(source.info.location)
    reader = ReadAhead(live, drop_oldest=False, max_frames=args.calib_frames)
    frames = [frame.image for frame in reader]
    reader.close()
    if not frames:
        raise UserError(f"{source.info.location}: no frames to calibrate on")
    return frames


def _class_ids(spec: str, class_names: Sequence[str]) -> list[int]:
    """Class ids from a comma-separated list of names or ids, checked against the model's classes (not empty)."""
    ids = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        if item.isdigit() and int(item) < len(class_names):
            ids.append(int(item))
        elif item in class_names:
            ids.append(list(class_names).index(item))
        else:
            raise UserError(f"--classes: {item!r} is not a class of this model ({len(class_names)} classes, "
                            f"e.g. {', '.join(class_names[:5])})")
    if not ids:
        raise UserError(f"--classes {spec!r} names no class; give names or ids, e.g. --classes person")
    return ids


def _run(args, tracker_config: TrackerConfig, source: FrameSource, detector, precision: str, output_dir: Path,
         extra_info: dict, stop: StopOnSignal) -> RunResult:
    show = args.show
    if show and not os.environ.get("DISPLAY"):
        print("track: warning: --show ignored, no display (DISPLAY is not set)", file=sys.stderr)
        show = False
    tracker = ByteTracker(tracker_config, frame_rate=source.info.fps or DEFAULT_TRACKER_FPS)
    stem = source.info.name
    return run_tracking(
        source, detector, tracker,
        output_filter=OutputFilter(args.min_box_area, args.aspect_ratio_thresh),
        results_path=output_dir / f"{stem}.txt",
        video_path=None if args.no_video else output_dir / f"{stem}.mp4",
        tracks_path=output_dir / f"{stem}_tracks.jsonl" if args.save_tracks else None,
        show=show,
        max_frames=args.max_frames,
        progress=not args.quiet,
        info={"model": detector.spec.name, "precision": precision, "threads": args.threads,
              "input_size": "{}x{}".format(*detector.spec.input_size), **extra_info},
        should_stop=lambda: stop.requested,
    )


def _write_report(result: RunResult, output_dir: Path, stem: str, precision: str) -> None:
    """Timing JSON, CSV and plot; the table and the list of outputs on stdout."""
    if result.frames == 0:
        return
    report = result.report
    paths = [
        report.save_json(output_dir / f"{stem}_timing.json"),
        report.save_csv(output_dir / f"{stem}_timing.csv"),
        plot_reports({precision: report}, output_dir / f"{stem}_timing.png", title=f"{stem} ({precision})"),
    ]
    print(report.format_table(f"per-stage timing, {result.frames} frames ({precision})"))
    for path in [result.results_path, result.tracks_path, result.video_path, *paths]:
        if path is not None:
            print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
