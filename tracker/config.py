"""``TrackerConfig``: every ByteTrack setting in one frozen, validated object.

Names follow ByteTrack as Ultralytics spells them (``track_high_thresh``, ``track_low_thresh``,
``new_track_thresh``, ``match_thresh``, ``track_buffer``, ``fuse_score``), so an Ultralytics
``bytetrack.yaml`` maps onto it key for key (see ``tracker.interop``). The official ByteTrack demo's
single ``track_thresh=T`` is ``TrackerConfig.from_track_thresh(T)``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ID_MODES = ("compact", "official")
#: The official demo starts a new track at ``track_thresh`` plus this.
NEW_TRACK_MARGIN = 0.1


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack settings. Immutable: a tracker's derived values can never fall out of step with them.

    - ``track_high_thresh``: detections scoring above it are matched first (score exactly equal to it:
      used by neither stage, as in the official tracker).
    - ``track_low_thresh``: detections scoring above it (and below the high threshold) are matched
      second, to still-unmatched tracked tracks.
    - ``new_track_thresh``: an unmatched high detection starts a track when its score is at least this.
    - ``match_thresh``: first-stage cost limit (cost = 1 - IoU, score-fused when ``fuse_score``).
    - ``track_buffer``: frames, at 30 fps, a lost track stays recoverable (``max_time_lost``).
    - ``fuse_score``: multiply IoU by the detection score in the first and unconfirmed stages.
    - ``frame_rate``: the source's frames per second (scales ``track_buffer``; converts timestamps).
    - ``second_match_thresh``, ``unconfirmed_match_thresh``: cost limits of the second stage and of
      unconfirmed tracks (fixed in the official tracker: 0.5 and 0.7).
    - ``duplicate_iou_thresh``: tracked/lost pairs closer than this IoU distance are duplicates.
    - ``iou_inclusive``, ``id_mode``, ``class_aware``, ``return_lost``: see ``ByteTracker``.

    Every field is checked on construction; a bad value raises ``ValueError`` naming the field.
    Change settings with ``dataclasses.replace(config, ...)`` (validated again) and a new tracker.
    """

    track_high_thresh: float = 0.5
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.6
    match_thresh: float = 0.8
    track_buffer: int = 30
    fuse_score: bool = True
    frame_rate: float = 30.0
    second_match_thresh: float = 0.5
    unconfirmed_match_thresh: float = 0.7
    duplicate_iou_thresh: float = 0.15
    iou_inclusive: bool = False
    id_mode: str = "compact"
    class_aware: bool = False
    return_lost: bool = False

    def __post_init__(self) -> None:
        for name in ("track_high_thresh", "track_low_thresh", "new_track_thresh"):
            _check_number(name, getattr(self, name), low=0.0, high=1.0)
        for name in ("match_thresh", "second_match_thresh", "unconfirmed_match_thresh", "duplicate_iou_thresh"):
            _check_number(name, getattr(self, name), low=0.0)
        _check_number("frame_rate", self.frame_rate, low=0.0, low_open=True)
        if isinstance(self.track_buffer, bool) or not isinstance(self.track_buffer, numbers.Integral) \
                or self.track_buffer < 0:
            raise ValueError(f"track_buffer must be an integer >= 0, got {self.track_buffer!r}")
        for name in ("fuse_score", "iou_inclusive", "class_aware", "return_lost"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.id_mode not in ID_MODES:
            raise ValueError(f"id_mode must be one of {ID_MODES}, got {self.id_mode!r}")
        if not self.track_low_thresh <= self.track_high_thresh:
            raise ValueError(f"track_low_thresh ({self.track_low_thresh}) must be <= track_high_thresh "
                             f"({self.track_high_thresh})")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> TrackerConfig:
        """The ``TrackerConfig`` of an Ultralytics ``bytetrack.yaml`` (keys missing from it keep our defaults).

        Accepted keys: ``TrackerConfig``'s field names (Ultralytics' ``track_high_thresh``,
        ``track_low_thresh``, ``new_track_thresh``, ``track_buffer``, ``match_thresh``, ``fuse_score`` are
        among them) and ``tracker_type``, which must be ``bytetrack``. Any other key, a file that cannot be
        read or parsed, or a bad value raises ``ValueError`` with one line naming the file and the problem.
        The thresholds keep the official tracker's comparisons: a score exactly equal to ``track_high_thresh``
        goes to neither association stage (Ultralytics puts it in the first), which only matters on the threshold.
        """
        import yaml

        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ValueError(f"{path}: cannot read tracker settings ({reason})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected tracker settings as 'key: value' lines, got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in _config_keys() and key not in ULTRALYTICS_KEYS)
        if unknown:
            raise ValueError(f"{path}: unknown tracker setting(s) {', '.join(unknown)}; "
                             f"known: {', '.join((*ULTRALYTICS_KEYS, *_config_keys()))}")
        tracker_type = data.get("tracker_type", SUPPORTED_TRACKER_TYPE)
        if tracker_type != SUPPORTED_TRACKER_TYPE:
            raise ValueError(f"{path}: tracker_type {tracker_type!r} is not supported "
                             f"(only {SUPPORTED_TRACKER_TYPE!r})")
        try:
            return cls(**{key: value for key, value in data.items() if key in _config_keys()})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_track_thresh(cls, track_thresh: float, **settings: Any) -> TrackerConfig:
        """The official demo's vocabulary: ``track_thresh=T`` is high threshold T, new tracks at T + 0.1."""
        return cls(track_high_thresh=track_thresh, new_track_thresh=track_thresh + NEW_TRACK_MARGIN, **settings)

    def replace(self, **changes: Any) -> TrackerConfig:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def max_time_lost(self) -> int:
        """Frames (at ``frame_rate``) a lost track is kept: ``track_buffer`` scaled from 30 fps, as official."""
        return int(self.frame_rate / 30.0 * self.track_buffer)

    @property
    def match_disjoint(self) -> bool:
        """True when some cost limit is >= 1, which admits pairs that do not overlap at all."""
        return max(self.match_thresh, self.second_match_thresh, self.unconfirmed_match_thresh) >= 1


def _check_number(name: str, value: object, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """Raise ValueError unless ``value`` is a real number in [low, high] ((low, high] if ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    number = float(value)
    if number < low or (low_open and number == low) or number > high:
        bracket = "(" if low_open else "["
        upper = "inf)" if high == math.inf else f"{high:g}]"
        raise ValueError(f"{name} must be in {bracket}{low:g}, {upper}, got {value!r}")


#: Keys of an Ultralytics tracker file that are not tracker settings: accepted, checked, not used.
ULTRALYTICS_KEYS = ("tracker_type",)
SUPPORTED_TRACKER_TYPE = "bytetrack"


def _config_keys() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(TrackerConfig))
