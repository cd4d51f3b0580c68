"""Appearance (re-identification) only where motion is not enough: :class:`ReidTracker` wraps a ``ByteTracker``.

ByteTrack associates by motion and overlap alone, so a person hidden longer than the predicted box keeps
overlapping them comes back as a new track (an identity switch). ``ReidTracker.update(detections, frame)``
(BoxMOT's call) runs the tracker unchanged, then:

1. takes the high-score detections the motion stages left unmatched and the lost tracks that have an appearance
   on record; pairs are *gated by motion*: the detection's centre within ``gate`` box heights of the track's
   Kalman-predicted centre, the gate growing by ``gate_growth`` heights per frame lost (the prediction drifts
   the longer the track is unseen), and box heights within a factor ``max_height_ratio``;
2. only when some pair passes the gate, embeds those detections (one batch per frame) and re-finds a lost
   track with the detection of highest cosine similarity, if at least ``min_similarity``
   (``ByteTracker.refind``; a new track started from that detection is dropped, so the identity survives);
3. keeps each track's appearance as an exponential moving average (``ema``) of its embeddings, in a side table
   keyed by track id: a track's matched detection is embedded when the track has no appearance yet or had none
   for ``refresh_every`` frames, and only when the detection is *isolated* (IoU below ``isolation_iou`` with
   every other detection: a crop shared with another person would blend the two appearances).

So the embedder sees the few unmatched detections near lost tracks plus about one track in ``refresh_every``
per frame, never every box on every frame. ``camera_motion`` (a ``CameraMotionConfig``) also compensates camera
motion before the association (``tracker.cmc``). Costs: ``last_stage_ns`` adds ``cmc`` and ``reid`` (crops,
embedding, gating, matching) to the tracker's stages; ``crops_embedded`` counts crops.

A lost track can only be re-found while the tracker still holds it (``max_time_lost`` frames: ``track_buffer``
at 30 fps): give the tracker a longer ``track_buffer`` to bridge longer occlusions by appearance.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import numpy as np

from int8track.tracker.appearance import BoxEmbedder, CropSettings, Embedder, OnnxEmbedder
from int8track.tracker.byte_tracker import ByteTracker
from int8track.tracker.camera_motion import CameraMotionConfig
from int8track.tracker.cmc import DEFAULT_CMC_CONFIG, CameraMotionCompensator, CmcTracker
from int8track.tracker.iou import iou_matrix
from int8track.tracker.validation import clean_detections


@dataclass(frozen=True)
class ReidConfig:
    """Settings of :class:`ReidTracker` (see the module docstring); a bad value raises ValueError naming it.

    The similarity threshold sits between OSNet x0.25's cosine for one person 10-60 frames apart on PETS09
    (0.70-0.77) and for two people (0.44-0.50), toward the first: 0.6 and 0.65 give the same PETS09 result, 0.65
    fewer wrong re-finds on MOT17-05's small, alike people, 0.7 misses true ones (benchmarks/README.md).

    After an outage (``ByteTracker``'s outage stage, where the Kalman gate already bounds the pairs by motion),
    appearance weighs the pairs instead of deciding alone: a pair costs ``gap_weight * (1 - cosine)`` on top of
    its motion cost, and only pairs below ``gap_min_similarity`` are excluded (above the different-people range,
    0.44-0.50). Seen across a gap, a person's crop often scores 0.55-0.65 against their appearance from before it
    (another pose, the stride, compression noise), which the re-find threshold would refuse. PETS09 gap study
    (benchmarks/README.md), identities kept across 3 / 5 / 7 s: 91 / 92 / 84% (re-find threshold as a veto: 82 /
    81 / 80%); 0.55 and 0.6 keep as many, 0.6 with fewer swaps; the weight matters little from 5 to 20.
    """

    min_similarity: float = 0.65
    gate: float = 1.0
    gate_growth: float = 0.15
    max_height_ratio: float = 1.5
    ema: float = 0.9
    refresh_every: int = 10
    isolation_iou: float = 0.1
    min_side: int = 8
    gap_min_similarity: float = 0.6
    gap_weight: float = 10.0

    def __post_init__(self) -> None:
        checks = {
            "min_similarity": -1.0 <= self.min_similarity <= 1.0,
            "gap_min_similarity": -1.0 <= self.gap_min_similarity <= 1.0,
            "gap_weight": self.gap_weight >= 0,
            "gate": self.gate > 0,
            "gate_growth": self.gate_growth >= 0,
            "max_height_ratio": self.max_height_ratio >= 1.0,
            "ema": 0.0 <= self.ema < 1.0,
            "isolation_iou": 0.0 <= self.isolation_iou <= 1.0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or not ok:
                raise ValueError(f"ReidConfig.{name} is out of range: {value!r}")
        for name in ("refresh_every", "min_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ReidConfig.{name} must be an integer >= 1, got {value!r}")


class ReidTracker:
    """A ``ByteTracker`` that re-finds lost tracks by appearance where motion fails (module docstring).

    ``embedder``: any callable from a list of BGR crops to an (N, D) array, e.g.
    ``tracker.appearance.OnnxEmbedder("osnet_x0_25_msmt17.onnx")`` (**OSNet MSMT17 weights: research use
    only**). The tracker must not use ``return_lost`` (re-found rows are appended to the matched ones).
    """

    def __init__(self, tracker: ByteTracker, embedder: Embedder, config: ReidConfig | None = None,
                 camera_motion: CameraMotionConfig | None = None) -> None:
        if not isinstance(tracker, ByteTracker):
            raise ValueError(f"ReidTracker wraps a ByteTracker, got {type(tracker).__name__}")
        if tracker.config.return_lost:
            raise ValueError("ReidTracker needs a tracker without return_lost (re-found tracks are output as matched)")
        if config is not None and not isinstance(config, ReidConfig):
            raise ValueError(f"config must be a ReidConfig, got {type(config).__name__}")
        self.tracker = tracker
        self.config = config or ReidConfig()
        self.embedder = BoxEmbedder(embedder, CropSettings(self.config.min_side))
        self.compensator = CameraMotionCompensator(camera_motion) if camera_motion is not None else None
        self.refound_total = 0
        self._frame: np.ndarray | None = None
        tracker.gap_pair_cost = self._appearance_cost
        self._reset_tables()

    def _appearance_cost(self, track_ids: np.ndarray, det_boxes: np.ndarray) -> np.ndarray:
        """(T, N) pair costs for the tracker's outage stage (``ByteTracker.gap_pair_cost``): for a track with an
        appearance on record, ``gap_weight * (1 - cosine)`` with each detection's crop, +inf (excluded) below
        ``gap_min_similarity`` or where the crop is too small to embed; 0 for tracks without one (motion alone).
        Motion confuses people after a few seconds (benchmarks/README.md); their looks mostly do not."""
        cost = np.zeros((track_ids.size, det_boxes.shape[0]))
        known = [k for k, track_id in enumerate(track_ids.tolist()) if int(track_id) in self._appearance]
        if not known or self._frame is None or det_boxes.shape[0] == 0:
            return cost
        embeddings, valid = self.embedder.embed(self._frame, det_boxes)
        gallery = np.stack([self._appearance[int(track_ids[k])] for k in known])
        similarity = gallery @ np.where(valid[:, None], embeddings, 0.0).T
        allowed = (similarity >= self.config.gap_min_similarity) & valid[None, :]
        cost[known] = np.where(allowed, self.config.gap_weight * (1.0 - similarity), np.inf)
        return cost

    def _reset_tables(self) -> None:
        # Side table keyed by the output track id: the EMA appearance, the frame it was last refreshed, the
        # frame the track was last matched (how long it has been lost).
        self._appearance: dict[int, np.ndarray] = {}
        self._refreshed: dict[int, int] = {}
        self._last_seen: dict[int, int] = {}
        self._last_boxes: np.ndarray | None = None
        self._stage_ns = {"cmc": 0, "reid": 0}

    def reset(self) -> None:
        """Forget tracks and appearances (between videos)."""
        self.tracker.reset()
        if self.compensator is not None:
            self.compensator.reset()
        self.refound_total = 0
        self._reset_tables()

    @property
    def crops_embedded(self) -> int:
        return self.embedder.crops_embedded

    @property
    def last_stage_ns(self) -> dict[str, int]:
        """The tracker's stages of the last update plus ``cmc`` and ``reid``, in nanoseconds."""
        return {**self.tracker.last_stage_ns, **self._stage_ns}

    def appearance(self, track_id: int) -> np.ndarray | None:
        """The EMA embedding kept for ``track_id`` (unit length), or None."""
        return self._appearance.get(int(track_id))

    def update(self, detections: object, frame: np.ndarray, **kwargs: Any) -> np.ndarray:
        """Track one frame (``ByteTracker.update``'s rows), re-finding lost tracks by appearance."""
        if frame is None:
            raise ValueError("ReidTracker.update needs the frame image (appearance is read from it)")
        start = perf_counter_ns()
        if self.compensator is not None:
            self.compensator.compensate(self.tracker, frame, self._last_boxes)
        cmc_end = perf_counter_ns()
        self._frame = frame  # for the outage stage's appearance check (``_appearance_cost``)
        try:
            output = self.tracker.update(detections, **kwargs)
        finally:
            self._frame = None
        reid_start = perf_counter_ns()
        output = self._reid(detections, frame, output)
        self._last_boxes = output[:, :4]
        self._stage_ns = {"cmc": cmc_end - start, "reid": perf_counter_ns() - reid_start}
        return output

    def _reid(self, detections: object, frame: np.ndarray, output: np.ndarray) -> np.ndarray:
        config, tracker = self.config, self.tracker
        now = tracker.frame_id
        dets = clean_detections(detections)
        out_ids = output[:, 4].astype(np.int64)
        out_dets = output[:, 7].astype(np.int64)
        for track_id in out_ids.tolist():
            self._last_seen[track_id] = now

        # Candidates: unmatched high detections near lost tracks that have an appearance.
        high = dets.scores > tracker.config.track_high_thresh
        unmatched = high & ~np.isin(dets.rows, out_dets)
        lost = tracker.lost_tracks()
        if len(self._last_seen) > out_ids.size + len(lost):
            self._forget_dead(set(out_ids.tolist()) | set(lost[:, 4].astype(np.int64).tolist()))
        lost = lost[[int(i) in self._appearance for i in lost[:, 4]]] if len(lost) else lost
        pair_lost = pair_det = np.empty(0, np.int64)
        if unmatched.any() and len(lost):
            candidates = unmatched.nonzero()[0]
            lost_frames = np.array([now - self._last_seen.get(int(i), now) for i in lost[:, 4]], dtype=np.float64)
            gated = _motion_gate(lost[:, :4], dets.boxes[candidates], lost_frames, config)
            pair_lost, pair_local = gated.nonzero()
            pair_det = candidates[pair_local]

        # Refresh: matched detections of tracks with no or old appearance, if isolated from other detections.
        refresh_tracks, refresh_dets = self._refresh_candidates(out_ids, out_dets, dets, now)
        embed_dets = np.unique(np.concatenate((pair_det, refresh_dets))).astype(np.int64)
        if embed_dets.size == 0:
            return output
        embeddings, valid = self.embedder.embed(frame, dets.boxes[embed_dets])
        where = {int(d): i for i, d in enumerate(embed_dets)}

        refound = np.empty((0, 8))
        if pair_det.size:
            refound = self._match(lost, pair_lost, pair_det, embeddings, valid, where, detections)
        for track_id, det in zip(refresh_tracks.tolist(), refresh_dets.tolist()):
            if valid[where[det]]:
                self._blend(track_id, embeddings[where[det]], now)
        if len(refound):
            output = np.concatenate((output, refound))
        return output

    def _refresh_candidates(self, out_ids: np.ndarray, out_dets: np.ndarray, dets: Any,
                            now: int) -> tuple[np.ndarray, np.ndarray]:
        """(track ids, detection positions) whose appearance to refresh on this frame."""
        due = np.array([now - self._refreshed.get(int(i), -self.config.refresh_every) >= self.config.refresh_every
                        for i in out_ids], dtype=bool)
        due &= out_dets >= 0
        if not due.any():
            return np.empty(0, np.int64), np.empty(0, np.int64)
        position = np.full(int(dets.rows.max()) + 1, -1)
        position[dets.rows] = np.arange(dets.rows.size)
        det_pos = position[out_dets[due]]
        overlap = iou_matrix(dets.boxes[det_pos], dets.boxes)
        overlap[np.arange(det_pos.size), det_pos] = 0.0  # a box always overlaps itself
        isolated = overlap.max(axis=1, initial=0.0) < self.config.isolation_iou
        return out_ids[due][isolated], det_pos[isolated]

    def _match(self, lost: np.ndarray, pair_lost: np.ndarray, pair_det: np.ndarray, embeddings: np.ndarray,
               valid: np.ndarray, where: dict[int, int], detections: object) -> np.ndarray:
        """Re-find lost tracks: gated pairs by cosine similarity, highest first, each track and detection once."""
        index = np.array([where[int(d)] for d in pair_det])
        ok = valid[index]
        pair_lost, pair_det, index = pair_lost[ok], pair_det[ok], index[ok]
        if pair_det.size == 0:
            return np.empty((0, 8))
        gallery = np.stack([self._appearance[int(i)] for i in lost[pair_lost, 4]])
        similarity = np.einsum("ij,ij->i", gallery, embeddings[index])
        # Greedy on similarity: a handful of pairs per frame at most, where the optimal assignment and the greedy
        # one differ only in near-ties.
        order = np.argsort(-similarity, kind="stable")
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        chosen_ids, chosen_rows, chosen_embeddings = [], [], []
        dets = clean_detections(detections)
        for k in order.tolist():
            if similarity[k] < self.config.min_similarity:
                break
            track, det = int(pair_lost[k]), int(pair_det[k])
            if track in used_tracks or det in used_dets:
                continue
            used_tracks.add(track)
            used_dets.add(det)
            chosen_ids.append(int(lost[track, 4]))
            chosen_rows.append(int(dets.rows[det]))
            chosen_embeddings.append(embeddings[index[k]])
        if not chosen_ids:
            return np.empty((0, 8))
        refound = self.tracker.refind(chosen_ids, detections, chosen_rows)
        now = self.tracker.frame_id
        for track_id, embedding in zip(chosen_ids, chosen_embeddings):
            self._last_seen[track_id] = now
            self._blend(track_id, embedding, now)
        self.refound_total += len(chosen_ids)
        return refound

    def _blend(self, track_id: int, embedding: np.ndarray, now: int) -> None:
        """EMA update of a track's appearance, kept unit length."""
        old = self._appearance.get(track_id)
        new = embedding if old is None else self.config.ema * old + (1.0 - self.config.ema) * embedding
        self._appearance[track_id] = new / np.linalg.norm(new)
        self._refreshed[track_id] = now

    def _forget_dead(self, alive: set[int]) -> None:
        """Drop the side-table entries of tracks the tracker no longer holds (memory stays bounded)."""
        for table in (self._appearance, self._refreshed, self._last_seen):
            for track_id in [k for k in table if k not in alive]:
                del table[track_id]


def _motion_gate(track_boxes: np.ndarray, det_boxes: np.ndarray, lost_frames: np.ndarray,
                 config: ReidConfig) -> np.ndarray:
    """(T, D) bool: detection centre within the track's growing gate and box heights within the ratio."""
    track_centre = (track_boxes[:, :2] + track_boxes[:, 2:4]) * 0.5
    det_centre = (det_boxes[:, :2] + det_boxes[:, 2:4]) * 0.5
    track_h = track_boxes[:, 3] - track_boxes[:, 1]
    det_h = det_boxes[:, 3] - det_boxes[:, 1]
    distance = np.linalg.norm(track_centre[:, None, :] - det_centre[None, :, :], axis=2)
    radius = track_h * (config.gate + config.gate_growth * lost_frames)
    ratio = np.maximum(track_h[:, None], det_h[None, :]) / np.maximum(np.minimum(track_h[:, None], det_h[None, :]),
                                                                       1e-9)
    return (distance <= radius[:, None]) & (ratio <= config.max_height_ratio)


def wrap_tracker(tracker: ByteTracker, reid: str | os.PathLike[str] | Embedder | None = None, cmc: bool = False,
                 reid_config: ReidConfig | None = None, num_threads: int = 1) -> ByteTracker | CmcTracker | ReidTracker:
    """The tracker for ``track --reid [WEIGHTS]`` / ``--cmc``: ``tracker`` itself when neither is asked for,
    else a wrapper whose ``update(detections, frame)`` takes the frame image (``CmcTracker`` or ``ReidTracker``).

    ``reid``: an ONNX re-identification model's path (``OnnxEmbedder``, ``num_threads`` threads; the shipped
    OSNet x0.25 MSMT17 weights are for research use only) or any embedder callable.
    """
    if reid is None:
        return CmcTracker(tracker, DEFAULT_CMC_CONFIG) if cmc else tracker
    embedder = reid if callable(reid) else OnnxEmbedder(reid, num_threads=num_threads)
    return ReidTracker(tracker, embedder, reid_config, camera_motion=DEFAULT_CMC_CONFIG if cmc else None)
