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
#: ``velocity_noise_exponent`` when left automatic (None) outside parity mode: the exponent that improved IDF1
#: or kept it within noise on every sequence of benchmarks/identity.py (1.5, the random-walk value, helps
#: moving cameras more but loses identities on static ones; see benchmarks/README.md).
DEFAULT_VELOCITY_NOISE_EXPONENT = 1.0
#: ``gap_reacquire_s`` when left automatic (None) outside parity mode. Gaps up to ~1 s keep >= 92% of IDs by IoU
#: alone when the Kalman filter steps by the elapsed time; longer ones lose most (benchmarks/README.md, gap study).
DEFAULT_GAP_REACQUIRE_S = 1.0
#: ``shared_shift`` when left automatic (None) outside parity mode: 5% of a box height. A shift below it moves a
#: box's IoU with its own detection by a few hundredths at most, so it would only tip marginal pairs; the static
#: sequences of benchmarks/identity.py never reach it (their output is unchanged), the moving ones do
#: (benchmarks/README.md).
DEFAULT_SHARED_SHIFT = 0.05
#: Matches the shared shift's median needs: with fewer, one mismatched pair could set it.
SHARED_SHIFT_MIN_MATCHES = 3
#: A buffer ratio above this makes every box overlap its neighbours; surely a mistake.
MAX_BUFFER_RATIO = 2.0
#: Process noise growing faster than the cube of the frame period has no physical reading.
MAX_VELOCITY_NOISE_EXPONENT = 3.0


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
    - ``velocity_noise_exponent``: the Kalman filter's velocity process noise is the official one (per 30 fps
      frame) times ``(30 / frame_rate) ** exponent`` (``kalman.velocity_noise_scale``). At 7-10 fps a person's
      velocity changes more between two frames than the 30 fps constants allow; left at them, the velocity
      estimate lags for many frames behind every turn and behind a panning camera, and lost tracks coast the
      wrong way. 0 is the official filter; it changes nothing at 30 fps whatever the exponent.
    - ``freeze_size_on_low_score``: a detection matched in the second stage (score below
      ``track_high_thresh``) updates the track's position but not its size (aspect, height). Those detections
      are mostly partly hidden people whose box covers only the visible part; taking their size shrinks the
      track, and the person's next full detection then overlaps it too little and starts a new id.
    - ``buffer_ratio``, ``second_buffer_ratio`` (opt-in, default 0): Buffered IoU (C-BIoU, Yang et al. WACV 2023)
      in the first stage and for unconfirmed tracks, resp. in the second stage: both boxes grow by this fraction
      of their width and height on every side before IoU, so boxes that moved by a fraction of their size still
      overlap. The paper uses 0.3 and 0.5; they help panning cameras but cost identities in static crowds,
      where neighbours' buffered boxes overlap too (benchmarks/README.md), hence off by default.
    - ``gap_reacquire_s``: when at least this many seconds passed since the previous update (an outage of a live
      stream: ``update(..., timestamp=)`` or ``frame_gap=``), tracks that were tracked before the gap and that IoU
      cannot match after it get one more association, with the detections that would start new tracks: gated by
      the Kalman filter's own uncertainty, which grew with the elapsed time (``ByteTracker``). After a few seconds a
      walking person is a body width or more from the prediction, where IoU is zero. 0 turns it off; None
      (default) is automatic: ``DEFAULT_GAP_REACQUIRE_S``, off in parity mode. Updates closer together than this
      are untouched, so input without such gaps gives the same output whatever the value.
    - ``shared_shift``: when the first stage's matched detections are displaced from their tracks' predicted
      boxes, by their median, by at least this fraction of the median box height (the camera moved or turned
      faster than the tracks' velocities expected: every prediction is off the same way), the tracks and high
      detections that stage left get one more IoU association, the tracks' boxes moved by that median shift
      (needs ``SHARED_SHIFT_MIN_MATCHES`` matches). A static camera's median stays near zero, so nothing changes
      there. 0 turns it off; None (default) is automatic: ``DEFAULT_SHARED_SHIFT``, off in parity mode.

    Parity: ``iou_inclusive=True`` with ``id_mode="official"`` is the official ByteTrack (see ``parity()``);
    ``iou_inclusive=True`` alone gives its tracks (``id_mode`` only numbers them), so it is what switches the
    mechanisms beyond the official tracker off. ``velocity_noise_exponent`` and ``freeze_size_on_low_score``
    default to None, "automatic": off when ``iou_inclusive``, otherwise on (exponent
    ``DEFAULT_VELOCITY_NOISE_EXPONENT``); an explicit value is used as given (the ``effective_*`` properties).

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
    velocity_noise_exponent: float | None = None
    freeze_size_on_low_score: bool | None = None
    buffer_ratio: float = 0.0
    second_buffer_ratio: float = 0.0
    gap_reacquire_s: float | None = None
    shared_shift: float | None = None

    def __post_init__(self) -> None:
        for name in ("track_high_thresh", "track_low_thresh", "new_track_thresh"):
            _check_number(name, getattr(self, name), low=0.0, high=1.0)
        for name in ("match_thresh", "second_match_thresh", "unconfirmed_match_thresh", "duplicate_iou_thresh"):
            _check_number(name, getattr(self, name), low=0.0)
        _check_number("frame_rate", self.frame_rate, low=0.0, low_open=True)
        if isinstance(self.track_buffer, bool) or not isinstance(self.track_buffer, numbers.Integral) \
                or self.track_buffer < 0:
            raise ValueError(f"track_buffer must be an integer >= 0, got {self.track_buffer!r}")
        for name in ("buffer_ratio", "second_buffer_ratio"):
            _check_number(name, getattr(self, name), low=0.0, high=MAX_BUFFER_RATIO)
        if self.freeze_size_on_low_score is not None and not isinstance(self.freeze_size_on_low_score, bool):
            raise ValueError(f"freeze_size_on_low_score must be true, false or None, got "
                             f"{self.freeze_size_on_low_score!r}")
        if self.gap_reacquire_s is not None:
            _check_number("gap_reacquire_s", self.gap_reacquire_s, low=0.0)
        if self.shared_shift is not None:
            _check_number("shared_shift", self.shared_shift, low=0.0, high=1.0)
        if self.velocity_noise_exponent is not None:
            _check_number("velocity_noise_exponent", self.velocity_noise_exponent, low=0.0,
                          high=MAX_VELOCITY_NOISE_EXPONENT)
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

    @classmethod
    def parity(cls, **settings: Any) -> TrackerConfig:
        """The official ByteTrack reproduced exactly (``tests/tracker/test_tracker_parity.py``): its thresholds,
        pixel-inclusive IoU and official ids, which also switch off every mechanism beyond the official tracker."""
        return cls(**{"iou_inclusive": True, "id_mode": "official", **settings})

    def replace(self, **changes: Any) -> TrackerConfig:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def parity_mode(self) -> bool:
        """True when reproducing the official ByteTrack (pixel-inclusive IoU): automatic mechanisms are off.

        ``id_mode`` plays no part: it only numbers the tracks, so "compact" and "official" give the same tracks.
        """
        return self.iou_inclusive

    @property
    def effective_velocity_noise_exponent(self) -> float:
        """``velocity_noise_exponent`` in force: as given, or when None 0 in parity mode, else the default."""
        if self.freeze_size_on_low_score is not None and not isinstance(self.freeze_size_on_low_score, bool):
            raise ValueError(f"freeze_size_on_low_score must be true, false or None, got "
                             f"{self.freeze_size_on_low_score!r}")
        if self.velocity_noise_exponent is not None:
            return float(self.velocity_noise_exponent)
        return 0.0 if self.parity_mode else DEFAULT_VELOCITY_NOISE_EXPONENT

    @property
    def effective_freeze_size_on_low_score(self) -> bool:
        """``freeze_size_on_low_score`` in force: as given, or when None off in parity mode, else on."""
        if self.freeze_size_on_low_score is not None:
            return self.freeze_size_on_low_score
        return not self.parity_mode

    @property
    def effective_gap_reacquire_s(self) -> float:
        """``gap_reacquire_s`` in force (0: off): as given, or when None off in parity mode, else the default."""
        if self.gap_reacquire_s is not None:
            return float(self.gap_reacquire_s)
        return 0.0 if self.parity_mode else DEFAULT_GAP_REACQUIRE_S

    @property
    def effective_shared_shift(self) -> float:
        """``shared_shift`` in force (0: off): as given, or when None off in parity mode, else the default."""
        if self.shared_shift is not None:
            return float(self.shared_shift)
        return 0.0 if self.parity_mode else DEFAULT_SHARED_SHIFT

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
