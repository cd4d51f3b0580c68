"""ByteTrack multi-object tracking, vectorised over tracks (see ``ByteTracker``)."""
from __future__ import annotations

from int8track.tracker.byte_tracker import OUTPUT_COLUMNS, ByteTracker
from int8track.tracker.config import TrackerConfig

__all__ = ["ByteTracker", "OUTPUT_COLUMNS", "TrackerConfig"]
