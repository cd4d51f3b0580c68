"""Struct-of-arrays storage for the tracker's live tracks (one row per track)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

TRACKED, LOST, REMOVED = 1, 2, 3
SCORE, CLASS, DET_ROW = 0, 1, 2  # columns of TrackTable.match


@dataclass
class TrackTable:
    """All live tracks as parallel arrays.

    Row order is the official list order: the ``tracked`` list first (all in the TRACKED
    state), then the ``lost`` list (the tracker keeps the row where it starts, so list
    membership needs no column). ``REMOVED`` rows are lost tracks that timed out this
    frame: the official tracker keeps them in its lost list (and even matchable) for one
    more frame, so we do too.

    ``mean`` and ``cov`` are column-major (tracks along the contiguous axis, see
    ``tracker.kalman``); ``take_rows`` selects rows keeping that layout.
    """

    mean: np.ndarray              # (T, 8) Kalman mean (cx, cy, a, h, vx, vy, va, vh)
    cov: np.ndarray               # (T, 4, 3) block covariance, see tracker.kalman
    state: np.ndarray             # (T,) int8: TRACKED, LOST or REMOVED
    activated: np.ndarray         # (T,) bool: confirmed (False = created last frame, unconfirmed)
    removal_recorded: np.ndarray  # (T,) bool: already in the official "removed" list
    track_id: np.ndarray          # (T,) int64: id given at creation (official numbering)
    display_id: np.ndarray        # (T,) int64: compact id given at first output, 0 before
    match: np.ndarray             # (T, 3) float64: score, class, input row of the last matched detection
    start_frame: np.ndarray       # (T,) int64: frame of creation
    last_frame: np.ndarray        # (T,) int64: frame of the last match (official ``frame_id``)

    @classmethod
    def empty(cls) -> TrackTable:
        return cls.create(np.empty((8, 0)).T, np.empty((3, 4, 0)).T, np.empty(0, np.int64), np.empty((0, 3)), 0, False)

    @classmethod
    def create(cls, mean: np.ndarray, cov: np.ndarray, track_id: np.ndarray, match: np.ndarray, frame_id: int,
               activated: bool) -> TrackTable:
        """New tracks (state TRACKED, in the tracked list) from initiated Kalman states."""
        count = mean.shape[0]
        return cls(
            mean=mean,
            cov=cov,
            state=np.full(count, TRACKED, dtype=np.int8),
            activated=np.full(count, activated),
            removal_recorded=np.zeros(count, dtype=bool),
            track_id=track_id,
            display_id=np.zeros(count, dtype=np.int64),
            match=match,
            start_frame=np.full(count, frame_id, dtype=np.int64),
            last_frame=np.full(count, frame_id, dtype=np.int64),
        )

    def __len__(self) -> int:
        return self.state.shape[0]

    def take(self, index: np.ndarray) -> TrackTable:
        """The rows ``index``, in that order.

        Runs on most frames, so the fields are spelled out (a loop over them costs a third more)
        and the row-major ``match`` block uses ``take``, much cheaper than 2-D fancy indexing.
        """
        return TrackTable(mean=take_rows(self.mean, index), cov=take_rows(self.cov, index), state=self.state[index],
                          activated=self.activated[index], removal_recorded=self.removal_recorded[index],
                          track_id=self.track_id[index], display_id=self.display_id[index],
                          match=self.match.take(index, axis=0), start_frame=self.start_frame[index],
                          last_frame=self.last_frame[index])

    def append(self, other: TrackTable) -> TrackTable:
        """This table's rows followed by ``other``'s."""
        if len(other) == 0:
            return self
        return TrackTable(*[np.concatenate((getattr(self, name).T, getattr(other, name).T), axis=-1).T
                            if name in _COLUMN_MAJOR else np.concatenate((getattr(self, name), getattr(other, name)))
                            for name in _FIELDS])


_FIELDS = tuple(f.name for f in fields(TrackTable))
_COLUMN_MAJOR = frozenset(("mean", "cov"))  # the other fields are 1-D or small row-major blocks


def take_rows(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array[index]`` (rows along the first axis) in the memory layout of ``array``'s transpose order.

    Plain fancy indexing returns a row-major copy; taking along the last axis of the
    transposed view keeps column-major arrays column-major (``take`` is also much faster
    than ``[..., index]`` there).
    """
    return array.T.take(index, axis=-1).T
