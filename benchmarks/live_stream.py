"""`track` on a real live RTSP stream: share of received frames tracked, latency, and a server cut.

A GStreamer RTSP server on 127.0.0.1 relays ``vtest.avi`` published in real time (10 fps) by ffmpeg
(``tests/live_server.py``). Two runs of ``python -m int8track.apps.cli.track URL`` as a user would type it:

1. ``--seconds`` of stream (600 received frames at 10 fps by default): frames received / tracked / dropped,
   latency from receipt to tracks written (p50/p95/max);
2. the same with the RTSP server killed for ``--down`` seconds ``--cut-after`` seconds into the run, then
   restarted: the outage as reported, frames lost, and how many tracks alive before the cut that reappear after
   it kept their ID (:func:`id_continuity`, from the MOT file alone).

    PYTHONPATH=... python benchmarks/live_stream.py [--seconds 60] [--down 3] [--json runs/live_stream.json]

Needs ``gir1.2-gst-rtsp-server-1.0`` (apt) and ``imageio-ffmpeg`` (pip); see ``.ci/run``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from int8track.apps.io.motchallenge import read_results
from int8track.tracker.iou import iou_matrix

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path  # noqa: E402 (needs the path above)

TESTS = Path(__file__).resolve().parents[1] / "tests"


@dataclass(frozen=True)
class ServerCut:
    """Kill the stream's server ``after_s`` seconds after tracking started, restart it ``down_s`` later (None:
    never)."""

    after_s: float
    down_s: float | None

    def __post_init__(self) -> None:
        if not (self.after_s >= 0 and (self.down_s is None or self.down_s > 0)):
            raise ValueError(f"ServerCut needs after_s >= 0 and down_s > 0 or None, got {self.after_s}, {self.down_s}")


@dataclass(frozen=True)
class LiveRun:
    """One ``track`` run on a live URL: exit status, stderr lines, the timing report's ``info`` (None when it
    wrote none) and the MOT results file."""

    returncode: int
    stderr: tuple[str, ...]
    info: dict | None
    results: Path
    wall_s: float


def run_track(url: str, output_dir: Path, args: list[str], stream=None, cut: ServerCut | None = None,
              timeout_s: float = 300.0) -> LiveRun:
    """Run ``track URL --output-dir OUTPUT_DIR ARGS`` in a child process; with ``cut``, kill and restart
    ``stream``'s server (an :class:`~tests.live_server.RtspStream`) once tracking has started (its progress
    start line)."""
    command = [sys.executable, "-m", "int8track.apps.cli.track", url, "--output-dir", str(output_dir),
               "--no-video", *args]
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    tracking = threading.Event()

    def collect() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if line.startswith(f"{_stem(url)}:"):  # the progress start line: frames are being tracked
                tracking.set()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        if cut is not None and stream is not None and tracking.wait(timeout_s):
            time.sleep(cut.after_s)
            stream.kill_server()
            if cut.down_s is not None:
                time.sleep(cut.down_s)
                stream.start_server(wait=False)
        process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    timing = output_dir / f"{_stem(url)}_timing.json"
    info = json.loads(timing.read_text()).get("info") if timing.exists() else None
    return LiveRun(process.returncode, tuple(lines), info, output_dir / f"{_stem(url)}.txt",
                   time.monotonic() - started)


def _stem(url: str) -> str:
    from int8track.apps.io.urls import stream_name

    return stream_name(url)


@dataclass(frozen=True)
class IdContinuity:
    """Tracks alive in the last frame before an outage, how many were found again after it, and how many of
    those kept their ID."""

    alive_before: int
    reappeared: int
    kept_id: int

    @property
    def kept_fraction(self) -> float | None:
        return self.kept_id / self.reappeared if self.reappeared else None


def id_continuity(results: Path, frames_before: int, gap_s: float, fps: float, window: int = 5,
                  min_iou: float = 0.3) -> IdContinuity:
    """Compare the tracks of the last frame before an outage with those of the first ``window`` frames written
    after it.

    ``frames_before``: frames received before the outage (frame ids up to it are before; the report's
    ``outages.each[].frames_before``). A track alive before reappears with its ID when that ID is seen after
    (only the tracker could have given it back), or under a new ID when a track born after the outage matches
    it one-to-one (Hungarian) by IoU >= ``min_iou`` with either its last box or that box moved on by its own
    velocity (its last rows, at ``fps``) for the time that passed (``gap_s`` plus the frames around it).
    Counting either box as a match makes "reappeared" generous, so the kept share is not flattered.
    Only boxes and ids from the MOT file: independent of the tracker.
    """
    table = read_results(results)
    frames, ids = table.frames, table.ids
    xyxy = np.column_stack([table.boxes[:, :2], table.boxes[:, :2] + table.boxes[:, 2:]])
    if not np.any(frames <= frames_before):
        return IdContinuity(0, 0, 0)
    last = frames[frames <= frames_before].max()
    before_ids = {int(i) for i in ids[frames == last]}
    # the first ``window`` frames written after the outage (a pipeline behind drops some frame ids)
    after = np.isin(frames, np.unique(frames[frames > frames_before])[:window])
    kept = before_ids & {int(i) for i in ids[after]}
    born = sorted({int(i) for i in ids[after]} - {int(i) for i in ids[frames <= frames_before]})
    lost = sorted(before_ids - kept)
    if not born or not lost:
        return IdContinuity(len(before_ids), len(kept), len(kept))
    iou = np.zeros((len(lost), len(born)))
    for i, track_id in enumerate(lost):
        rows = np.flatnonzero((ids == track_id) & (frames <= last) & (frames > last - window))
        rows = rows[np.argsort(frames[rows])]
        span = (frames[rows[-1]] - frames[rows[0]]) / fps
        velocity = (xyxy[rows[-1]] - xyxy[rows[0]]) / span if span > 0 else np.zeros(4)
        for j, born_id in enumerate(born):
            first = np.flatnonzero(after & (ids == born_id))
            first = first[np.argmin(frames[first])]
            elapsed = gap_s + (frames[first] - last - 1) / fps  # the outage plus the frames around it
            candidates = np.stack([xyxy[rows[-1]], xyxy[rows[-1]] + velocity * elapsed])
            iou[i, j] = iou_matrix(candidates, xyxy[first][None]).max()
    pairs = zip(*linear_sum_assignment(-iou))
    found_new = sum(iou[r, c] >= min_iou for r, c in pairs)
    return IdContinuity(len(before_ids), len(kept) + int(found_new), len(kept))


@dataclass(frozen=True)
class GapResult:
    """Ground-truth people tracked (IoU >= 0.5) on the last frame before a gap, how many are tracked again in the
    5 frames after it, and how many of those by the same track ID, with the tracker stepped over the gap by the
    time that passed (``elapsed``) or by one frame (``count``: what a tracker counting frames does)."""

    gap_s: float
    mode: str
    alive_before: int
    found_after: int
    kept_id: int


def gap_study(sequence_dir: Path, weights: Path, gaps_s: tuple[float, ...], cuts: tuple[int, ...],
              track_buffer: int = 300, cache_dir: Path = Path("runs/live_stream/detections")) -> list[GapResult]:
    """Offline, with ground truth: a recorded sequence whose frames stop for ``gap_s`` at each frame of ``cuts``
    (after 20 frames of tracking), then resume. The detector runs on the real frames (cached per weights)."""
    from benchmarks.detect_interval import detector_detections
    from int8track.apps.io.motchallenge import load_sequence, read_ground_truth
    from int8track.tracker import ByteTracker

    sequence = load_sequence(sequence_dir)
    detections = detector_detections(sequence, weights, threads=2, cache_dir=cache_dir)
    truth = read_ground_truth(sequence.gt_path)
    fps = sequence.frame_rate
    results = []
    for gap_s in gaps_s:
        skipped = int(round(gap_s * fps))
        for mode in ("elapsed", "count"):
            alive = found = kept = 0
            for cut in cuts:
                tracker = ByteTracker(frame_rate=fps, track_buffer=track_buffer)
                for index in range(cut - 20, cut):
                    tracks = tracker.update(detections[index][:, :5])
                before = _truth_to_track(truth, cut, tracks)  # frame ids are 1-based: index cut-1 is frame cut
                after: dict[int, int] = {}
                for k, index in enumerate(range(cut + skipped, cut + skipped + 5)):
                    step = skipped + 1 if k == 0 and mode == "elapsed" else 1
                    tracks = tracker.update(detections[index][:, :5], frame_gap=step)
                    for person, track_id in _truth_to_track(truth, index + 1, tracks).items():
                        after.setdefault(person, track_id)
                both = [person for person in before if person in after]
                alive, found = alive + len(before), found + len(both)
                kept += sum(before[person] == after[person] for person in both)
            results.append(GapResult(gap_s, mode, alive, found, kept))
    return results


def _truth_to_track(truth, frame: int, tracks: np.ndarray) -> dict[int, int]:
    """Ground-truth id -> track id of frame ``frame`` (one-to-one, IoU >= 0.5)."""
    rows = truth.frames == frame
    boxes = np.column_stack([truth.boxes[rows, :2], truth.boxes[rows, :2] + truth.boxes[rows, 2:]])
    if len(tracks) == 0 or len(boxes) == 0:
        return {}
    iou = iou_matrix(boxes, tracks[:, :4])
    people, found = linear_sum_assignment(-iou)
    return {int(truth.ids[rows][p]): int(tracks[f, 4]) for p, f in zip(people, found) if iou[p, f] >= 0.5}


def _summary(label: str, run: LiveRun, continuity: IdContinuity | None) -> dict:
    info = run.info or {}
    latency = info.get("latency_ms", {})
    outages = info.get("outages", {})
    received = info.get("frames_received", 0)
    return {
        "run": label, "exit": run.returncode, "received": received, "tracked": info.get("frames_tracked", 0),
        "tracked_pct": round(100 * info.get("tracked_fraction", 0) or 0, 1),
        "dropped_buffer_full": info.get("frames_dropped", {}).get("buffer_full"),
        "p50_ms": latency.get("p50_ms"), "p95_ms": latency.get("p95_ms"), "max_ms": latency.get("max_ms"),
        "outages": outages.get("count"), "outage_s": outages.get("total_s"),
        "alive_before_cut": continuity.alive_before if continuity else None,
        "reappeared": continuity.reappeared if continuity else None,
        "kept_id": continuity.kept_id if continuity else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="video to publish (default shared vtest.avi)")
    parser.add_argument("--weights", type=Path, default=None, help="detector (default shared bytetrack nano)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stream time per run at 10 fps")
    parser.add_argument("--cut-after", type=float, default=15.0, help="seconds into the cut run to kill the server")
    parser.add_argument("--down", type=float, default=3.0, help="seconds the server stays down")
    parser.add_argument("--track-buffer", type=int, default=300,
                        help="track buffer for the cut run and the gap study (frames at 30 fps; 300 -> 10 s, so "
                             "tracks outlive the outage and only association decides)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/live_stream"))
    parser.add_argument("--json", type=Path, help="write the table as JSON")
    parser.add_argument("--track-args", default="", help="extra track arguments (one string)")
    parser.add_argument("--gap-study", action="store_true",
                        help="instead: offline on PETS09-S2L1 with ground truth, IDs kept across gaps of 1-5 s")
    args = parser.parse_args(argv)
    if args.gap_study:
        return _print_gap_study(args)
    sys.path.insert(0, str(TESTS))
    from live_server import RtspStream

    video = require_path(args.video or SHARED_DATA / "videos/vtest.avi", "video")
    weights = require_path(args.weights or SHARED_DATA / "weights/bytetrack_nano_mot17.onnx", "weights")
    frames = str(int(round(args.seconds * 10)))
    base = ["--weights", str(weights), "--max-frames", frames, *args.track_args.split()]
    rows = []
    with RtspStream(video) as stream:
        plain = run_track(stream.url, args.output_dir / "plain", base)
        rows.append(_summary("live", plain, None))
        cut = ServerCut(args.cut_after, args.down)
        cut_run = run_track(stream.url, args.output_dir / "cut", [*base, "--track-buffer", str(args.track_buffer)],
                            stream=stream, cut=cut)
        each = (cut_run.info or {}).get("outages", {}).get("each", [])
        continuity = None
        if each:
            fps = (cut_run.info or {}).get("source_fps") or 10.0
            continuity = id_continuity(cut_run.results, each[0]["frames_before"], each[0]["duration_s"], fps)
        rows.append(_summary(f"cut {args.down:g} s", cut_run, continuity))
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cut": asdict(ServerCut(args.cut_after, args.down))},
                                        indent=1) + "\n")
    return 0


def _print_gap_study(args: argparse.Namespace) -> int:

    sequence = require_path(SHARED_DATA / "MOT15/train/PETS09-S2L1", "PETS09-S2L1")
    weights = require_path(args.weights or SHARED_DATA / "weights/bytetrack_nano_mot17.onnx", "weights")
    cuts = (60, 160, 260, 360, 460, 560, 660)
    results = gap_study(sequence, weights, (0.5, 1.0, 2.0, 3.0, 5.0), cuts, track_buffer=args.track_buffer)
    print(f"IDs kept across a gap, PETS09-S2L1 (7 fps), {len(cuts)} cuts, --track-buffer {args.track_buffer}")
    print("gap s | stepped by | people before | found after | same ID | kept %")
    for r in results:
        share = f"{100 * r.kept_id / r.found_after:.0f}" if r.found_after else "-"
        print(f"{r.gap_s:g} | {r.mode} | {r.alive_before} | {r.found_after} | {r.kept_id} | {share}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
