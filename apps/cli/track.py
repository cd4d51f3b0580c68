"""`track` command line program: detect and track objects in a video, folder, MOT sequence, camera or stream.

Writes into the output folder: the annotated video, a MOTChallenge results file, the per-stage timing report
(JSON, CSV) and its plot, and prints the timing table at the end. ``--int8`` calibrates the detector on the
source's own frames (or ``--calib``'s) once and caches the int8 model for later runs on the same calibration
source (see ``apps.models``). Several sources run as a fleet (``apps.cli.fleet``).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2

from int8track.apps.cli.fleet import add_fleet_arguments, fleet_main, fleet_requested
from int8track.apps.cli.model_options import add_imgsz_arguments, add_int8_arguments, model_request_from_args
from int8track.apps.cli.output_dir import prepare_output_dir
from int8track.apps.cli.track_options import (
    add_ecosystem_arguments,
    add_identity_arguments,
    add_schedule_arguments,
    identity_problem,
    interpolation_from_args,
    range_problem,
    reid_weights,
    schedule_from_args,
    schedule_problem,
)
from int8track.apps.cli.tracker_options import add_tracker_arguments, tracker_config_from_args
from int8track.apps.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UserError, fail
from int8track.apps.io.mot_results import interpolate_file
from int8track.apps.io.reconnect import ReconnectingSource, ReconnectPolicy, skip_backlog
from int8track.apps.io.sources import FrameSource, SourceError, open_source
from int8track.apps.models.cache import cache_root
from int8track.apps.models.input_fit import PeekedSource
from int8track.apps.models.reid_int8 import EmbedderChoice, choose_embedder
from int8track.apps.models.request import DEFAULT_MODEL, CalibrationRequest, PreparedDetector, prepare_detector
from int8track.apps.pipeline.interrupt import StopOnSignal
from int8track.apps.pipeline.profiler import plot_reports
from int8track.apps.pipeline.progress import limit_tqdm_redraws
from int8track.apps.pipeline.run import OutputFilter, RunResult, run_tracking
from int8track.frames import FALLBACK_FRAME_RATE
from int8track.tracker import ByteTracker, TrackerConfig
from int8track.tracker.interpolation import InterpolationConfig
from int8track.tracker.reid import wrap_tracker
from int8track.tracker.schedule import DetectionSchedule

EPILOG = ("int8 model cache: --int8 keeps each calibrated model in $INT8TRACK_HOME/int8 (default "
          "~/.cache/int8track/int8), keyed by the weights, input size, settings and calibration source. "
          "A video file or folder is recognised by its full path, size and modification time (a folder by "
          "the count, sizes and times of its files), a camera or stream by its index or URL as typed. So "
          "another video, or the same one edited or moved, is calibrated anew; the same one reuses its "
          "model, and the program says which model it reuses and what it was calibrated on. Each model "
          "has a .json record beside it. A cached file that no longer loads is reported, removed and made again.")


def build_parser() -> argparse.ArgumentParser:
    defaults_filter = OutputFilter()
    parser = argparse.ArgumentParser(
        prog="track",
        description="Track objects with a YOLOX/YOLOv5 detector (fp32 or int8, ONNX Runtime) and ByteTrack.",
        epilog=EPILOG)
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
    add_schedule_arguments(parser)
    add_identity_arguments(parser)
    add_fleet_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (problem := range_problem(args) or schedule_problem(args)) is not None:
        return fail("track", problem, EXIT_USAGE)
    limit_tqdm_redraws()  # calibration and download bars: one redraw per few seconds in a log
    if fleet_requested(args):
        return fleet_main(args)
    args.source = args.source[0]
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    try:
        tracker_config = tracker_config_from_args(args).replace(class_aware=args.class_aware)
        request = model_request_from_args(args)
        opened = reconnecting(open_source(args.source, fps=args.fps, live=args.live), args)
    except (OSError, SourceError, ValueError) as exc:
        return fail("track", exc, EXIT_USAGE)
    stop = StopOnSignal()
    try:
        source = PeekedSource(opened)  # the first frame's shape sizes the detector's input
    except SourceError as exc:
        opened.close()
        return fail("track", exc, EXIT_FAILED)
    try:
        output_dir = prepare_output_dir(args.output_dir or Path("runs") / "track" / source.info.name)
        prepared = prepare_detector(request, source, log=lambda line: print(f"track: {line}", file=sys.stderr))
        with stop:
            result = _run(args, tracker_config, source, prepared, output_dir, stop, request.int8)
            _interpolate(result, interpolation_from_args(args))
            _write_report(result, output_dir, source.info.name, prepared)
    except (UserError, OSError, ValueError) as exc:
        source.close()
        return fail("track", exc, EXIT_USAGE)
    except KeyboardInterrupt:  # before tracking started, or a second signal: unfinished outputs are deleted
        source.close()
        when = "by a second signal" if stop.requested else "before tracking started"
        return fail("track", f"interrupted {when}; outputs not finished are not written", EXIT_INTERRUPTED)
    if stop.exit_code is not None:
        print(f"track: stopped by {stop.signal_name} after frame {result.interrupted_at}; the outputs hold the "
              f"{result.frames} frames processed", file=sys.stderr)
        return stop.exit_code
    if result.error is not None:
        return fail("track", f"{result.error} (outputs of the {result.frames} frames read are written)", EXIT_FAILED)
    if result.frames == 0:
        return fail("track", f"{source.info.display}: no frames read", EXIT_FAILED)
    return 0


def reconnecting(opened: FrameSource, args: argparse.Namespace) -> FrameSource:
    """A live camera or stream wrapped to reopen itself after an outage (``--reconnect-timeout``); anything else
    as it is: a file that ends has ended, even read with ``--live`` (reopening would replay it)."""
    if not (opened.info.is_live and opened.info.kind in ("camera", "stream")):
        return opened

    def reopen() -> FrameSource:
        return open_source(args.source, fps=args.fps or opened.info.fps, live=True)

    return ReconnectingSource(opened, reopen, ReconnectPolicy(timeout_s=args.reconnect_timeout),
                              log=lambda line: print(f"track: {line}", file=sys.stderr, flush=True))


def _run(args: argparse.Namespace, tracker_config: TrackerConfig, source: PeekedSource, prepared: PreparedDetector,
         output_dir: Path, stop: StopOnSignal, calib: CalibrationRequest | None) -> RunResult:
    show = args.show
    if show and not os.environ.get("DISPLAY"):
        print("track: warning: --show ignored, no display (DISPLAY is not set)", file=sys.stderr)
        show = False
    schedule = schedule_from_args(args, live=source.info.is_live)
    embedder = _embedder(args, calib, source, prepared) if schedule.every_frame else None  # else _tracker fails
    tracker = _tracker(args, tracker_config, source.info.fps or FALLBACK_FRAME_RATE, schedule,
                       embedder.weights if embedder is not None else None)
    # live: start from now, not from the frames queued while the model loaded
    skipped = skip_backlog(source) if source.info.is_live else 0
    stem = source.info.name
    detector = prepared.detector
    return run_tracking(
        source, detector, tracker,
        output_filter=OutputFilter(args.min_box_area, args.aspect_ratio_thresh),
        results_path=output_dir / f"{stem}.txt",
        video_path=None if args.no_video else output_dir / f"{stem}.mp4",
        tracks_path=output_dir / f"{stem}_tracks.jsonl" if args.save_tracks else None,
        show=show,
        max_frames=args.max_frames,
        progress=not args.quiet,
        info={"model": detector.spec.name, "threads": args.threads,
              "input_size": "{}x{}".format(*detector.spec.input_size), **prepared.info(),
              **({"stale_frames_skipped_at_start": skipped} if source.info.is_live else {}),
              **({"reid_precision": embedder.precision, "reid_int8": embedder.line} if embedder is not None else {})},
        should_stop=lambda: stop.requested,
        schedule=schedule,
    )


def _embedder(args: argparse.Namespace, calib: CalibrationRequest | None, source: PeekedSource,
              prepared: PreparedDetector) -> EmbedderChoice | None:
    """With ``--reid --int8``: the embedder's precision, decided like the detector's (``apps.models.reid_int8``)."""
    weights = reid_weights(args, cache_root().parent)
    if weights is None or calib is None:
        return None
    choice = choose_embedder(weights, calib, source, prepared.detector, prepared.class_ids,
                             log=lambda line: print(f"track: {line}", file=sys.stderr), num_threads=args.threads or 1)
    print(f"track: {'reusing cached ' if choice.reused else ''}{choice.line}", file=sys.stderr)
    return choice


def _tracker(args: argparse.Namespace, config: TrackerConfig, fps: float, schedule: DetectionSchedule,
             reid: Path | None = None):
    """ByteTracker, wrapped for ``--cmc``/``--reid`` (which read every frame, so they need the detector on every
    frame: between detector calls ``--detect-every`` moves the tracks by its own camera-motion estimate).
    ``reid``: the embedder weights to run instead of ``--reid``'s (its int8 model)."""
    tracker = ByteTracker(config, frame_rate=fps)
    weights = reid or reid_weights(args, cache_root().parent)
    if (problem := identity_problem(weights is not None, args.cmc, schedule)) is not None:
        raise UserError(problem)  # a live source's default auto (an explicit --detect-every failed earlier)
    cmc = schedule.tracker_cmc(args.cmc)
    if weights is None and not cmc:
        return tracker
    return wrap_tracker(tracker, reid=weights, cmc=cmc, num_threads=args.threads or 1)


