"""Adapters between ``ByteTracker`` and the libraries users already run: Ultralytics, supervision, BoxMOT.

- Ultralytics: ``TrackerConfig.from_yaml`` (and ``ByteTracker.from_yaml``) reads its ``bytetrack.yaml`` (same key
  names as ``TrackerConfig``); ``detections_from_ultralytics`` turns a ``Results``
  (``results.boxes.xyxy/.conf/.cls``) into our (N, 6).
- supervision: ``update_with_detections`` (``ByteTracker.update_with_detections``) returns the matched
  ``sv.Detections`` themselves, every field kept, with ``tracker_id`` set.
- BoxMOT: ``ByteTracker.update(dets, img)`` already matches its call and its (N, 8) output columns.

Nothing here imports supervision, Ultralytics or torch: objects are used through their documented
attributes, so the tracker stays numpy-only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

if TYPE_CHECKING:
    import supervision as sv


class UpdatableTracker(Protocol):
    """What the adapters need of a tracker: ``update((N, 5|6) detections) -> (M, 8) tracks``."""

    def update(self, detections: object) -> np.ndarray: ...

def detections_from_ultralytics(results: Any) -> np.ndarray:
    """(N, 6) float64 ``x1, y1, x2, y2, score, class`` from an Ultralytics ``Results`` (or its ``.boxes``).

    Reads the documented ``boxes.xyxy`` (N, 4), ``boxes.conf`` (N,) and ``boxes.cls`` (N,), torch tensors
    on any device or numpy arrays. ``model(frame)`` returns a list: pass one element.
    """
    if isinstance(results, (list, tuple)):
        raise ValueError(f"expected one Ultralytics Results, got a {type(results).__name__} of {len(results)}: "
                         "pass results[0] (one per image)")
    boxes = getattr(results, "boxes", results)
    if boxes is None or not all(hasattr(boxes, name) for name in ("xyxy", "conf", "cls")):
        raise ValueError(f"{type(results).__name__} has no axis-aligned boxes (boxes.xyxy, .conf, .cls); "
                         "classification, pose-only and oriented-box results cannot be tracked")
    xyxy = _as_numpy(boxes.xyxy).reshape(-1, 4)
    return np.column_stack((xyxy, _as_numpy(boxes.conf).reshape(-1), _as_numpy(boxes.cls).reshape(-1)))


def _as_numpy(values: Any) -> np.ndarray:
    """A float64 array from a torch tensor (any device) or anything numpy takes."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def update_with_detections(tracker: UpdatableTracker, detections: sv.Detections) -> sv.Detections:
    """Track one frame of ``sv.Detections``; the detections matched to a confirmed track, with ``tracker_id``.

    Rows are selected from ``detections`` by ``det_index``, so every field (``xyxy``, ``mask``,
    ``confidence``, ``class_id``, each ``data`` entry) is the matched detection's own, in the order of the
    tracker's output. ``confidence`` is required; ``class_id``, when present, is the class column (used
    by ``class_aware``). Lost tracks (``return_lost``) have no detection and are not returned.
    """
    if detections.confidence is None:
        raise ValueError("sv.Detections without confidence cannot be tracked (ByteTrack splits by score)")
    columns = [np.asarray(detections.xyxy, dtype=np.float64).reshape(-1, 4),
               np.asarray(detections.confidence, dtype=np.float64).reshape(-1, 1)]
    if detections.class_id is not None:
        columns.append(np.asarray(detections.class_id, dtype=np.float64).reshape(-1, 1))
    tracks = tracker.update(np.hstack(columns))
    matched = tracks[tracks[:, 7] >= 0]
    result = cast("sv.Detections", detections[matched[:, 7].astype(np.intp)])  # an index array selects rows
    result.tracker_id = matched[:, 4].astype(int)
    return result
