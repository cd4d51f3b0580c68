"""ByteTrack multi-object tracker, vectorised over tracks (struct-of-arrays state)."""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from int8track.tracker import kalman
from int8track.tracker.config import SHARED_SHIFT_MIN_MATCHES, TrackerConfig
from int8track.tracker.gap import gap_matches
from int8track.tracker.iou import buffered
from int8track.tracker.matching import (
    EMPTY_INDEX,
    SMALL_ASSIGNMENT,
    fuse_score,
    iou_pairs,
    mask_classes,
    small_sparse_assignment,
    sparse_assignment,
)
from int8track.tracker.state import StateHeader, TrackerState
from int8track.tracker.track_table import CLASS, DET_ROW, LOST, REMOVED, TRACKED, TrackTable, take_rows
from int8track.tracker.validation import CleanDetections, check_frame_step, clean_detections

if TYPE_CHECKING:
    import supervision as sv

ALL = slice(None)  # "every position" as an index
OUTPUT_COLUMNS = ("x1", "y1", "x2", "y2", "track_id", "score", "class", "det_index")
STAGES = ("predict", "iou", "assignment", "bookkeeping")


class ByteTracker:
    """ByteTrack (Zhang et al., ECCV 2022) reproducing the official ``BYTETracker`` exactly.

    ``update(detections)`` takes an (N, 5) or (N, 6) array ``x1, y1, x2, y2, score[, class]``
    for one frame and returns an (M, 8) float64 array
    ``x1, y1, x2, y2, track_id, score, class, det_index`` of the confirmed tracks on that
    frame: the box is the Kalman-filtered box, ``score`` the score of the detection matched
    on this frame, ``class`` that detection's class (-1 when the input has no class column)
    and ``det_index`` its row in the ``detections`` passed in.

    With ``iou_inclusive=True, id_mode="official"`` and the other defaults the output equals
    the official tracker's with ``track_thresh=0.5, track_buffer=30, match_thresh=0.8,
    mot20=False`` (its ``track_thresh=T`` means ``track_high_thresh=T,
    new_track_thresh=T+0.1`` here); tests/tracker/test_tracker_parity.py checks this on 9 sequences.
    Tracks created on the first update after construction/``reset()`` are confirmed at
    once, later ones only when matched again on the next frame. Official quirks kept on purpose:

    - a score exactly equal to ``track_high_thresh`` is used by neither stage;
    - unconfirmed tracks (created on the previous frame) are not Kalman-predicted before
      they are matched and updated;
    - a lost track that times out stays matchable for one more frame, and a track that
      came back from that state is dropped as soon as it is lost again;
    - duplicate removal (tracked vs lost pairs with IoU distance < ``duplicate_iou_thresh``)
      drops the one with the shorter history, the tracked one on ties.

    Settings are one frozen ``TrackerConfig`` (``tracker.config``): ``ByteTracker(config)`` or
    ``ByteTracker(frame_rate=30, match_thresh=0.8, ...)`` with its field names; ``ByteTracker.from_yaml``
    reads an Ultralytics ``bytetrack.yaml``. ``tracker.config`` is read-only, so values derived from
    it (``max_time_lost``) always agree with it; other settings mean a new tracker.

    Options beyond the official tracker (fields of ``TrackerConfig``):

    - ``iou_inclusive``: True counts box sides in pixels (``x2 - x1 + 1``, as official /
      cython_bbox); False uses continuous geometry (``x2 - x1``), which is right for
      sub-pixel boxes and makes small boxes overlap less. Default False: this project's
      detectors output continuous coordinates. Use True to reproduce ByteTrack.
    - ``id_mode``: "compact" (default) numbers a track when it is first output, so ids
      start at 1 and never skip; "official" numbers it at creation like ByteTrack, so ids
      of unconfirmed tracks that die are skipped. Ids are per tracker instance and restart
      at 1 after ``reset()``; both modes give the same tracks, the compact ids being the
      rank of the official ids.
    - ``class_aware``: tracks only match detections (and are only de-duplicated against
      tracks) of the same class; the class column must then be given. Otherwise a track's
      class is simply that of its last matched detection.
    - ``return_lost``: also return the lost tracks after the confirmed ones, with their
      predicted box, last score and class, and ``det_index = -1`` (the marker of a row not
      matched on this frame). ``lost_tracks()`` returns the same rows on demand.
    - ``velocity_noise_exponent`` (on by default, off when ``iou_inclusive``): the Kalman velocity noise
      grows as ``(30 / frame_rate) ** exponent`` (default 1) from the official per-30-fps-frame constants,
      so at 7-10 fps the velocity follows turns and panning cameras within a few frames and a track that
      loses its person coasts to where they reappear (``TrackerConfig``). Nothing changes at 30 fps.
    - ``freeze_size_on_low_score`` (on by default, off when ``iou_inclusive``): a second-stage (low-score)
      match updates the track's position but not its size: such boxes usually cover only the visible part
      of a partly hidden person, and a shrunken track misses the person's next full box.
    - ``buffer_ratio``, ``second_buffer_ratio`` (opt-in): Buffered IoU (C-BIoU) in the first/unconfirmed
      and in the second association: boxes grow by that fraction of their size before IoU.
    - ``update(..., frame_gap=k)`` (or ``timestamp=`` seconds, converted with
      ``round(dt * frame_rate)``, at least 1): k frame periods passed since the last
      update (k - 1 frames were not processed). The Kalman prediction is applied k times
      (the per-frame motion model, k steps ahead; velocities kept) and the frame counter
      advances by k, so lost tracks age by k towards ``max_time_lost``. (Unconfirmed
      tracks are never predicted, gap or not, as in the official tracker.)
    - ``gap_reacquire_s`` (on by default, off when ``iou_inclusive``): when at least that long passed since the
      previous update (an outage of a live stream), the tracks tracked before the gap are matched to the
      high-score detections first, within the Kalman filter's own predicted uncertainty (``tracker.gap``), then
      IoU takes the rest. Updates closer together are not affected. With ``gap_pair_cost`` set (appearance:
      ``tracker.reid``), the updates within ``gap_reacquire_s`` after the gap also give the tracks of before it
      that are still not found the high-score detections IoU left over, by the same gate: a person missed by the
      detector on the first frame after an outage is found on the next one, not started as a new track.

    Bad input: wrong number of dimensions or columns, or a non-numeric dtype, raise
    ``ValueError``. Empty arrays of shape (0,), (0, 5), (0, 6) mean no detections. Rows
    with NaN/inf or with x2 <= x1 or y2 <= y1 are dropped (``last_dropped`` counts them;
    ``det_index`` still refers to the original rows). Scores are clipped into [0, 1].

    Memory is bounded: removed tracks are not kept.

    Snapshots: ``state_dict()`` returns a ``tracker.state.TrackerState`` (plain arrays and a typed header,
    serialisable with ``to_bytes``/``save`` without pickle); ``load_state_dict(state)`` on a tracker with the
    same config, or ``ByteTracker.from_state(state)``, continues the run with output identical to an
    uninterrupted one. Pickling a tracker goes through the same snapshot.

    Speed: all tracks live in one struct-of-arrays table (``TrackTable``) whose Kalman
    state is column-major, so prediction and correction (block-diagonal covariance, see
    ``tracker.kalman``) are one inner loop over all tracks per operation; unconfirmed tracks
    are put back after predicting the whole table. IoU is only computed for overlapping
    pairs in crowds (sort-and-sweep), and the duplicate check only for boxes whose edges are
    close enough to pass its threshold; the LAP solver only sees the rows/columns that
    compete for a detection (unique pairs, and the clear winner of a small star such as two
    tracks wanting one detection, are matched directly, with the same optimum as the
    official ``lap.lapjv`` call; exact ties are left to the solver), on a cost matrix built
    from the candidate costs already computed. With few tracks a frame costs mostly
    per-call overhead, so small frames run the associations on Python lists (same
    arithmetic) and every stage avoids numpy calls on empty or tiny arrays.
    """

    __slots__ = ("_config", "_max_time_lost", "_match_disjoint", "frame_id", "update_count", "last_dropped",
                 "_last_rows", "_timer", "_tracks", "_lost_start", "_created", "_shown", "_last_timestamp",
                 "_predicted_rows", "_unconfirmed_rows", "_update_frames",
                 "_buffer_ratio", "_second_buffer_ratio", "_velocity_noise", "_freeze_size", "_gap_frames",
                 "_gap_from", "_gap_until", "gap_pair_cost", "_shared_shift")

    def __init__(self, config: TrackerConfig | None = None, **settings: Any) -> None:
        """``ByteTracker(config)``, ``ByteTracker(frame_rate=30, match_thresh=0.8, ...)`` (``TrackerConfig``
        field names), or both: keywords override fields of ``config``. Raises ValueError on a bad setting."""
        if config is not None and not isinstance(config, TrackerConfig):
            raise TypeError(f"ByteTracker's positional argument is a TrackerConfig, got {type(config).__name__}; "
                            "give settings as keywords (ByteTracker(frame_rate=30, ...))")
        config = config or TrackerConfig()
        self._config = config.replace(**settings) if settings else config
        # Derived once: the config is frozen, so they cannot fall out of step with it.
        self._max_time_lost = self._config.max_time_lost
        self._match_disjoint = self._config.match_disjoint
        self._buffer_ratio = float(self._config.buffer_ratio)
        self._second_buffer_ratio = float(self._config.second_buffer_ratio)
        self._freeze_size = self._config.effective_freeze_size_on_low_score
        self._shared_shift = self._config.effective_shared_shift
        gap_s = self._config.effective_gap_reacquire_s
        # Frames between two updates that make a gap (at least 2: one frame apart is no gap); 0 s: never.
        self._gap_frames = max(2, math.ceil(gap_s * self._config.frame_rate)) if gap_s > 0 else sys.maxsize
        # Optional cost of the outage stage's pairs: ``gap_pair_cost(track_ids, det_boxes)`` -> (T, N) float,
        # added to the motion cost, +inf excluding the pair
        # (``tracker.reid.ReidTracker`` sets it to compare appearances). Not part of the state: its owner sets it.
        self.gap_pair_cost: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
        self._velocity_noise = kalman.velocity_noise_scale(self._config.frame_rate,
                                                           self._config.effective_velocity_noise_exponent)
        self.reset()

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **settings: Any) -> ByteTracker:
        """A tracker configured by an Ultralytics ``bytetrack.yaml`` (``TrackerConfig.from_yaml``); keywords
        override the file's values (e.g. ``frame_rate``)."""
        return cls(TrackerConfig.from_yaml(path), **settings)

    @property
    def config(self) -> TrackerConfig:
        """The settings (frozen): for others, build a new tracker, e.g. ``ByteTracker(config.replace(...))``."""
        return self._config

    @property
    def max_time_lost(self) -> int:
        """Frames a lost track is kept (``config.max_time_lost``)."""
        return self._max_time_lost

    def reset(self) -> None:
        """Forget all tracks and restart frame counting and ids (call between videos)."""
        self.frame_id = 0
        self.update_count = 0
        self.last_dropped = 0
        self._timer = _StageTimer(0)
        self._tracks = TrackTable.empty()
        self._lost_start = 0  # the table's rows are the tracked list, then the lost list from this row on
        self._created = 0
        self._shown = 0
        self._last_timestamp: float | None = None
        # (rows in the last output, how many of them come first and were matched on that frame): the rest
        # are predictions; two ints cost less per update than a mask (``last_predicted`` builds it on demand).
        self._last_rows = (0, 0)
        # Table rows that the last ``predict()`` returned, in its order; None once ``update`` has run.
        self._predicted_rows: np.ndarray | None = None
        # Table rows that the last ``unconfirmed_boxes()`` returned; None once ``update`` has run.
        self._unconfirmed_rows: np.ndarray | None = None
        # Frames of the update before the last one and of the last one (0: none yet).
        self._update_frames = (0, 0)
        # The last outage: the frame of the update before it, and the last frame of the window after it in which
        # its tracks not found yet are still looked for (``gap_pair_cost`` only; 0, 0: none).
        self._gap_from, self._gap_until = 0, 0

    def state_dict(self) -> TrackerState:
        """A snapshot of everything ``update`` depends on (copied: later updates do not change it)."""
        header = StateHeader(config=self._config, frame_id=self.frame_id, update_count=self.update_count,
                             lost_start=self._lost_start, created=self._created, shown=self._shown,
                             last_timestamp=self._last_timestamp, last_dropped=self.last_dropped,
                             gap_from=self._gap_from, gap_until=self._gap_until)
        return TrackerState.from_table(header, self._tracks)

    def load_state_dict(self, state: TrackerState) -> None:
        """Continue from ``state`` (from ``state_dict``, ``TrackerState.load`` or ``from_bytes``).

        Raises ValueError, changing nothing, when the state was made with other settings (naming each
        differing field): the same tracks under other thresholds would not be the same run.
        """
        if not isinstance(state, TrackerState):
            raise ValueError(f"load_state_dict takes a TrackerState (ByteTracker.state_dict()), "
                             f"got {type(state).__name__}")
        differences = state.config_differences(self._config)
        if differences:
            raise ValueError("tracker state was made with other settings: " + "; ".join(differences))
        header = state.header
        self.reset()
        self.frame_id, self.update_count, self.last_dropped = header.frame_id, header.update_count, header.last_dropped
        self._tracks, self._lost_start = state.to_table(), header.lost_start
        self._created, self._shown, self._last_timestamp = header.created, header.shown, header.last_timestamp
        # The frame of the last update (the snapshot's frame when it was taken right after one): an update after a
        # restore then sees the same gap (``gap_reacquire_s``) as an uninterrupted run.
        self._update_frames = (0, header.frame_id)
        self._gap_from, self._gap_until = header.gap_from, header.gap_until

    @classmethod
    def from_state(cls, state: TrackerState) -> ByteTracker:
        """A tracker with the snapshot's settings, continuing from it."""
        if not isinstance(state, TrackerState):
            raise ValueError(f"from_state takes a TrackerState, got {type(state).__name__}")
        tracker = cls(state.header.config)
        tracker.load_state_dict(state)
        return tracker

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        # Pickle as the validated npz snapshot, so unpickling checks it like any other snapshot.
        return _tracker_from_bytes, (self.state_dict().to_bytes(),)

    @property
    def last_stage_ns(self) -> dict[str, int]:
        """Nanoseconds the last ``update`` spent per stage: predict, iou, assignment, bookkeeping."""
        return self._timer.totals

    @property
    def num_tracks(self) -> int:
        """Tracks held in memory (tracked, unconfirmed and lost)."""
        return len(self._tracks)

    def update(self, detections: object, img: object = None, *, frame_gap: int | None = None,
               timestamp: float | None = None) -> np.ndarray:
        """Track one frame; returns (M, 8) rows ``x1, y1, x2, y2, track_id, score, class, det_index``.

        ``img`` (the frame) is accepted so BoxMOT's ``update(dets, img)`` call works; ByteTrack uses
        motion and overlap only, so it is not read. The output columns are BoxMOT's too.
        """
        timer = _StageTimer(perf_counter_ns())
        dets, steps = self._begin_frame(detections, frame_gap, timestamp)
        if len(self._tracks) == 0 and dets.rows.size == 0:  # nothing to track, nothing to start
            timer.lap("bookkeeping")
            self._timer = timer
            self._last_rows, self._predicted_rows, self._unconfirmed_rows = (0, 0), None, None
            return np.empty((0, 8))

        config = self._config
        det_boxes, det_xyah = kalman.measure(dets.boxes)
        high = (dets.scores > config.track_high_thresh).nonzero()[0]
        tracks = self._tracks
        count = len(tracks)
        lost_start = self._lost_start

        # Stage 1: confirmed tracked + lost tracks vs high-score detections.
        timer.lap("bookkeeping")
        # Lost tracks were all confirmed (only pool tracks get lost), so the pool is the confirmed rows.
        pool = tracks.activated.nonzero()[0]
        unconfirmed = (~tracks.activated).nonzero()[0] if pool.size < count else EMPTY_INDEX
        _predict_pool(tracks, pool, unconfirmed, lost_start, steps, self._velocity_noise)
        timer.lap("predict")
        # One IoU matrix serves all three associations: every row is either a predicted pool
        # track or an (unpredicted) unconfirmed one, and unmatched tracks keep their box.
        boxes = kalman.xyah_to_tlbr(tracks.mean)
        frame_data = self._frame_data(boxes, det_boxes, dets, self._buffer_ratio)
        timer.lap("iou")
        across, after_gap = (EMPTY_INDEX, EMPTY_INDEX), self._note_gap()
        if lost_start and high.size and after_gap:  # an outage: its tracks first, by their uncertainty
            across, pool, high = self._match_across_gap(pool, lost_start, high, (det_xyah, det_boxes), timer)
        match_rows, match_cols, free_rows, free_high = self._associate(
            frame_data, pool, high, config.fuse_score, config.match_thresh, timer)
        first = (_join(across[0], pool[match_rows]), _join(across[1], high[match_cols]))
        first, free_rows, free_high = self._match_leftovers(first, (pool, free_rows, high, free_high), after_gap,
                                                            (det_xyah, det_boxes, dets, boxes), timer)
        # Rows from lost_start on are the lost list: the only tracks not in the TRACKED state.
        refound = first[0][first[0] >= lost_start] if lost_start < count else EMPTY_INDEX

        second, newly_lost = self._match_low_scores(frame_data, pool[free_rows], (boxes, det_boxes, dets), timer)

        # Unconfirmed tracks (not predicted, official quirk) vs the remaining high detections.
        remaining = high[free_high]
        match_rows, match_cols, free_rows, free_cols = self._associate(
            frame_data, unconfirmed, remaining, config.fuse_score, config.unconfirmed_match_thresh, timer)
        confirmed = unconfirmed[match_rows]
        if unconfirmed.size:
            tracks.state[unconfirmed[free_rows]] = REMOVED
        # The three stages matched disjoint tracks to disjoint detections: update them at once.
        self._apply_matches(_join(first[0], second[0], confirmed), _join(first[1], second[1], remaining[match_cols]),
                            refound, confirmed, det_xyah, dets)
        return self._finish_frame(remaining[free_cols], (det_xyah, dets), (count, lost_start), refound, newly_lost,
                                  timer)

    def _note_gap(self) -> bool:
        """Whether at least ``gap_reacquire_s`` passed since the previous update (counted in frames, so
        ``predict()`` calls in between count as they do in ``update(frame_gap=)``). Not a pure query: with
        ``gap_pair_cost``, such an outage opens the window after it (``_match_after_gap``), once per update."""
        previous, now = self._update_frames
        if previous > 0 and now - previous >= self._gap_frames:
            if self.gap_pair_cost is not None:
                self._gap_from, self._gap_until = previous, now + self._gap_frames
            return True
        return False

    def _match_leftovers(self, first: tuple[np.ndarray, np.ndarray],
                         free: tuple[np.ndarray, np.ndarray | slice, np.ndarray, np.ndarray | slice], after_gap: bool,
                         measured: tuple[np.ndarray, np.ndarray, CleanDetections, np.ndarray], timer: _StageTimer,
                         ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | slice, np.ndarray | slice]:
        """The first stage's own second chances for the tracks and high detections IoU left: the window after an
        outage (``_match_after_gap``), then the shared shift (``_match_shifted``). ``free``: the pool, the
        positions in it left, ``high`` and the positions in it left. Returns the first stage's (rows,
        detections) and the positions still left."""
        pool, free_rows, high, free_high = free
        det_xyah, det_boxes, dets, boxes = measured
        lost_start, count = self._lost_start, len(self._tracks)
        if not after_gap and self.frame_id <= self._gap_until and lost_start < count:
            first, free_high = self._match_after_gap(first, (pool[free_rows], high, free_high), lost_start,
                                                     (det_xyah, det_boxes), timer)
        if self._shared_shift > 0 and not after_gap and first[0].size >= SHARED_SHIFT_MIN_MATCHES:
            first, free_rows, free_high = self._match_shifted(first, (pool, free_rows, high, free_high),
                                                              (boxes, det_boxes, dets), timer)
        return first, free_rows, free_high

    def _match_shifted(self, first: tuple[np.ndarray, np.ndarray],
                       free: tuple[np.ndarray, np.ndarray | slice, np.ndarray, np.ndarray | slice],
                       measured: tuple[np.ndarray, np.ndarray, CleanDetections], timer: _StageTimer,
                       ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | slice, np.ndarray | slice]:
        """``TrackerConfig.shared_shift``: the tracks and high detections the first stage left, associated by IoU
        once more with every track box moved by the median displacement of the stage's matches, when that
        median is at least ``shared_shift`` box heights. Same costs and limit as the first stage."""
        pool, free_rows, high, free_high = free
        boxes, det_boxes, dets = measured
        left_rows = np.arange(pool.size)[free_rows]
        left = np.arange(high.size)[free_high]
        if left_rows.size == 0 or left.size == 0:
            return first, free_rows, free_high
        rows, det_ids = first
        predicted, measured_boxes = take_rows(boxes, rows), det_boxes[det_ids]
        shift = np.median((measured_boxes[:, :2] + measured_boxes[:, 2:4] - predicted[:, :2] - predicted[:, 2:4])
                          * 0.5, axis=0)
        if math.hypot(*shift) < self._shared_shift * float(np.median(predicted[:, 3] - predicted[:, 1])):
            return first, free_rows, free_high
        track_rows, det_left = pool[left_rows], high[left]
        frame = self._frame_data(boxes + np.tile(shift, 2), det_boxes, dets, self._buffer_ratio, track_rows, det_left)
        match_rows, match_cols, _, _ = self._associate(frame, track_rows, det_left, self._config.fuse_score,
                                                       self._config.match_thresh, timer)
        if match_rows.size == 0:
            return first, free_rows, free_high
        return ((_join(rows, track_rows[match_rows]), _join(det_ids, det_left[match_cols])),
                np.delete(left_rows, match_rows), np.delete(left, match_cols))

    def _match_across_gap(self, pool: np.ndarray, lost_start: int, high: np.ndarray,
                          measured: tuple[np.ndarray, np.ndarray],
                          timer: _StageTimer) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """After a gap (``gap_reacquire_s``): the tracks tracked before it vs the high detections, gated by the
        Kalman filter's uncertainty (``tracker.gap``), before IoU. Returns the matched (rows, detections) and the
        pool rows and high detections left for the IoU stages.

        First, not after IoU: after seconds a predicted box often overlaps the wrong person, and IoU's match would
        take that person's detection from their own track (on PETS09, 3 s gaps: 23 swaps instead of 30 of 148)."""
        timer.lap("bookkeeping")
        tracks, (det_xyah, det_boxes) = self._tracks, measured
        tracked = pool[pool < lost_start]  # the pool's rows are ascending: the tracked list's rows come first
        track_pos, det_pos = gap_matches(take_rows(tracks.mean, tracked), take_rows(tracks.cov, tracked),
                                         take_rows(det_xyah, high), self._gap_costs(tracked, det_boxes[high]))
        timer.lap("assignment")
        if track_pos.size == 0:
            return (EMPTY_INDEX, EMPTY_INDEX), pool, high
        rows, det_ids = tracked[track_pos], high[det_pos]
        return ((rows, det_ids), np.setdiff1d(pool, rows, assume_unique=True),
                np.setdiff1d(high, det_ids, assume_unique=True))

    def _match_after_gap(self, first: tuple[np.ndarray, np.ndarray],
                         free: tuple[np.ndarray, np.ndarray, np.ndarray | slice], lost_start: int,
                         measured: tuple[np.ndarray, np.ndarray], timer: _StageTimer,
                         ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | slice]:
        """Within the window after an outage: its tracks not found since (lost, last matched on the update before
        it) vs the high detections the first stage left, by the outage stage's gate and pair cost. ``free``: the
        pool rows left, ``high`` and the positions in it left. Returns the first stage's (rows, detections) with
        these matches added (lost tracks: stage 2 takes tracked ones only) and the positions still left."""
        tracks, (det_xyah, det_boxes) = self._tracks, measured
        free_pool, high, free_high = free
        rows = free_pool[(free_pool >= lost_start) & (tracks.last_frame[free_pool] == self._gap_from)]
        left = np.arange(high.size)[free_high]  # positions in ``high`` (``free_high`` may be a slice)
        if rows.size == 0 or left.size == 0:
            return first, free_high
        timer.lap("bookkeeping")
        dets = high[left]
        track_pos, det_pos = gap_matches(take_rows(tracks.mean, rows), take_rows(tracks.cov, rows),
                                         take_rows(det_xyah, dets), self._gap_costs(rows, det_boxes[dets]))
        timer.lap("assignment")
        if track_pos.size == 0:
            return first, free_high
        return ((_join(first[0], rows[track_pos]), _join(first[1], dets[det_pos])),
                np.delete(left, det_pos))

    def _gap_costs(self, rows: np.ndarray, det_boxes: np.ndarray) -> np.ndarray | None:
        """``gap_pair_cost`` of the tracks at table ``rows`` (by their output ids) and the boxes; None without it."""
        if self.gap_pair_cost is None or rows.size == 0:
            return None
        return self.gap_pair_cost(self._shown_ids()[rows], det_boxes)

    def _shown_ids(self) -> np.ndarray:
        """Every table row's id as ``update`` outputs it (``id_mode``)."""
        tracks = self._tracks
        return tracks.display_id if self._config.id_mode == "compact" else tracks.track_id

    def _begin_frame(self, detections: object, frame_gap: int | None,
                     timestamp: float | None) -> tuple[CleanDetections, int]:
        """Validate the frame's input and advance the frame counters; returns the detections and the frames
        elapsed since the last update."""
        config = self._config
        dets = clean_detections(detections)
        if config.class_aware and not dets.has_class and dets.rows.size:
            raise ValueError("class_aware=True needs detections with a class column (N, 6)")
        steps = check_frame_step(frame_gap, timestamp, self._last_timestamp, config.frame_rate)
        if timestamp is not None:
            self._last_timestamp = float(timestamp)
        self.frame_id += steps
        self.update_count += 1
        self._update_frames = (self._update_frames[1], self.frame_id)
        self.last_dropped = dets.dropped
        return dets, steps

    def _match_low_scores(self, frame_data: _FrameData, free_pool: np.ndarray,
                          measured: tuple[np.ndarray, np.ndarray, CleanDetections],
                          timer: _StageTimer) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Stage 2: still-unmatched tracked tracks vs low-score detections (plain IoU); returns the matched
        (tracks, detections) and the tracks that become lost."""
        config, tracks = self._config, self._tracks
        second_pool = free_pool
        if self._lost_start < len(tracks):
            second_pool = second_pool[second_pool < self._lost_start]
        low = EMPTY_INDEX
        scores = measured[2].scores
        if second_pool.size:
            low = ((scores > config.track_low_thresh) & (scores < config.track_high_thresh)).nonzero()[0]
        second_data = frame_data
        if low.size and self._second_buffer_ratio != self._buffer_ratio:
            timer.lap("bookkeeping")
            boxes, det_boxes, dets = measured
            second_data = self._frame_data(boxes, det_boxes, dets, self._second_buffer_ratio, second_pool, low)
            timer.lap("iou")
        match_rows, match_cols, free_rows, _ = self._associate(
            second_data, second_pool, low, False, config.second_match_thresh, timer)
        newly_lost = second_pool[free_rows]
        if newly_lost.size:
            tracks.state[newly_lost] = LOST
        return (second_pool[match_rows], low[match_cols]), newly_lost

    def _finish_frame(self, unmatched_high: np.ndarray, measured: tuple[np.ndarray, CleanDetections],
                      before: tuple[int, int], refound: np.ndarray, newly_lost: np.ndarray,
                      timer: _StageTimer) -> np.ndarray:
        """New tracks, timed-out lost tracks, the lists rebuilt and the frame's output rows."""
        config, tracks = self._config, self._tracks
        det_xyah, dets = measured
        count, lost_start = before
        # New tracks from confident unmatched high detections.
        new_dets = unmatched_high
        if new_dets.size:
            new_dets = new_dets[dets.scores[new_dets] >= config.new_track_thresh]
        if new_dets.size:
            tracks = tracks.append(self._new_tracks(new_dets, det_xyah, dets))

        # Lost tracks that waited too long (they stay in the lost list one more frame).
        if lost_start < count:
            waited = self.frame_id - tracks.last_frame[lost_start:count]
            timed_out = lost_start + (waited > self._max_time_lost).nonzero()[0]
            tracks.state[timed_out] = REMOVED
        else:
            timed_out = EMPTY_INDEX

        tracked_list, lost_list = _rebuild_lists(tracks, count, lost_start, refound, newly_lost, timed_out)
        boxes = kalman.xyah_to_tlbr(tracks.mean)
        tracked_list, lost_list = self._remove_duplicates(tracks, boxes, tracked_list, lost_list, timer)
        order = np.concatenate((tracked_list, lost_list))
        if order.size != len(tracks) or np.count_nonzero(order[1:] < order[:-1]):  # not the identity
            tracks, boxes = tracks.take(order), take_rows(boxes, order)
        self._tracks, self._lost_start = tracks, tracked_list.size

        # Rows are in list order now: the tracked list first.
        output = self._output_rows(_true_rows(tracks.activated[:tracked_list.size]), boxes)
        matched_count = output.shape[0]
        if config.return_lost:
            output = np.concatenate((output, self.lost_tracks()))
        self._last_rows, self._predicted_rows, self._unconfirmed_rows = (output.shape[0], matched_count), None, None
        timer.lap("bookkeeping")
        self._timer = timer
        return output

    @property
    def last_predicted(self) -> np.ndarray:
        """(M,) bool over the rows of the last ``update``/``predict`` output: True where the box is a
        prediction, not corrected by a detection on that frame (every row of ``predict()``, the lost rows
        of ``update`` with ``return_lost``). Such rows also have ``det_index`` -1."""
        total, matched = self._last_rows
        return np.arange(total) >= matched

    def predict(self, frame_size: tuple[int, int] | None = None, *, include_missed: bool = False) -> np.ndarray:
        """Advance one frame without detections; returns the confirmed tracked tracks at their predicted boxes.

        For frames the detector skips: ``K - 1`` calls of ``predict()`` and then ``update(detections)`` give
        exactly (bit for bit, ids included) what ``update(detections, frame_gap=K)`` gives, because this is
        the same Kalman step on the same tracks (lost ones too, unconfirmed ones not, as in ``update``) and the
        same frame count; no track changes state here: losing, refinding and expiring happen in ``update``.

        Rows are ``update``'s columns ``x1, y1, x2, y2, track_id, score, class, det_index``: the score and class
        of each track's last matched detection and ``det_index`` -1 (``last_predicted`` is all True). Tracks
        created on the last detection frame are not returned: they are unconfirmed until a detection matches
        them again. ``frame_size`` (width, height) clips the boxes to the frame and leaves out tracks predicted
        wholly outside it (the tracks themselves are kept).

        ``include_missed=True`` also returns, after those, the lost tracks that the last ``update`` missed but the
        one before it matched (missed by one detector call). With a detector on every frame such a track, mostly
        a detection that flickered off for one frame, is back on the next frame; with a detector every K-th frame
        leaving it out until the next detection frame costs K - 1 frames of misses for each flicker.

        With ``update(timestamp=...)``, each call counts as one frame period (``1 / frame_rate`` seconds) of the
        time to the next update.

        ``correct_predicted(boxes)`` then replaces these predictions with better ones (``tracker.propagation``).
        """
        if frame_size is not None:
            width, height = _frame_size(frame_size)
        self.frame_id += 1
        if self._last_timestamp is not None:
            self._last_timestamp += 1.0 / self._config.frame_rate
        tracks = self._tracks
        count = len(tracks)
        pool = tracks.activated.nonzero()[0]
        if pool.size:
            unconfirmed = (~tracks.activated).nonzero()[0] if pool.size < count else EMPTY_INDEX
            _predict_pool(tracks, pool, unconfirmed, self._lost_start, 1, self._velocity_noise)
        rows = tracks.activated[:self._lost_start].nonzero()[0]
        if include_missed and self._lost_start < count:
            lost = slice(self._lost_start, count)
            # LOST, not REMOVED: a track that timed out (track_buffer shorter than the interval) is gone.
            missed = (tracks.last_frame[lost] == self._update_frames[0]) & (tracks.state[lost] == LOST)
            lost_rows = self._lost_start + missed.nonzero()[0]
            if lost_rows.size:
                rows = np.concatenate((rows, lost_rows))
        output = self._output_rows(rows, kalman.xyah_to_tlbr(tracks.mean))
        output[:, 7] = -1
        if frame_size is not None and rows.size:
            np.clip(output[:, 0:4:2], 0.0, width, out=output[:, 0:4:2])
            np.clip(output[:, 1:4:2], 0.0, height, out=output[:, 1:4:2])
            inside = (output[:, 2] > output[:, 0]) & (output[:, 3] > output[:, 1])
            if not inside.all():
                rows, output = rows[inside], output[inside]
        self._predicted_rows = rows
        self._last_rows = (output.shape[0], 0)
        return output

    def correct_predicted(self, boxes: object) -> int:
        """Correct the tracks the last ``predict()`` returned with measured boxes (e.g. optical flow).

        ``boxes`` is (M, 4) ``x1, y1, x2, y2``, row i for row i of that output; rows with NaN/inf or no area
        are left as predicted. Each other track gets a Kalman update with its box as the measurement, so
        position and velocity move toward it and the next ``update`` associates detections with the corrected
        box. The tracks' last-detection frame is not changed (a track still needs detections to stay alive).
        Returns the number of tracks corrected. Raises ValueError when ``update`` ran since that ``predict``
        (the rows would no longer be the same tracks) or the shape is wrong.
        """
        if self._predicted_rows is None:
            raise ValueError("correct_predicted() needs the output of predict() on this frame: call predict() "
                             "first (update() has run since, or predict() never did)")
        return self._correct_rows(self._predicted_rows, boxes, "predict()")

    def unconfirmed_boxes(self) -> np.ndarray:
        """(U, 4) ``x1, y1, x2, y2`` of the unconfirmed tracks (created on the last ``update``, not shown yet).

        Between detector calls they are neither predicted (official: their velocity is unknown) nor returned,
        so an object that moves far enough before the next detection frame fails the association and starts
        again as a new track, over and over. Image-based propagation measures where they went and passes it
        to ``correct_unconfirmed`` (same rows, same order).
        """
        tracks = self._tracks
        rows = (~tracks.activated[:self._lost_start]).nonzero()[0]
        self._unconfirmed_rows = rows
        return kalman.xyah_to_tlbr(take_rows(tracks.mean, rows)) if rows.size else np.empty((0, 4))

    def correct_unconfirmed(self, boxes: object) -> int:
        """Move the unconfirmed tracks of the last ``unconfirmed_boxes()`` to measured boxes (rows with NaN/inf or
        no area are left alone); returns how many moved. Their box is replaced, not blended as in
        ``correct_predicted``: they are never Kalman-predicted, so there is no motion estimate to weigh the
        measurement against, and a blend would lag the object by a share of its motion on every frame."""
        if self._unconfirmed_rows is None:
            raise ValueError("correct_unconfirmed() needs unconfirmed_boxes() on this frame: call it first "
                             "(update() has run since, or it never was)")
        return self._correct_rows(self._unconfirmed_rows, boxes, "unconfirmed_boxes()", replace=True)

    def _correct_rows(self, rows: np.ndarray, boxes: object, source: str, replace: bool = False) -> int:
        """Kalman update (``replace``: the box part of the mean set) of table ``rows`` with (len(rows), 4) measured
        boxes; invalid rows are skipped."""
        measured = np.asarray(boxes, dtype=np.float64)
        if measured.shape != (rows.size, 4):
            raise ValueError(f"boxes must be ({rows.size}, 4), one row per track {source} returned; "
                             f"got shape {measured.shape}")
        valid = (np.isfinite(measured).all(axis=1) & (measured[:, 2] > measured[:, 0])
                 & (measured[:, 3] > measured[:, 1]))
        rows = rows[valid]
        if rows.size:
            tracks = self._tracks
            _, xyah = kalman.measure(measured[valid])
            if replace:
                tracks.mean[rows, :4] = xyah
            else:
                tracks.mean[rows], tracks.cov[rows] = kalman.update(take_rows(tracks.mean, rows),
                                                                    take_rows(tracks.cov, rows), xyah)
        return int(rows.size)

    def apply_motion(self, affine: object) -> None:
        """Move every track (tracked, lost, unconfirmed) by a 2x3 image affine (camera motion between the
        previous frame and this one, ``tracker.camera_motion``): ``kalman.warp_affine`` on the Kalman states."""
        matrix = np.asarray(affine, dtype=np.float64)
        if matrix.shape != (2, 3) or not np.isfinite(matrix).all():
            raise ValueError(f"affine must be a finite 2x3 matrix, got shape {matrix.shape}")
        if len(self._tracks):
            kalman.warp_affine(self._tracks.mean, self._tracks.cov, matrix)

    def refind(self, track_ids: object, detections: object, det_index: object) -> np.ndarray:
        """Give lost tracks detections of the last ``update`` that the motion stages left unmatched (re-finding
        by appearance: ``tracker.reid.ReidTracker``); returns their (K, 8) output rows, to add to ``update``'s.

        ``track_ids`` (K,): ids as ``update``/``lost_tracks()`` output them, each of a track in the lost list;
        ``detections``: the array the last ``update`` took; ``det_index`` (K,): its rows, one per id. Each track
        gets the TRACKED state, last-match frame, score, class and ``det_index`` of a motion match, and its Kalman
        state restarts at the detection (velocity unknown, as a new track's); a track that this ``update`` started
        from the same detection is dropped, as the detection is the lost track's and not a new object
        (unconfirmed, it was never output). Raises
        ValueError, changing nothing, for an id not in the lost list, a row out of range, invalid or given twice,
        or a detection a tracked track already matched on this frame.
        """
        ids = np.asarray(track_ids, dtype=np.int64).ravel()
        det_rows = np.asarray(det_index, dtype=np.int64).ravel()
        if ids.size == det_rows.size == 0:
            return np.empty((0, 8))
        rows, det_ids, dets = self._refind_rows(ids, det_rows, detections)
        tracks = self._tracks
        count, lost_start = len(tracks), self._lost_start
        # This frame's matches of the tracked list: new tracks (started now) may give theirs up, others not.
        tracked = np.arange(lost_start)
        matched_now = tracked[tracks.last_frame[:lost_start] == self.frame_id]
        holder = tracks.match[matched_now, DET_ROW].astype(np.int64)
        taken = np.isin(holder, det_rows)
        new = tracks.start_frame[matched_now] == self.frame_id
        if (taken & ~new).any():
            raise ValueError(f"refind: detection rows {holder[taken & ~new].tolist()} were matched by tracked "
                             "tracks on this frame")
        dropped = matched_now[taken]

        # The Kalman state restarts at the detection, as a new track's: after a gap the motion model could not
        # bridge, an update across the jump would turn the distance into a large, wrong velocity.
        _, det_xyah = kalman.measure(dets.boxes[det_ids])
        tracks.mean[rows], tracks.cov[rows] = kalman.initiate(det_xyah)
        tracks.state[rows] = TRACKED
        tracks.last_frame[rows] = self.frame_id
        tracks.match[rows] = take_rows(dets.match_info, det_ids)
        # List order: the tracked list, then the re-found tracks (as the official order puts refound ones), then
        # the rest of the lost list.
        keep_tracked = np.setdiff1d(tracked, dropped, assume_unique=True)
        rest = np.setdiff1d(np.arange(lost_start, count), rows, assume_unique=True)
        tracks = tracks.take(np.concatenate((keep_tracked, rows, rest)))
        self._tracks, self._lost_start = tracks, keep_tracked.size + rows.size
        out_rows = np.arange(keep_tracked.size, self._lost_start)
        total, matched = self._last_rows
        # Re-found rows are matched rows; they only keep ``last_predicted`` right when no lost rows follow.
        self._last_rows = (total + rows.size, matched + rows.size) if total == matched else (0, 0)
        self._predicted_rows, self._unconfirmed_rows = None, None
        return self._output_rows(out_rows, kalman.xyah_to_tlbr(tracks.mean))

    def _refind_rows(self, ids: np.ndarray, det_rows: np.ndarray,
                     detections: object) -> tuple[np.ndarray, np.ndarray, CleanDetections]:
        """``refind``'s checks: the table rows of the lost tracks ``ids``, the positions of ``det_rows`` among
        the cleaned detections, and those detections (ValueError, changing nothing, when a check fails)."""
        if ids.size != det_rows.size:
            raise ValueError(f"refind needs one detection row per track id, got {ids.size} ids and "
                             f"{det_rows.size} rows")
        if np.unique(ids).size != ids.size or np.unique(det_rows).size != det_rows.size:
            raise ValueError("refind: a track id or a detection row is given twice")
        dets = clean_detections(detections)
        position = np.full(int(dets.rows[-1]) + 1 if dets.rows.size else 0, -1)
        position[dets.rows] = np.arange(dets.rows.size)
        bad_rows = det_rows[(det_rows < 0) | (det_rows >= position.size)]
        if bad_rows.size or (position[det_rows] < 0).any():
            raise ValueError(f"refind: detection rows {det_rows.tolist()} must be valid rows of the "
                             f"{dets.rows.size} detections given")
        det_ids = position[det_rows]
        tracks = self._tracks
        count, lost_start = len(tracks), self._lost_start
        lost_ids = self._shown_ids()[lost_start:count]
        order = np.argsort(lost_ids, kind="stable")
        where = np.searchsorted(lost_ids[order], ids).clip(0, max(lost_ids.size - 1, 0))
        found = lost_ids.size > 0
        if not found or not np.array_equal(lost_ids[order][where], ids):
            missing = ids if not found else ids[lost_ids[order][where] != ids]
            raise ValueError(f"refind: track ids {missing.tolist()} are not lost tracks")
        rows = lost_start + order[where]
        return rows, det_ids, dets

    def update_with_detections(self, detections: sv.Detections) -> sv.Detections:
        """supervision's call: the matched ``sv.Detections`` with ``tracker_id``, every field kept
        (``tracker.interop.update_with_detections``)."""
        from int8track.tracker.interop import update_with_detections

        return update_with_detections(self, detections)

    def lost_tracks(self) -> np.ndarray:
        """(L, 8) rows of the lost tracks: predicted box, id, last score, class, det_index -1.

        These are all tracks that can still be recovered, including one that just timed out
        (the official tracker keeps it matchable for one more frame).
        """
        tracks = self._tracks
        rows = self._output_rows(slice(self._lost_start, None), kalman.xyah_to_tlbr(tracks.mean))
        rows[:, 7] = -1
        return rows

    def _frame_data(self, boxes: np.ndarray, det_boxes: np.ndarray, dets: CleanDetections, buffer_ratio: float,
                    rows: np.ndarray | None = None, det_ids: np.ndarray | None = None) -> _FrameData:
        """IoU pairs of table rows against detections, boxes buffered by ``buffer_ratio`` (C-BIoU): all of
        them, or only ``rows`` against ``det_ids`` (the pairs still name table rows and detection rows)."""
        if rows is None or det_ids is None:
            pairs = iou_pairs(buffered(boxes, buffer_ratio), buffered(det_boxes, buffer_ratio),
                              self._config.iou_inclusive, self._match_disjoint)
        else:
            sub_rows, sub_cols, iou = iou_pairs(buffered(take_rows(boxes, rows), buffer_ratio),
                                                buffered(det_boxes[det_ids], buffer_ratio),
                                                self._config.iou_inclusive, self._match_disjoint)
            pairs = (rows[sub_rows], det_ids[sub_cols], iou)
        return _FrameData.build(boxes, det_boxes, dets, pairs)

    def _associate(self, frame: _FrameData, rows: np.ndarray, det_ids: np.ndarray, fuse: bool, thresh: float,
                   timer: _StageTimer) -> tuple[np.ndarray, np.ndarray, np.ndarray | slice, np.ndarray | slice]:
        """Match table rows ``rows`` to detections ``det_ids`` (cost 1 - IoU, optionally score-fused).

        Returns (matched rows, matched columns, unmatched rows, unmatched columns) as
        positions in ``rows`` / ``det_ids``; when one side is empty nothing matches and the
        unmatched positions are ``ALL`` (``slice(None)``: indexing with it is a cheap view).
        """
        if rows.size == 0 or det_ids.size == 0:
            return EMPTY_INDEX, EMPTY_INDEX, ALL, ALL
        timer.lap("bookkeeping")
        shape = (rows.size, det_ids.size)
        forbidden = max(1.0, thresh) + 1.0  # cost of a pair of different classes (class_aware)
        candidates: tuple[list[int], list[int], list[float]] | tuple[np.ndarray, np.ndarray, np.ndarray]

        def dense_cost(sub_rows: np.ndarray, sub_cols: np.ndarray) -> np.ndarray:
            return self._dense_cost(frame, candidates, rows, det_ids, sub_rows, sub_cols, forbidden)

        if frame.pair_lists is not None:
            candidates = self._small_candidates(frame, rows, det_ids, fuse, forbidden)
            timer.lap("iou")
            result = small_sparse_assignment(*candidates, shape, thresh, dense_cost)
        else:
            candidates = self._candidates(frame, rows, det_ids, fuse, forbidden)
            timer.lap("iou")
            result = sparse_assignment(*candidates, shape, thresh, dense_cost)
        timer.lap("assignment")
        return result

    def _candidates(self, frame: _FrameData, rows: np.ndarray, det_ids: np.ndarray, fuse: bool,
                    forbidden: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The frame's IoU pairs between ``rows`` and ``det_ids`` as (local row, local column, cost)."""
        pair_rows, pair_cols, iou = frame.pairs
        row_pos = np.full(frame.boxes.shape[0], -1)
        row_pos[rows] = np.arange(rows.size)
        col_pos = np.full(frame.det_boxes.shape[0], -1)
        col_pos[det_ids] = np.arange(det_ids.size)
        local_rows, local_cols = row_pos[pair_rows], col_pos[pair_cols]
        wanted = (local_rows >= 0) & (local_cols >= 0)
        local_rows, local_cols = local_rows[wanted], local_cols[wanted]
        cost = 1.0 - iou[wanted]
        if fuse:
            cost = fuse_score(cost, frame.dets.scores[det_ids[local_cols]])
        if self._config.class_aware:
            cost[self._tracks.match[rows[local_rows], CLASS] != frame.dets.classes[det_ids[local_cols]]] = forbidden
        return local_rows, local_cols, cost

    def _small_candidates(self, frame: _FrameData, rows: np.ndarray, det_ids: np.ndarray, fuse: bool,
                          forbidden: float) -> tuple[list[int], list[int], list[float]]:
        """``_candidates`` as Python lists, for frames with few pairs (same float operations)."""
        row_pos = {row: i for i, row in enumerate(rows.tolist())}
        col_pos = {det: j for j, det in enumerate(det_ids.tolist())}
        scores = frame.dets.scores.tolist()
        class_aware = self._config.class_aware
        if class_aware:
            track_classes, det_classes = self._tracks.match[:, CLASS].tolist(), frame.dets.classes.tolist()
        local_rows, local_cols, costs = [], [], []
        assert frame.pair_lists is not None  # _associate calls this only when the frame has pair lists
        for row, det, iou in zip(*frame.pair_lists):
            i, j = row_pos.get(row), col_pos.get(det)
            if i is None or j is None:
                continue
            cost = 1.0 - iou
            if fuse:
                cost = 1.0 - (1.0 - cost) * scores[det]
            if class_aware and track_classes[row] != det_classes[det]:
                cost = forbidden
            local_rows.append(i)
            local_cols.append(j)
            costs.append(cost)
        return local_rows, local_cols, costs

    def _dense_cost(self, frame: _FrameData, candidates: tuple, rows: np.ndarray, det_ids: np.ndarray,
                    sub_rows: np.ndarray, sub_cols: np.ndarray, forbidden: float) -> np.ndarray:
        """Cost matrix of ``rows[sub_rows]`` vs ``det_ids[sub_cols]``, equal to the official one.

        Pairs that do not overlap cost exactly 1 (fused: 1 - 0 * score), or ``forbidden`` if
        their classes differ; the overlapping ones are among the association's ``candidates``
        (local row, local column, cost).
        """
        local_rows, local_cols, cost = (np.asarray(part) for part in candidates)
        row_sub = np.full(rows.size, -1)
        row_sub[sub_rows] = np.arange(sub_rows.size)
        col_sub = np.full(det_ids.size, -1)
        col_sub[sub_cols] = np.arange(sub_cols.size)
        dense_rows, dense_cols = row_sub[local_rows], col_sub[local_cols]
        inside = (dense_rows >= 0) & (dense_cols >= 0)
        dense = np.ones((sub_rows.size, sub_cols.size))
        if self._config.class_aware:
            mask_classes(dense, self._tracks.match[rows[sub_rows], CLASS], frame.dets.classes[det_ids[sub_cols]],
                         forbidden)
        dense[dense_rows[inside], dense_cols[inside]] = cost[inside]
        return dense

    def _apply_matches(self, rows: np.ndarray, det_ids: np.ndarray, refound: np.ndarray, confirmed: np.ndarray,
                       det_xyah: np.ndarray, dets: CleanDetections) -> None:
        """Kalman-update matched tracks and (re)activate them (official update / re_activate).

        Of the matched ``rows``, only ``refound`` (lost until now) change state to TRACKED and only
        ``confirmed`` (unconfirmed until now) get activated: the others already are both.
        """
        if rows.size == 0:
            return
        tracks = self._tracks
        # Second-stage (low-score) detections are mostly partly hidden people: their box is the visible part.
        keep_size = dets.scores[det_ids] < self._config.track_high_thresh if self._freeze_size else None
        tracks.mean[rows], tracks.cov[rows] = kalman.update(take_rows(tracks.mean, rows), take_rows(tracks.cov, rows),
                                                            take_rows(det_xyah, det_ids), keep_size)
        if refound.size:
            tracks.state[refound] = TRACKED
        if confirmed.size:
            tracks.activated[confirmed] = True
        tracks.last_frame[rows] = self.frame_id
        tracks.match[rows] = take_rows(dets.match_info, det_ids)

    def _new_tracks(self, det_ids: np.ndarray, det_xyah: np.ndarray, dets: CleanDetections) -> TrackTable:
        """Tracks started from detections ``det_ids``; confirmed at once only on the first update."""
        mean, cov = kalman.initiate(take_rows(det_xyah, det_ids))
        ids = np.arange(self._created + 1, self._created + 1 + det_ids.size, dtype=np.int64)
        self._created += det_ids.size
        return TrackTable.create(mean, cov, ids, take_rows(dets.match_info, det_ids), self.frame_id,
                                 activated=self.update_count == 1)

    def _remove_duplicates(self, tracks: TrackTable, boxes: np.ndarray, tracked: np.ndarray, lost: np.ndarray,
                           timer: _StageTimer) -> tuple[np.ndarray, np.ndarray]:
        """Drop tracked/lost pairs that overlap almost fully: the shorter history goes (tracked on ties)."""
        if tracked.size == 0 or lost.size == 0:
            return tracked, lost
        timer.lap("bookkeeping")
        thresh = self._config.duplicate_iou_thresh
        pair_tracked, pair_lost, iou = iou_pairs(take_rows(boxes, tracked), take_rows(boxes, lost),
                                                 self._config.iou_inclusive, include_disjoint=thresh > 1,
                                                 min_iou=1.0 - thresh)
        if iou.size == 0:
            timer.lap("iou")
            return tracked, lost
        close = 1.0 - iou < thresh
        if self._config.class_aware:
            close &= tracks.match[tracked[pair_tracked], CLASS] == tracks.match[lost[pair_lost], CLASS]
        timer.lap("iou")
        if not close.any():
            return tracked, lost
        pair_tracked, pair_lost = pair_tracked[close], pair_lost[close]
        age_tracked = tracks.last_frame[tracked] - tracks.start_frame[tracked]
        age_lost = tracks.last_frame[lost] - tracks.start_frame[lost]
        tracked_older = age_tracked[pair_tracked] > age_lost[pair_lost]
        drop_tracked = np.zeros(tracked.size, dtype=bool)
        drop_lost = np.zeros(lost.size, dtype=bool)
        drop_lost[pair_lost[tracked_older]] = True
        drop_tracked[pair_tracked[~tracked_older]] = True
        return tracked[~drop_tracked], lost[~drop_lost]

    def _output_rows(self, rows: np.ndarray | slice, boxes: np.ndarray) -> np.ndarray:
        """(R, 8) output for table rows ``rows`` (``boxes``: all rows' boxes); names new ones (compact ids).

        ``rows`` is an index array, or a slice for a run of rows (views instead of gathers).
        """
        tracks = self._tracks
        selected = boxes[rows]
        out = np.empty((selected.shape[0], 8))
        out[:, :4] = selected
        if self._config.id_mode == "compact":
            ids = tracks.display_id[rows]  # a copy for an index array, a view for a slice
            unnamed = (ids == 0).nonzero()[0]
            if unnamed.size:
                ids[unnamed] = np.arange(self._shown + 1, self._shown + 1 + unnamed.size)
                tracks.display_id[rows] = ids
                self._shown += unnamed.size
            out[:, 4] = ids
        else:
            out[:, 4] = tracks.track_id[rows]
        out[:, 5:] = tracks.match[rows]
        return out


def _tracker_from_bytes(data: bytes) -> ByteTracker:
    """Unpickling helper (module level, so pickle can name it)."""
    return ByteTracker.from_state(TrackerState.from_bytes(data))


def _predict_pool(tracks: TrackTable, pool: np.ndarray, unconfirmed: np.ndarray, lost_start: int, steps: int,
                  velocity_noise: float = 1.0) -> None:
    """Kalman-predict the rows ``pool`` in place; lost ones (rows from ``lost_start`` on, the only ones
    not in the TRACKED state) get their height velocity zeroed first.

    The other rows, ``unconfirmed`` (all in the TRACKED state), are not predicted (official quirk):
    the whole table is predicted and those few rows are put back, which costs less than
    gathering and scattering the pool.
    """
    if pool.size == 0:
        return
    if unconfirmed.size:
        kept_mean, kept_cov = take_rows(tracks.mean, unconfirmed), take_rows(tracks.cov, unconfirmed)
    tracks.mean[lost_start:, 7] = 0.0
    kalman.predict(tracks.mean, tracks.cov, steps, velocity_noise)
    if unconfirmed.size:
        tracks.mean[unconfirmed], tracks.cov[unconfirmed] = kept_mean, kept_cov


def _frame_size(frame_size: tuple[int, int]) -> tuple[float, float]:
    """(width, height) as floats; ValueError unless both are positive numbers."""
    try:
        width, height = (float(v) for v in frame_size)
    except (TypeError, ValueError):
        raise ValueError(f"frame_size must be (width, height), got {frame_size!r}") from None
    if not (width > 0 and height > 0 and np.isfinite(width) and np.isfinite(height)):
        raise ValueError(f"frame_size must be positive (width, height), got {frame_size!r}")
    return width, height


def _true_rows(mask: np.ndarray) -> np.ndarray | slice:
    """Positions where ``mask`` is True; ``slice(0, mask.size)`` when all are (a view instead of a gather)."""
    return slice(0, mask.size) if np.count_nonzero(mask) == mask.size else mask.nonzero()[0]


def _join(first: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """``np.concatenate`` of index arrays, without the call when only the first is non-empty."""
    return np.concatenate((first, *others)) if any(other.size for other in others) else first


def _rebuild_lists(tracks: TrackTable, count: int, lost_start: int, refound: np.ndarray, newly_lost: np.ndarray,
                   timed_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the new tracked and lost lists, in the official order.

    The old tracked list is rows ``[0, lost_start)``, the old lost list rows ``[lost_start, count)``.
    tracked = old tracked still TRACKED + tracks created now (rows >= ``count``) + refound;
    lost = old lost not refound + newly lost, minus those already in the official
    "removed" list (tracks that timed out before this frame); ``timed_out`` ones join it now.
    """
    kept_tracked = (tracks.state[:lost_start] == TRACKED).nonzero()[0]
    lost_list = EMPTY_INDEX
    if lost_start < count:  # booleans: a > b is a and not b
        kept_lost = (tracks.state[lost_start:count] != TRACKED) > tracks.removal_recorded[lost_start:count]
        lost_list = lost_start + kept_lost.nonzero()[0]
    if newly_lost.size:  # a track refound after timing out is dropped when lost again
        lost_list = _join(lost_list, newly_lost[~tracks.removal_recorded[newly_lost]])
    tracks.removal_recorded[timed_out] = True
    tracked_list = _join(kept_tracked, np.arange(count, len(tracks)), refound)
    return tracked_list, lost_list


class _FrameData(NamedTuple):
    """What the associations of one frame share."""

    boxes: np.ndarray       # (T, 4) boxes of all table rows at association time
    det_boxes: np.ndarray   # (N, 4) detection boxes
    dets: CleanDetections
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]  # (track row, detection, IoU) candidates
    pair_lists: tuple[list, list, list] | None  # ``pairs`` as Python lists when the frame is small

    @classmethod
    def build(cls, boxes: np.ndarray, det_boxes: np.ndarray, dets: CleanDetections,
              pairs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> _FrameData:
        """Frame data; small frames also get the pairs as lists for the plain-Python association."""
        small = pairs[0].size + boxes.shape[0] + det_boxes.shape[0] <= SMALL_ASSIGNMENT
        rows, cols, iou = pairs
        return cls(boxes, det_boxes, dets, pairs, (rows.tolist(), cols.tolist(), iou.tolist()) if small else None)


class _StageTimer:
    """Records perf_counter_ns laps during an update; ``totals`` sums the intervals per stage on demand
    (appending a lap costs less than updating a dict on every lap)."""

    __slots__ = ("origin", "laps")

    def __init__(self, origin: int) -> None:
        self.origin = origin
        self.laps: list[tuple[str, int]] = []

    def lap(self, stage: str) -> None:
        """Charge the time since the previous lap to ``stage``."""
        self.laps.append((stage, perf_counter_ns()))

    @property
    def totals(self) -> dict[str, int]:
        """Nanoseconds per stage: ``predict``, ``iou``, ``assignment``, ``bookkeeping``."""
        totals = dict.fromkeys(STAGES, 0)
        previous = self.origin
        for stage, now in self.laps:
            totals[stage] += now - previous
            previous = now
        return totals
