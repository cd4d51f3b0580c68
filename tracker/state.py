"""Snapshots of a ``ByteTracker``: everything needed to continue a run exactly, as plain numpy arrays.

A ``TrackerState`` is a typed header (``StateHeader``: format name and version, the ``TrackerConfig`` the
tracker was made with, the frame/id counters) plus the track table as one array per ``TrackTable`` field.
``ByteTracker.state_dict()`` makes one, ``ByteTracker.load_state_dict(state)`` (or
``ByteTracker.from_state``) continues from it: the rest of the sequence then gives the same output, bit
for bit, as a run that was never interrupted.

Serialised form (``to_bytes``/``save``, read back by ``from_bytes``/``load``): an ``.npz`` archive
(``np.savez``) holding the arrays and the header as a JSON string, so loading never unpickles anything
(``allow_pickle=False``) and a snapshot sent by another process can only fail validation, not run code.
Everything read back is checked: a missing or extra key, a wrong dtype or shape, inconsistent counters,
another format version or (in ``load_state_dict``) another config raise ``ValueError`` naming the problem.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from int8track.tracker.config import TrackerConfig
from int8track.tracker.track_table import LOST, REMOVED, TRACKED, TrackTable

STATE_FORMAT = "int8track.ByteTracker"
#: Bump when the meaning or layout of any saved field changes; other versions are refused on load.
STATE_VERSION = 2
HEADER_KEY = "header"

# dtype and shape after the track count T of each TrackTable field, as saved.
TABLE_LAYOUT: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "mean": (np.dtype(np.float64), (8,)),
    "cov": (np.dtype(np.float64), (4, 3)),
    "state": (np.dtype(np.int8), ()),
    "activated": (np.dtype(np.bool_), ()),
    "removal_recorded": (np.dtype(np.bool_), ()),
    "track_id": (np.dtype(np.int64), ()),
    "display_id": (np.dtype(np.int64), ()),
    "match": (np.dtype(np.float64), (3,)),
    "start_frame": (np.dtype(np.int64), ()),
    "last_frame": (np.dtype(np.int64), ()),
}
_COLUMN_MAJOR = frozenset(("mean", "cov"))  # TrackTable keeps these transposed-contiguous (see tracker.kalman)
assert set(TABLE_LAYOUT) == {f.name for f in dataclasses.fields(TrackTable)}, "TABLE_LAYOUT must list TrackTable"


@dataclass(frozen=True)
class StateHeader:
    """The scalars of a tracker snapshot.

    - ``format``/``version``: what wrote it (``STATE_FORMAT``, ``STATE_VERSION``).
    - ``config``: the settings of the tracker it came from; only a tracker with equal settings loads it.
    - ``frame_id``: frames counted so far (gaps included); ``update_count``: ``update`` calls so far (the
      first call confirms new tracks at once, later ones do not).
    - ``lost_start``: table row where the lost list starts (rows before it are the tracked list).
    - ``created``: tracks created so far (official ids); ``shown``: compact ids handed out so far.
    - ``last_timestamp``: the last ``update(timestamp=...)`` value, None if never given.
    - ``last_dropped``: rows dropped from the last update's input (``ByteTracker.last_dropped``).
    - ``gap_from``, ``gap_until``: the last outage's update before it and the end of the window after it in which
      its tracks are still looked for (0, 0: none; version 2 on).
    """

    config: TrackerConfig
    frame_id: int
    update_count: int
    lost_start: int
    created: int
    shown: int
    last_timestamp: float | None = None
    last_dropped: int = 0
    gap_from: int = 0
    gap_until: int = 0
    format: str = STATE_FORMAT
    version: int = STATE_VERSION

    def __post_init__(self) -> None:
        if self.format != STATE_FORMAT:
            raise ValueError(f"tracker state: format is {self.format!r}, expected {STATE_FORMAT!r}")
        if self.version != STATE_VERSION:
            raise ValueError(f"tracker state: format version {self.version!r} is not supported "
                             f"(this int8track reads version {STATE_VERSION})")
        if not isinstance(self.config, TrackerConfig):
            raise ValueError(f"tracker state: config must be a TrackerConfig, got {type(self.config).__name__}")
        for name in ("frame_id", "update_count", "lost_start", "created", "shown", "last_dropped", "gap_from",
                     "gap_until"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"tracker state: {name} must be an integer >= 0, got {value!r}")
        if self.update_count > self.frame_id:
            raise ValueError(f"tracker state: update_count ({self.update_count}) exceeds frame_id ({self.frame_id})")
        if self.last_timestamp is not None and (isinstance(self.last_timestamp, bool)
                                                or not isinstance(self.last_timestamp, (int, float))
                                                or not math.isfinite(self.last_timestamp)):
            raise ValueError(f"tracker state: last_timestamp must be a finite number or None, "
                             f"got {self.last_timestamp!r}")

    def to_json(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["config"] = dataclasses.asdict(self.config)
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StateHeader:
        """Parse ``to_json``'s text; the format and version are checked before anything else."""
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"tracker state: header is not valid JSON ({error})") from None
        if not isinstance(fields, dict):
            raise ValueError("tracker state: header must be a JSON object")
        if fields.get("format") != STATE_FORMAT:
            raise ValueError(f"tracker state: format is {fields.get('format')!r}, expected {STATE_FORMAT!r}")
        if fields.get("version") != STATE_VERSION:
            raise ValueError(f"tracker state: format version {fields.get('version')!r} is not supported "
                             f"(this int8track reads version {STATE_VERSION})")
        expected = {f.name for f in dataclasses.fields(cls)}
        if set(fields) != expected:
            raise ValueError(f"tracker state: header keys differ: missing {sorted(expected - set(fields))}, "
                             f"unexpected {sorted(set(fields) - expected)}")
        config = fields.pop("config")
        if not isinstance(config, dict):
            raise ValueError("tracker state: header config must be an object of TrackerConfig fields")
        config_fields = {f.name for f in dataclasses.fields(TrackerConfig)}
        if set(config) != config_fields:
            raise ValueError(f"tracker state: config keys differ from TrackerConfig: missing "
                             f"{sorted(config_fields - set(config))}, unexpected {sorted(set(config) - config_fields)}")
        try:
            return cls(config=TrackerConfig(**config), **fields)
        except ValueError as error:
            raise ValueError(f"tracker state: {error}") from None


