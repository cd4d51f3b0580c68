"""Write MOTChallenge results files: exactly the benchmark's 10 columns, atomically, frame by frame."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from int8track.apps.io.motchallenge import RESULT_MIN_COLUMNS, read_mot_table
from int8track.files import AtomicTextFile
from int8track.tracker.interpolation import Interpolated, InterpolationConfig, interpolate_table, rows_in


def format_tracks(frame_id: int, tracks: np.ndarray) -> str:
    """MOTChallenge result lines ``frame,id,x,y,w,h,score,-1,-1,-1`` for tracker output (M,>=6) x1,y1,x2,y2,id,score."""
    if isinstance(frame_id, bool) or int(frame_id) != frame_id or frame_id < 1:
        raise ValueError(f"frame id must be an integer >= 1, got {frame_id!r}")
    tracks = np.asarray(tracks, dtype=np.float64)
    if tracks.size == 0:
        return ""
    if tracks.ndim != 2 or tracks.shape[1] < 6:
        raise ValueError(f"tracks must be an (M,8) array x1,y1,x2,y2,track_id,score,class,det_index; "
                         f"got shape {tracks.shape}")
    if not np.isfinite(tracks[:, :6]).all():
        raise ValueError(f"frame {frame_id}: tracks contain nan/inf")
    lines = [f"{int(frame_id)},{int(track_id)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},-1,-1,-1\n"
             for x1, y1, x2, y2, track_id, score in tracks[:, :6]]
    return "".join(lines)


class MotResultWriter(AtomicTextFile):
    """Write a MOTChallenge results file frame by frame, atomically (:class:`AtomicTextFile`)."""

    def write(self, frame_id: int, tracks: np.ndarray) -> None:
        """Append the tracks of one frame (tracker ``update`` output, (M,8))."""
        self.write_text(format_tracks(frame_id, tracks))


def write_results(path: str | Path, frames: Iterable[tuple[int, np.ndarray]]) -> Path:
    """Write ``(frame_id, tracks)`` pairs as one MOTChallenge results file (atomically); returns the path."""
    with MotResultWriter(path) as writer:
        for frame_id, tracks in frames:
            writer.write(frame_id, tracks)
    return Path(path)


def interpolate_file(source: str | Path, target: str | Path, config: InterpolationConfig,
                     propagated: np.ndarray | None = None) -> Interpolated:
    """Write ``source``'s results with their gaps filled (``tracker.interpolation``) to ``target`` (may be the
    same file: it is replaced atomically). ``propagated``: (N, 2) frame, track id of the rows no detection placed
    (``RunResult.propagated``); they are redrawn from the detections on both sides where a gap allows it.
    Returns the rows written and the counts."""
    table = read_mot_table(source, RESULT_MIN_COLUMNS)
    mask = None
    if propagated is not None and len(propagated) and len(table):
        mask = rows_in(table, propagated)
    result = interpolate_table(table, config, mask)
    frames = result.rows[:, 0].astype(np.int64)
    starts = np.flatnonzero(np.diff(frames)) + 1
    with MotResultWriter(target) as writer:
        for block in np.split(result.rows, starts) if len(result.rows) else []:
            # back to tracker columns x1, y1, x2, y2, id, score, which the writer formats as MOT rows
            x, y, w, h = block[:, 2:6].T
            writer.write(int(block[0, 0]), np.column_stack((x, y, x + w, y + h, block[:, 1], block[:, 6])))
    return result
