"""ByteTrack multi-object tracking, vectorised over tracks (see ``ByteTracker``).

``tracker.state``: snapshots (``ByteTracker.state_dict``); ``tracker.interpolation``: offline gap filling of
MOT result rows (imported on its own: it needs scipy).
"""
from __future__ import annotations

from int8track.tracker.byte_tracker import OUTPUT_COLUMNS, ByteTracker
from int8track.tracker.config import TrackerConfig
from int8track.tracker.state import TrackerState

__all__ = ["ByteTracker", "OUTPUT_COLUMNS", "TrackerConfig", "TrackerState"]
