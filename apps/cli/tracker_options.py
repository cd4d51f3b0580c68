"""Command-line options for the tracker's settings (``tracker.TrackerConfig``), the same in every program.

``--track-thresh`` keeps the official ByteTrack demo's vocabulary (one threshold T: matched first above T,
new tracks from T + 0.1); ``--tracker FILE.yaml`` reads an Ultralytics ``bytetrack.yaml``. Options given
on the command line override the file's values.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from int8track.apps.cli.arg_types import checked_number
from int8track.tracker.config import NEW_TRACK_MARGIN, TrackerConfig

DEFAULT_TRACK_THRESH = TrackerConfig().track_high_thresh


def add_tracker_arguments(parser: argparse.ArgumentParser, *, track_thresh_default: float | str = DEFAULT_TRACK_THRESH,
                          config_file: bool = False) -> None:
    """Add ``--track-thresh``, ``--track-buffer``, ``--match-thresh`` (and ``--tracker`` if ``config_file``).

    The options default to None (not given), so ``tracker_config_from_args`` can tell what the user set;
    ``track_thresh_default`` is only the help text's default (the value is ``tracker_config_from_args``'s).
    """
    group = parser.add_argument_group("tracker (ByteTrack)")
    if config_file:
        group.add_argument("--tracker", type=Path, metavar="FILE.yaml",
                           help="tracker settings from an Ultralytics bytetrack.yaml; the options below override "
                                "its values")
    group.add_argument("--track-thresh", type=_unit_interval, metavar="T",
                       help=f"high-score threshold; new tracks need T + {NEW_TRACK_MARGIN:g} "
                            f"(default {track_thresh_default})")
    group.add_argument("--track-buffer", type=_non_negative_int, metavar="FRAMES",
                       help=f"frames (at 30 fps) a lost track is kept (default {TrackerConfig.track_buffer})")
    group.add_argument("--match-thresh", type=_non_negative, metavar="COST",
                       help=f"first-stage association cost limit, 1 - IoU (default {TrackerConfig.match_thresh})")


def tracker_config_from_args(args: argparse.Namespace, track_thresh: float = DEFAULT_TRACK_THRESH) -> TrackerConfig:
    """The settings ``add_tracker_arguments``'s options ask for: ``--tracker``'s file (else the official
    defaults with ``track_thresh``), then each option given. Raises ValueError (naming the file) or OSError."""
    path = getattr(args, "tracker", None)
    config = TrackerConfig.from_yaml(path) if path is not None else TrackerConfig.from_track_thresh(track_thresh)
    changes: dict[str, float | int] = {}
    if args.track_thresh is not None:
        changes.update(track_high_thresh=args.track_thresh, new_track_thresh=args.track_thresh + NEW_TRACK_MARGIN)
    if args.track_buffer is not None:
        changes["track_buffer"] = args.track_buffer
    if args.match_thresh is not None:
        changes["match_thresh"] = args.match_thresh
    try:
        return config.replace(**changes)
    except ValueError as exc:
        raise ValueError(f"tracker options: {exc}") from None


def tracker_argv(args: argparse.Namespace) -> list[str]:
    """The tracker options the user gave, as command-line arguments (to hand them to another program)."""
    argv: list[str] = []
    for option in ("tracker", "track_thresh", "track_buffer", "match_thresh"):
        value = getattr(args, option, None)
        if value is not None:
            argv += [f"--{option.replace('_', '-')}", str(value)]
    return argv


_unit_interval = checked_number(float, lambda v: 0.0 <= v <= 1.0, "{text} is not a score in [0, 1]")
_non_negative = checked_number(float, lambda v: v >= 0.0, "{text} is not a number >= 0")
_non_negative_int = checked_number(int, lambda v: v >= 0, "{text} is not an integer >= 0", "an integer")