def _interpolate(result: RunResult, config: InterpolationConfig | None) -> None:
    """``--interpolate``: the MOT file's gaps filled in place (atomically), after tracking ended."""
    if config is None or result.results_path is None or result.frames == 0:
        return
    counts = interpolate_file(result.results_path, result.results_path, config, result.propagated)
    redrawn = f", {counts.redrawn} boxes between detector calls redrawn" if result.propagated is not None else ""
    print(f"track: --interpolate {config.max_gap} ({config.method}): {counts.added} boxes added{redrawn} to "
          f"{result.results_path}", file=sys.stderr)


def _write_report(result: RunResult, output_dir: Path, stem: str, prepared: PreparedDetector) -> None:
    """Timing JSON, CSV and plot; the table and the list of outputs on stdout."""
    if result.frames == 0:
        return
    report = result.report
    label = prepared.precision_label
    paths = [
        report.save_json(output_dir / f"{stem}_timing.json"),
        report.save_csv(output_dir / f"{stem}_timing.csv"),
        plot_reports({prepared.precision: report}, output_dir / f"{stem}_timing.png", title=f"{stem} ({label})"),
    ]
    print(report.format_table(f"per-stage timing, {result.frames} frames ({label})"))
    for path in [result.results_path, result.tracks_path, result.video_path, *paths]:
        if path is not None:
            print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
