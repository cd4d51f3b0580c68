"""Run a peer tracker (roboflow ``trackers``) over a cached MOT sequence; used by ``benchmarks/identity.py``.

Runs in the peers' own virtual environment (``trackers`` pins its own torch and supervision), so it imports nothing
from int8track: it reads ``det/det.txt`` and ``seqinfo.ini`` of a sequence folder, feeds each frame's detections to
the tracker with its default settings and the sequence's frame rate, and writes the MOTChallenge results file
(the boxes the tracker returns, which for these trackers are the matched detections, rows with an id only). The
last line on stdout is JSON: ``{"frames": N, "ms_per_frame": [...]}`` (``update`` calls only, not the file I/O).

BoT-SORT (``botsort``) compensates camera motion (sparse optical flow, its default) from the frames: ``--frames
SPEC.json`` names them (``identity_data.frame_source``: a video, or images with an optional crop per frame);
without it the tracker gets no frame, and BoT-SORT then skips its CMC.

    /tmp/peers/bin/python benchmarks/identity_peers.py bytetrack SEQUENCE_DIR RESULTS_TXT
    /tmp/peers/bin/python benchmarks/identity_peers.py botsort SEQUENCE_DIR RESULTS_TXT --frames SPEC.json
"""
from __future__ import annotations

import argparse
import configparser
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

PEERS = ("bytetrack", "cbiou", "botsort")


def make_tracker(name: str, frame_rate: float, **options: object):  # noqa: ANN201  (the peer's own class)
    if name == "bytetrack":
        from trackers import ByteTrackTracker

        return ByteTrackTracker(frame_rate=frame_rate, **options)
    if name == "cbiou":
        from trackers import CBIoUTracker

        return CBIoUTracker(frame_rate=frame_rate, **options)
    if name == "botsort":
        from trackers import BoTSORTTracker

        return BoTSORTTracker(frame_rate=frame_rate, **options)
    raise ValueError(f"unknown peer tracker {name!r}; expected one of {PEERS}")


def read_frames(spec_path: Path | None) -> Iterator[np.ndarray | None]:
    """The frames a ``--frames`` spec names, in order (BGR); endless None without a spec."""
    if spec_path is None:
        while True:
            yield None
    import cv2

    spec = json.loads(spec_path.read_text())
    if "video" in spec:
        capture = cv2.VideoCapture(spec["video"])
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    crops = spec.get("crops") or [None] * len(spec["images"])
    for path, crop in zip(spec["images"], crops):
        frame = cv2.imread(path)
        if crop is not None:
            x, y, w, h = crop
            frame = np.ascontiguousarray(frame[y:y + h, x:x + w])
        yield frame


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="A roboflow tracker over a MOT sequence's det/det.txt (peer venv).")
    parser.add_argument("tracker", choices=PEERS)
    parser.add_argument("sequence", type=Path, help="sequence folder with seqinfo.ini and det/det.txt")
    parser.add_argument("results", type=Path, help="MOTChallenge results file to write")
    parser.add_argument("--frames", type=Path, help="JSON naming the frames (identity_data.frame_source), for CMC")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a constructor argument of the peer instead of its default (VALUE read as JSON), e.g. "
                             "high_conf_det_threshold=0.5; repeatable")
    args = parser.parse_args(argv)
    options = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.option)}
    name, folder, out_path = args.tracker, args.sequence, args.results
    import supervision as sv

    info = configparser.ConfigParser()
    info.read(folder / "seqinfo.ini")
    frame_rate = float(info["Sequence"]["frameRate"])
    length = int(info["Sequence"]["seqLength"])
    table = np.loadtxt(folder / "det" / "det.txt", delimiter=",", ndmin=2)
    frames = table[:, 0].astype(np.int64)
    tracker = make_tracker(name, frame_rate, **options)
    lines, times = [], []
    images = read_frames(args.frames)
    for frame in range(1, length + 1):
        image = next(images)
        rows = table[frames == frame]
        xyxy = np.concatenate((rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]), axis=1) if len(rows) else np.empty((0, 4))
        dets = sv.Detections(xyxy=xyxy, confidence=rows[:, 6].copy(), class_id=np.zeros(len(rows), dtype=int))
        start = time.perf_counter()
        result = tracker.update(dets, image) if name == "botsort" else tracker.update(dets)
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
