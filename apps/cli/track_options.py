"""``track`` options for outputs and source handling, and range checks for every numeric option.

Kept apart from ``apps.track`` so the program's parser gains them with one call
(:func:`add_ecosystem_arguments`) and its ``main`` checks them with one (:func:`range_problem`).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from int8track.apps.io.reconnect import DEFAULT_RECONNECT_TIMEOUT_S


def add_ecosystem_arguments(parser: argparse.ArgumentParser) -> None:
    """``--save-tracks/--no-save-tracks``, ``--class-aware``, ``--live/--no-live`` and ``--reconnect-timeout``."""
    parser.add_argument("--save-tracks", action=argparse.BooleanOptionalAction, default=True,
                        help="write <name>_tracks.jsonl beside the MOT file: per frame, each track's id, box, "
                             "score, class id and name and det_index (default on)")
    parser.add_argument("--class-aware", action="store_true",
                        help="a track only matches detections of its own class (for multi-class --classes)")
    parser.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                        help="treat the source as live (drop frames to stay current) or not (read every frame); "
                             "default: cameras and rtsp/rtmp/udp/tcp URLs are live, other URLs when they have "
                             "no frame count, files and folders never")
    parser.add_argument("--reconnect-timeout", type=float, default=DEFAULT_RECONNECT_TIMEOUT_S, metavar="S",
                        help="a live source that stops is reopened (with backoff, keeping the tracker) for up to S "
                             "seconds, then the run ends with its outputs written; 0: end at once "
                             "(default %(default)s)")


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric option: ``low``/``high`` bounds (None: unbounded), each inclusive or not."""

    option: str
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True

    def problem(self, value: float) -> str | None:
        if not math.isfinite(value):
            return f"{self.option} {value}: must be a finite number"
        too_low = self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive))
        if too_low or (self.high is not None and value > self.high):
            return f"{self.option} {value:g}: must be {self.describe()}"
        return None

    def describe(self) -> str:
        left = "[" if self.low_inclusive else "("
        if self.high is not None:
            return f"in {left}{self.low:g}, {self.high:g}]"
        return f"{'>=' if self.low_inclusive else '>'} {self.low:g}"


#: Argument attribute -> allowed range. Options left at None (the model's or source's own value) are not checked.
RANGES = {
    "conf": Range("--conf", 0.0, 1.0),
    "nms": Range("--nms", 0.0, 1.0),
    "track_thresh": Range("--track-thresh", 0.0, 1.0),
    "match_thresh": Range("--match-thresh", 0.0, 1.0),
    "track_buffer": Range("--track-buffer", 0),
    "min_box_area": Range("--min-box-area", 0.0),
    "aspect_ratio_thresh": Range("--aspect-ratio-thresh", 0.0, low_inclusive=False),
    "fps": Range("--fps", 0.0, low_inclusive=False),
    "threads": Range("--threads", 1),
    "max_frames": Range("--max-frames", 1),
    "calib_frames": Range("--calib-frames", 1),
    "reconnect_timeout": Range("--reconnect-timeout", 0.0),
}


def range_problem(args: argparse.Namespace) -> str | None:
    """The first numeric option outside its range, as a one-line message, or None when all are valid."""
    for name, allowed in RANGES.items():
        value = getattr(args, name, None)
        if value is not None and (problem := allowed.problem(float(value))) is not None:
            return problem
    return None
