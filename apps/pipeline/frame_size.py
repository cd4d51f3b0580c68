"""A live source whose frame size changes mid-run: a camera or server restarted with other settings, seen after a
reconnect.

The detector's input was fitted to the first frame (``apps.models.input_fit``). Re-fitting it would rebuild the
model's session in the middle of a live run (seconds of frames lost) and cannot be done at all for a saved int8
graph, whose input is fixed. So later frames of another size are letterboxed into the same input, as every frame
already is: a frame of another shape keeps its own aspect and is padded, and boxes come back in its pixels. The
tracks, though, are in the old frame's pixels: they are rescaled to the new size (the camera's view is assumed
unchanged), so identities carry over the change. The run report says what happened and how it was handled.
"""
from __future__ import annotations

import numpy as np

from int8track.tracker.byte_tracker import ByteTracker


class FrameSizeWatch:
    """Notices frames whose size differs from the previous frame's and rescales the tracker's tracks to them."""

    def __init__(self) -> None:
        self.first: tuple[int, int] | None = None  # (width, height)
        self.current: tuple[int, int] | None = None
        self.changes: list[dict] = []

    def check(self, frame_id: int, image: np.ndarray, tracker: object) -> bool:
        """True when ``image`` (frame ``frame_id``) has another size than the frame before; then the tracks of
        ``tracker`` (a ``ByteTracker`` or a wrapper holding one as ``.tracker``) are scaled to it."""
        height, width = image.shape[:2]
        if self.current is None:
            self.first = self.current = (width, height)
            return False
        if (width, height) == self.current:
            return False
        old_width, old_height = self.current
        scale = np.array([[width / old_width, 0.0, 0.0], [0.0, height / old_height, 0.0]])
        base = _byte_tracker(tracker)
        if base is not None:
            base.apply_motion(scale)  # centres exactly; sizes by the geometric mean of both scales
        self.changes.append({"frame": frame_id, "from": f"{old_width}x{old_height}", "to": f"{width}x{height}"})
        self.current = (width, height)
        return True

    def info(self, detector: object) -> dict:
        """The run report's part: nothing when the size never changed."""
        if not self.changes or self.first is None:
            return {}
        spec = getattr(detector, "spec", None)
        size = getattr(spec, "input_size", None)
        into = f"the detector's {size[0]}x{size[1]} (HxW) input" if size else "the detector's input"
        return {"frame_size_changes": self.changes,
                "frame_size_handling": f"letterboxed: frames of another size are scaled into {into}, fitted to the "
                                       f"first frame ({self.first[0]}x{self.first[1]}), not re-fitted; tracks "
                                       "rescaled to the new frame size"}


def _byte_tracker(tracker: object) -> ByteTracker | None:
    """The ``ByteTracker`` inside ``tracker`` (itself, or a wrapper's ``.tracker``, at any depth)."""
    for _ in range(4):
        if isinstance(tracker, ByteTracker):
            return tracker
        tracker = getattr(tracker, "tracker", None)
    return None