@dataclass(frozen=True, eq=False)
class TrackerState:
    """A tracker snapshot: ``header`` plus ``tracks``, one read-only array per ``TrackTable`` field.

    Construction validates everything (``ValueError`` naming the problem) and copies the arrays, so a
    snapshot never shares memory with the tracker it came from or goes to.
    """

    header: StateHeader
    tracks: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        if not isinstance(self.header, StateHeader):
            raise ValueError(f"tracker state: header must be a StateHeader, got {type(self.header).__name__}")
        object.__setattr__(self, "tracks", _checked_tracks(self.tracks, self.header))

    def __eq__(self, other: object) -> bool:
        # Field-wise == would compare dicts of arrays, whose truth value numpy refuses.
        if not isinstance(other, TrackerState):
            return NotImplemented
        return self.header == other.header and all(
            np.array_equal(array, other.tracks[name]) for name, array in self.tracks.items())

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays inside: not hashable

    @property
    def num_tracks(self) -> int:
        return int(self.tracks["state"].shape[0])

    @classmethod
    def from_table(cls, header: StateHeader, table: TrackTable) -> TrackerState:
        return cls(header, {name: getattr(table, name) for name in TABLE_LAYOUT})

    def to_table(self) -> TrackTable:
        """A fresh, writable ``TrackTable`` in the tracker's memory layout (Kalman blocks column-major)."""
        return TrackTable(**{name: np.asfortranarray(array) if name in _COLUMN_MAJOR else array.copy()
                             for name, array in self.tracks.items()})

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays: the table's fields plus ``header`` (a 0-d unicode array holding the header's JSON)."""
        return {HEADER_KEY: np.array(self.header.to_json()), **self.tracks}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> TrackerState:
        """The inverse of ``to_arrays`` (e.g. an opened ``np.load`` archive); validates every key."""
        if HEADER_KEY not in arrays:
            raise ValueError(f"tracker state: missing key {HEADER_KEY!r}")
        header = np.asarray(arrays[HEADER_KEY])
        if header.shape != () or header.dtype.kind != "U":
            raise ValueError(f"tracker state: {HEADER_KEY!r} must be a 0-d unicode array, got dtype {header.dtype} "
                             f"shape {header.shape}")
        return cls(StateHeader.from_json(str(header)), {k: v for k, v in arrays.items() if k != HEADER_KEY})

    def to_bytes(self) -> bytes:
        """An ``.npz`` archive (uncompressed: snapshots are small and sent often)."""
        buffer = io.BytesIO()
        np.savez(buffer, **self.to_arrays())  # type: ignore[arg-type]  # numpy's stub: allow_pickle kwarg
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrackerState:
        """Read ``to_bytes``'s archive without unpickling anything."""
        return _read_npz(io.BytesIO(data), "bytes")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_bytes`` to ``path`` (exactly that name: ``np.savez`` would append ``.npz``)."""
        with open(path, "wb") as handle:
            handle.write(self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrackerState:
        with open(path, "rb") as handle:
            return _read_npz(handle, os.fspath(path))

    def config_differences(self, config: TrackerConfig) -> list[str]:
        """``"field: state has A, tracker has B"`` for each setting that differs from ``config``."""
        mine = dataclasses.asdict(self.header.config)
        other = dataclasses.asdict(config)
        return [f"{name}: state has {mine[name]!r}, tracker has {other[name]!r}"
                for name in mine if mine[name] != other[name]]


_ZIP_MAGIC = b"PK\x03\x04"  # np.savez archives are zip files; anything else np.load would try to unpickle


def _read_npz(source: Any, where: str) -> TrackerState:
    start = source.tell()
    if source.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
        raise ValueError(f"tracker state ({where}): not an npz archive (no zip header)")
    source.seek(start)
    try:
        with np.load(source, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as error:  # e.g. an object array, which would need pickle
        raise ValueError(f"tracker state ({where}): {error}") from None
    except (OSError, EOFError) as error:  # np.load raises these for data that is not an archive
        raise ValueError(f"tracker state ({where}): not an npz archive ({error})") from None
    return TrackerState.from_arrays(arrays)


def _checked_tracks(tracks: Mapping[str, np.ndarray], header: StateHeader) -> dict[str, np.ndarray]:
    """Read-only copies of ``tracks`` after checking keys, dtypes, shapes and consistency with ``header``."""
    if not isinstance(tracks, Mapping):
        raise ValueError(f"tracker state: tracks must be a mapping of arrays, got {type(tracks).__name__}")
    missing, extra = sorted(set(TABLE_LAYOUT) - set(tracks)), sorted(set(tracks) - set(TABLE_LAYOUT))
    if missing:
        raise ValueError(f"tracker state: missing key(s) {missing}")
    if extra:
        raise ValueError(f"tracker state: unexpected key(s) {extra}")
    count = np.shape(tracks["state"])[0] if np.ndim(tracks["state"]) else -1
    checked = {}
    for name, (dtype, tail) in TABLE_LAYOUT.items():
        array = tracks[name]
        if not isinstance(array, np.ndarray):
            raise ValueError(f"tracker state: {name!r} must be a numpy array, got {type(array).__name__}")
        if array.dtype != dtype:
            raise ValueError(f"tracker state: {name!r} has dtype {array.dtype}, expected {dtype}")
        if count < 0 or array.shape != (count, *tail):
            expected = "(T" + "".join(f", {size}" for size in tail) + ")"
            raise ValueError(f"tracker state: {name!r} has shape {array.shape}, expected {expected} "
                             f"with T = {max(count, 0)} tracks")
        copy = array.copy()
        copy.flags.writeable = False
        checked[name] = copy
    _check_consistency(checked, header)
    return checked


def _check_consistency(tracks: dict[str, np.ndarray], header: StateHeader) -> None:
    """Invariants the tracker relies on between updates; a snapshot violating one is corrupted."""
    count = tracks["state"].shape[0]
    state = tracks["state"]
    if not np.isin(state, (TRACKED, LOST, REMOVED)).all():
        raise ValueError(f"tracker state: 'state' holds values other than {TRACKED}, {LOST}, {REMOVED}")
    if header.lost_start > count:
        raise ValueError(f"tracker state: lost_start ({header.lost_start}) exceeds the {count} tracks")
    # The tracked list holds only TRACKED rows; the lost list only LOST/REMOVED ones (ByteTracker.update).
    if (state[:header.lost_start] != TRACKED).any() or (state[header.lost_start:] == TRACKED).any():
        raise ValueError(f"tracker state: rows before lost_start ({header.lost_start}) must be tracked and the "
                         "rows after it lost or removed")
    for name in ("mean", "cov", "match"):
        if not np.isfinite(tracks[name]).all():
            raise ValueError(f"tracker state: {name!r} holds NaN or inf")
    if count:
        if tracks["track_id"].min() < 1 or tracks["track_id"].max() > header.created:
            raise ValueError(f"tracker state: 'track_id' outside 1..created ({header.created})")
        if tracks["display_id"].min() < 0 or tracks["display_id"].max() > header.shown:
            raise ValueError(f"tracker state: 'display_id' outside 0..shown ({header.shown})")
        if (tracks["start_frame"] > tracks["last_frame"]).any() or tracks["last_frame"].max() > header.frame_id:
            raise ValueError(f"tracker state: frames must satisfy start_frame <= last_frame <= frame_id "
                             f"({header.frame_id})")
