"""``track`` options for outputs and source handling, and range checks for every numeric option.

Kept apart from ``apps.track`` so the program's parser gains them with one call
(:func:`add_ecosystem_arguments`) and its ``main`` checks them with one (:func:`range_problem`).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from int8track.apps.io.reconnect import DEFAULT_RECONNECT_TIMEOUT_S
from int8track.tracker.interpolation import METHODS, InterpolationConfig
from int8track.tracker.schedule import DetectionSchedule


def add_ecosystem_arguments(parser: argparse.ArgumentParser) -> None:
    """``--save-tracks/--no-save-tracks``, ``--class-aware``, ``--live/--no-live`` and ``--reconnect-timeout``."""
    parser.add_argument("--save-tracks", action=argparse.BooleanOptionalAction, default=True,
                        help="write <name>_tracks.jsonl beside the MOT file: per frame, each track's id, box, "
                             "score, class id and name and det_index (default on)")
    parser.add_argument("--class-aware", action="store_true",
                        help="a track only matches detections of its own class (for multi-class --classes)")
    parser.add_argument("--interpolate", type=int, metavar="N",
                        help="after the run, fill each track's gaps of up to N frames in the MOT results file "
                             "(offline: the tracks JSONL and the video stay causal); gaps where a line would miss "
                             "the person, and fills on another track's box, are left out (tracker.interpolation); "
                             "with --detect-every, the boxes between detector calls are redrawn the same way from "
                             "the detections on both sides")
    parser.add_argument("--interpolation", choices=METHODS, default="linear",
                        help="gap filling for --interpolate: linear, or gsi (then Gaussian-smoothed; default linear)")
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
    "interpolate": Range("--interpolate", 1),
    "reconnect_timeout": Range("--reconnect-timeout", 0.0),
}


def range_problem(args: argparse.Namespace) -> str | None:
    """The first numeric option outside its range, as a one-line message, or None when all are valid."""
    for name, allowed in RANGES.items():
        value = getattr(args, name, None)
        if value is not None and (problem := allowed.problem(float(value))) is not None:
            return problem
    return None


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """``--detect-every K|auto`` and ``--flow/--no-flow``: the detector's budget."""
    group = parser.add_argument_group("detector budget")
    group.add_argument("--detect-every", metavar="K|auto",
                       help="run the detector on every K-th frame and track the frames between by optical flow "
                            "(every frame still gets tracks); 'auto' on a file detects as rarely as tracking stays "
                            "reliable, on a live source as often as the machine keeps up (default: 1 for files and "
                            "folders, auto for cameras and live streams)")
    group.add_argument("--flow", action=argparse.BooleanOptionalAction, default=True,
                       help="between detector calls, follow the boxes by optical flow and camera motion (default), "
                            "or by the Kalman prediction alone (--no-flow)")


def schedule_problem(args: argparse.Namespace) -> str | None:
    """``--detect-every``'s problem as one line, or None."""
    if args.detect_every is None:
        return None
    try:
        schedule = DetectionSchedule.parse(args.detect_every, args.flow)
    except ValueError as exc:
        return f"--detect-every: {exc}"
    return identity_problem(args.reid is not None, args.cmc, schedule)


def identity_problem(reid: bool, cmc: bool | None, schedule: DetectionSchedule) -> str | None:
    """What ``--reid`` or ``--cmc`` cannot do with ``schedule`` (the one given, or a live source's default auto),
    as one line, or None. Appearance needs a detection on every frame; between detector calls the camera's motion
    is the optical flow's to follow (``DetectionSchedule.tracker_cmc``), so ``--cmc`` there needs the flow."""
    if schedule.every_frame:
        return None
    if reid:
        return (f"--reid runs with the detector on every frame, not with --detect-every {schedule.label} (the "
                f"default for a live source is auto): give --detect-every 1")
    if cmc and not schedule.flow:
        return (f"--cmc with --detect-every {schedule.label}: between detector calls the optical flow follows the "
                f"camera; drop --no-flow, or give --detect-every 1")
    return None


def schedule_from_args(args: argparse.Namespace, live: bool) -> DetectionSchedule:
    """The schedule asked for; without ``--detect-every``, every frame for files and auto for live sources."""
    text = args.detect_every if args.detect_every is not None else ("auto" if live else "1")
    return DetectionSchedule.parse(text, flow=args.flow)


def interpolation_from_args(args: argparse.Namespace) -> InterpolationConfig | None:
    """``--interpolate N [--interpolation M]`` as a config; None when not asked for."""
    if args.interpolate is None:
        return None
    return InterpolationConfig(method=args.interpolation, max_gap=args.interpolate)


REID_HELP = ("re-find lost tracks by appearance where motion fails (tracker.reid): embeddings only for unmatched "
             "detections near lost tracks. WEIGHTS: an ONNX person re-identification model (default "
             "$INT8TRACK_HOME/osnet_x0_25_msmt17.onnx: torchreid's OSNet x0.25 trained on MSMT17, whose training "
             "data is for research use only; it is not downloaded, place it there or name a file). With --int8 the "
             "embedder is quantized too, on the calibration frames' person crops, and runs int8 only where that is "
             "faithful on held-out crops and 15%% faster (once per camera and machine; the run says which)")


def add_identity_arguments(parser: argparse.ArgumentParser) -> None:
    """``--reid [WEIGHTS]`` and ``--cmc``: appearance and camera motion compensation in the tracker."""
    group = parser.add_argument_group("identities")
    group.add_argument("--reid", nargs="?", const="default", metavar="WEIGHTS", help=REID_HELP)
    group.add_argument("--cmc", action=argparse.BooleanOptionalAction, default=None,
                       help="camera motion compensation: the frame's global motion (sparse flow, RANSAC) moves "
                            "every track before association. Default: on when the detector runs on every frame "
                            "(between detector calls --detect-every's optical flow follows the camera instead); "
                            "--no-cmc turns it off")


def reid_weights(args: argparse.Namespace, home: Path) -> Path | None:
    """The ReID weights ``--reid`` names (None without it); FileNotFoundError in one line when absent."""
    if args.reid is None:
        return None
    path = home / "osnet_x0_25_msmt17.onnx" if args.reid == "default" else Path(args.reid).expanduser()
    if not path.is_file():
        hint = (" (the default OSNet weights are not downloaded here: place them there or pass --reid PATH, e.g. "
                "../shared/data/weights/osnet_x0_25_msmt17.onnx)" if args.reid == "default" else "")
        raise FileNotFoundError(f"--reid: {path}: re-identification weights not found{hint}")
    return path
