"""Drawing tracks on frames: boxes and ids in stable per-id colours, short motion trails, an fps overlay."""
from __future__ import annotations

import collections
import colorsys

import cv2
import numpy as np

GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def id_color(track_id: int) -> tuple[int, int, int]:
    """A BGR colour that depends only on the id; consecutive ids get well separated hues."""
    hue = (int(track_id) * GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


class TrailHistory:
    """The last ``length`` bottom-centre points of each track, forgotten once a track is unseen for ``length``
    frames."""

    def __init__(self, length: int = 20) -> None:
        self.length = length
        self._points: dict[int, collections.deque] = {}
        self._last_seen: dict[int, int] = {}
        self._frame = 0

    def update(self, tracks: np.ndarray) -> None:
        self._frame += 1
        for x1, _y1, x2, y2, track_id in tracks[:, :5]:
            key = int(track_id)
            self._points.setdefault(key, collections.deque(maxlen=self.length)).append((int((x1 + x2) / 2), int(y2)))
            self._last_seen[key] = self._frame
        for key in [k for k, seen in self._last_seen.items() if self._frame - seen >= self.length]:
            del self._points[key], self._last_seen[key]

    def points(self, track_id: int) -> list[tuple[int, int]]:
        return list(self._points.get(int(track_id), ()))


def draw_tracks(
    frame: np.ndarray, tracks: np.ndarray, trails: TrailHistory | None = None, fps: float | None = None
) -> np.ndarray:
    """Draw ``tracks`` ((M,>=5) x1,y1,x2,y2,id[,score,class,det_index]) in place on ``frame`` (BGR) and return it.

    A box no detection placed on this frame (``det_index`` -1: propagated between detector calls) is drawn as
    corner marks only, so a viewer can tell it from a detected one."""
    thickness = max(1, round(frame.shape[0] / 300))
    predicted = tracks[:, 7] < 0 if tracks.shape[1] >= 8 else np.zeros(len(tracks), dtype=bool)
    for (x1, y1, x2, y2, track_id), guessed in zip(tracks[:, :5], predicted):
        colour = id_color(int(track_id))
        if guessed:
            _corners(frame, (int(x1), int(y1), int(x2), int(y2)), colour, thickness)
        else:
            cv2.rectangle(frame, (int(x1), int(y1)), (int(x2), int(y2)), colour, thickness)
        label = str(int(track_id))
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(int(y1), h + 4)
        cv2.rectangle(frame, (int(x1), top - h - 4), (int(x1) + w + 4, top), colour, cv2.FILLED)
        cv2.putText(frame, label, (int(x1) + 2, top - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        if trails is not None:
            points = trails.points(int(track_id))
            if len(points) > 1:
                cv2.polylines(frame, [np.array(points, dtype=np.int32)], False, colour, thickness, cv2.LINE_AA)
    if fps is not None:
        text = f"{fps:5.1f} fps  {len(tracks)} tracks"
        cv2.putText(frame, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(frame, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    return frame


def _corners(frame: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int], thickness: int) -> None:
    """The four corners of a box, each a quarter of its side long."""
    x1, y1, x2, y2 = box
    dx, dy = max(2, (x2 - x1) // 4), max(2, (y2 - y1) // 4)
    for x, y, sx, sy in ((x1, y1, 1, 1), (x2, y1, -1, 1), (x1, y2, 1, -1), (x2, y2, -1, -1)):
        cv2.line(frame, (x, y), (x + sx * dx, y), colour, thickness)
        cv2.line(frame, (x, y), (x, y + sy * dy), colour, thickness)
