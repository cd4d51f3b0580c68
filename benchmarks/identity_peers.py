"""Run a peer tracker (roboflow ``trackers``) over a cached MOT sequence; used by ``benchmarks/identity.py``.

Runs in the peers' own virtual environment (``trackers`` pins its own torch and supervision), so it imports nothing
from int8track: it reads ``det/det.txt`` and ``seqinfo.ini`` of a sequence folder, feeds each frame's detections to
the tracker with its default settings and the sequence's frame rate, and writes the MOTChallenge results file
(the boxes the tracker returns, which for these trackers are the matched detections, rows with an id only). The
last line on stdout is JSON: ``{"frames": N, "ms_per_frame": [...]}`` (``update`` calls only, not the file I/O).

    /tmp/peers/bin/python benchmarks/identity_peers.py bytetrack SEQUENCE_DIR RESULTS_TXT
"""
from __future__ import annotations

import argparse
import configparser
import json
import sys
import time
from pathlib import Path

import numpy as np

PEERS = ("bytetrack", "cbiou")


def make_tracker(name: str, frame_rate: float):  # noqa: ANN201  (the peer's own class)
    if name == "bytetrack":
        from trackers import ByteTrackTracker

        return ByteTrackTracker(frame_rate=frame_rate)
    if name == "cbiou":
        from trackers import CBIoUTracker

        return CBIoUTracker(frame_rate=frame_rate)
    raise ValueError(f"unknown peer tracker {name!r}; expected one of {PEERS}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="A roboflow tracker over a MOT sequence's det/det.txt (peer venv).")
    parser.add_argument("tracker", choices=PEERS)
    parser.add_argument("sequence", type=Path, help="sequence folder with seqinfo.ini and det/det.txt")
    parser.add_argument("results", type=Path, help="MOTChallenge results file to write")
    args = parser.parse_args(argv)
    name, folder, out_path = args.tracker, args.sequence, args.results
    import supervision as sv

    info = configparser.ConfigParser()
    info.read(folder / "seqinfo.ini")
    frame_rate = float(info["Sequence"]["frameRate"])
    length = int(info["Sequence"]["seqLength"])
    table = np.loadtxt(folder / "det" / "det.txt", delimiter=",", ndmin=2)
    frames = table[:, 0].astype(np.int64)
    tracker = make_tracker(name, frame_rate)
    lines, times = [], []
    for frame in range(1, length + 1):
        rows = table[frames == frame]
        xyxy = np.concatenate((rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]), axis=1) if len(rows) else np.empty((0, 4))
        dets = sv.Detections(xyxy=xyxy, confidence=rows[:, 6].copy(), class_id=np.zeros(len(rows), dtype=int))
        start = time.perf_counter()
        result = tracker.update(dets)
        times.append((time.perf_counter() - start) * 1e3)
        for (x1, y1, x2, y2), track_id in zip(result.xyxy.tolist(), result.tracker_id.tolist()):
            if track_id >= 0:
                lines.append(f"{frame},{track_id + 1},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,-1,-1,-1\n")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("".join(lines))
    print(json.dumps({"frames": length, "ms_per_frame": times}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
