"""Adapters between ``ByteTracker`` and the libraries users already run: Ultralytics, supervision, BoxMOT.

- Ultralytics: ``load_tracker_yaml`` reads its ``bytetrack.yaml`` (same key names as ``TrackerConfig``);
  ``detections_from_ultralytics`` turns a ``Results`` (``results.boxes.xyxy/.conf/.cls``) into our (N, 6).
- supervision: ``update_with_detections`` (``ByteTracker.update_with_detections``) returns the matched
  ``sv.Detections`` themselves, every field kept, with ``tracker_id`` set.
- BoxMOT: ``ByteTracker.update(dets, img)`` already matches its call and its (N, 8) output columns.

Nothing here imports supervision, Ultralytics or torch: objects are used through their documented
attributes, so the tracker stays numpy-only. PyYAML is imported when a file is read.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from int8track.tracker.config import TrackerConfig

if TYPE_CHECKING:
    import supervision as sv

    from int8track.tracker.byte_tracker import ByteTracker

#: Keys of an Ultralytics tracker file that are not tracker settings: accepted, checked, not used.
ULTRALYTICS_KEYS = ("tracker_type",)
SUPPORTED_TRACKER_TYPE = "bytetrack"
_CONFIG_KEYS = tuple(field.name for field in dataclasses.fields(TrackerConfig))


def load_tracker_yaml(path: str | os.PathLike[str]) -> TrackerConfig:
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
        raise ValueError(f"{path}: cannot read tracker settings ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected tracker settings as 'key: value' lines, got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in _CONFIG_KEYS and key not in ULTRALYTICS_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown tracker setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join((*ULTRALYTICS_KEYS, *_CONFIG_KEYS))}")
    tracker_type = data.get("tracker_type", SUPPORTED_TRACKER_TYPE)
    if tracker_type != SUPPORTED_TRACKER_TYPE:
        raise ValueError(f"{path}: tracker_type {tracker_type!r} is not supported (only {SUPPORTED_TRACKER_TYPE!r})")
    try:
        return TrackerConfig(**{key: value for key, value in data.items() if key in _CONFIG_KEYS})
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


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


def update_with_detections(tracker: ByteTracker, detections: sv.Detections) -> sv.Detections:
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
