"""The many-source front end of ``track``: its options, the model every worker loads, and the fleet run."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from int8track.apps.cli.arg_types import checked_number
from int8track.apps.cli.model_options import model_request_from_args
from int8track.apps.cli.output_dir import prepare_output_dir
from int8track.apps.cli.track_options import schedule_from_args
from int8track.apps.cli.tracker_options import tracker_config_from_args
from int8track.apps.errors import EXIT_FAILED, EXIT_USAGE, UserError, fail
from int8track.apps.fleet.config import FleetConfig, FleetError, ModelRef
from int8track.apps.fleet.jobs import expand_sources, folder_members, is_glob, plan_jobs
from int8track.apps.fleet.messages import Done, FleetMessage, WorkerDied
from int8track.apps.fleet.pool import run_fleet
from int8track.apps.io.sources import FrameSource, SourceError, open_source
from int8track.apps.models.input_fit import PeekedSource
from int8track.apps.models.request import ModelRequest, prepare_detector
from int8track.apps.pipeline.run import OutputFilter


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The many-source options of ``track``."""
    group = parser.add_argument_group("many sources")
    group.add_argument("--sources", type=Path, metavar="FILE",
                       help="text file with one source per line (also: @FILE as a source)")
    group.add_argument("--workers", type=int, metavar="N",
                       help="worker processes serving the sources (default: one per core, at most one per source)")
    group.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="run the workers as Ray actors on the cluster at ADDRESS (default: a local one); "
                            "needs pip install int8track[ray]")
    group.add_argument("--ray-start-timeout", type=_positive_seconds, default=FleetConfig.actor_start_timeout_s,
                       metavar="S", help="with --ray: a worker actor the cluster has not started within S seconds "
                       "(too few free CPUs for --threads) fails its streams instead of waiting (default: %(default)s)")
    group.add_argument("--spare-worker", action="store_true",
                       help="keep one more worker started, its model loaded, to take over the streams of a worker "
                            "that dies (they resume sooner; costs a process while nothing fails; not with --ray)")
    group.add_argument("--batch", action="store_true",
                       help="a worker runs the frames of its streams through the detector as one batch (fp32; "
                            "whether it pays off depends on the machine: measure with benchmarks/streams.py)")


_positive_seconds = checked_number(float, lambda v: 0 < v < float("inf"), "{text} is not a positive number of seconds")


def fleet_requested(args: argparse.Namespace) -> bool:
    """Whether the command line asks for more than today's one-source run."""
    if (args.sources is not None or args.workers is not None or args.ray is not None or args.batch
            or args.spare_worker or len(args.source) != 1):
        return True
    spec = args.source[0]
    return spec.startswith("@") or (is_glob(spec) and not Path(spec).exists()) or bool(folder_members(Path(spec)))


def fleet_main(args: argparse.Namespace) -> int:
    """``track`` over many sources: returns the exit code (0 when every stream ran without error)."""
    try:
        locations = expand_sources(args.source, args.sources)
        if not locations:
            raise FleetError("no source given (name sources, a folder, a glob, @FILE or --sources FILE)")
        if args.reid is not None:
            raise FleetError("--reid tracks one source at a time for now; run track once per source")
        tracker = tracker_config_from_args(args).replace(class_aware=args.class_aware)
        config = FleetConfig(workers=args.workers, threads=args.threads, max_frames=args.max_frames, fps=args.fps,
                             write_video=not args.no_video, tracker=tracker,
                             output_filter=OutputFilter(args.min_box_area, args.aspect_ratio_thresh),
                             batch=args.batch, spare_worker=args.spare_worker, cmc=args.cmc,
                             actor_start_timeout_s=args.ray_start_timeout,
                             schedule=None if args.detect_every is None else schedule_from_args(args, live=False))
        output_dir = prepare_output_dir(args.output_dir or Path("runs") / "track" / "fleet")
        jobs = plan_jobs(locations, output_dir)
        model = prepare_model(model_request_from_args(args), locations, args.fps)
        if args.ray is not None:
            from int8track.apps.fleet.ray_actors import run_fleet_ray  # Ray is an optional extra

            report = run_fleet_ray(jobs, model, config, None if args.ray == "local" else args.ray,
                                   on_message=None if args.quiet else _print_progress)
        else:
            report = run_fleet(jobs, model, config, on_message=None if args.quiet else _print_progress)
    except (FleetError, UserError, OSError, ValueError, SourceError) as exc:
        return fail("track", exc, EXIT_USAGE)
    print(report.format_table())
    for line in report.info.get("worker_failures", []):
        print(f"track: warning: {line}", file=sys.stderr)
    for path in report.save(output_dir):
        print(f"wrote {path}")
    if report.failed:
        return fail("track", f"{len(report.failed)} of {len(report.streams)} streams failed: "
                    f"{', '.join(s.source_id for s in report.failed)} (see {output_dir})", EXIT_FAILED)
    return 0


def _print_progress(message: FleetMessage) -> None:
    if isinstance(message, Done):
        report = message.report
        status = "ok" if report.ok else f"failed: {report.error}"
        print(f"track: {report.source_id}: {report.frames} frames, {status}", file=sys.stderr)
    elif isinstance(message, WorkerDied):
        print(f"track: {message.worker} died ({message.reason})", file=sys.stderr)


def prepare_model(request: ModelRequest, locations: Sequence[str], fps: float | None) -> ModelRef:
    """The model every worker loads, sized for the first source that opens (the fleet runs one input size; other
    frame shapes are letterboxed into it): the weights (fp32), or the int8 model calibrated once at that size, on
    the calibration source or that source, through the int8 cache (so a later run reuses it)."""
    source = PeekedSource(_first_openable(locations, fps))
    try:
        prepared = prepare_detector(request, source, log=lambda line: print(f"track: {line}", file=sys.stderr))
    finally:
        source.close()
    print(f"track: every worker loads {prepared.model_path} ({prepared.precision_label})", file=sys.stderr)
    return ModelRef(str(prepared.model_path), prepared.precision, request.conf, request.nms, prepared.class_ids,
                    input_size=prepared.detector.spec.input_size)


def _first_openable(locations: Sequence[str], fps: float | None) -> FrameSource:
    for location in locations:
        try:
            return open_source(location, fps=fps)
        except (OSError, SourceError, ValueError):
            continue
    raise FleetError("no source can be opened to calibrate on; give --calib")
