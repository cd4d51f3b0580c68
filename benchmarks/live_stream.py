"""`track` on a real live RTSP stream: share of received frames tracked, latency, and a server cut.

A GStreamer RTSP server on 127.0.0.1 relays ``vtest.avi`` published in real time (10 fps) by ffmpeg
(``tests/live_server.py``). Two runs of ``python -m int8track.apps.cli.track URL`` as a user would type it:

1. ``--seconds`` of stream (600 received frames at 10 fps by default): frames received / tracked / dropped,
   latency from receipt to tracks written (p50/p95/max);
2. the same with the RTSP server killed for ``--down`` seconds at each of ``--cuts`` seconds into the run, then
   restarted: the outages as reported, frames lost, and how many tracks alive before each cut that reappear after
   it kept their ID (:func:`id_continuity`, from the MOT file alone; ``--gap-study`` measures the same offline
   with ground truth, where a kept ID is also checked to be the same person's).

    PYTHONPATH=... python benchmarks/live_stream.py [--seconds 60] [--cuts 10,25,40,55] [--down 3] [--json ...]

Needs ``gir1.2-gst-rtsp-server-1.0`` (apt) and ``imageio-ffmpeg`` (pip); see ``.ci/run``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass
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
    never; the port is closed for ``down_s``, the new server's start overlapping it); ``while_down`` (if given)
    is called once the server is dead, e.g. to restart the publisher with another frame size."""

    after_s: float
    down_s: float | None
    while_down: Callable[[], None] | None = None

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


def run_track(url: str, output_dir: Path, args: list[str], stream=None, cut: ServerCut | tuple[ServerCut, ...] = (),
              timeout_s: float = 300.0, video: bool = False) -> LiveRun:
    """Run ``track URL --output-dir OUTPUT_DIR ARGS`` in a child process; with ``cut`` (one or several, in order),
    kill and restart ``stream``'s server (an :class:`~tests.live_server.RtspStream`) that many seconds after
    tracking started (its progress start line). ``video``: also write the annotated video (else ``--no-video``)."""
    cuts = (cut,) if isinstance(cut, ServerCut) else tuple(cut)
    command = [sys.executable, "-m", "int8track.apps.cli.track", url, "--output-dir", str(output_dir),
               *([] if video else ["--no-video"]), *args]
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
        if cuts and stream is not None and tracking.wait(timeout_s):
            tracking_since = time.monotonic()
            for each in cuts:
                time.sleep(max(0.0, tracking_since + each.after_s - time.monotonic()))
                stream.kill_server()
                killed = time.monotonic()
                if each.while_down is not None:
                    each.while_down()
                if each.down_s is None:
                    break
                stream.arm_server()  # the new server's process starts while the port is closed
                time.sleep(max(0.0, killed + each.down_s - time.monotonic()))
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


#: Bits of the source frame number stamped into the published picture (PETS09-S2L1 has 795 frames)
NUMBER_BITS = 10
_BLOCK = (32, 8)  # width, height of one bit's block in the top rows; the number is stamped twice, side by side


def frame_number_filter(width: int, frames: int) -> str:
    """An ffmpeg ``-vf`` filter that stamps each published frame's position in the (looped) video into its top 8
    rows, twice side by side, as white/black 32-px blocks (bit i of ``N mod frames`` in block i of each copy): H.264
    keeps blocks that size intact, and only the strip goes through ``geq`` (slow per pixel), so the publisher stays
    light. The top: through the test server's old H.264 relay the last slices of a frame arrived damaged, the
    first ones not; and the detector sees a thin stripe on PETS09's sky, where no one walks. Twice: a track's label
    drawn over one copy in the annotated video makes the two disagree, and that read is discarded."""
    block_w, block_h = _BLOCK
    copy = NUMBER_BITS * block_w
    bits = f"255*mod(floor(mod(N,{frames})/pow(2,floor(mod(X,{copy})/{block_w}))),2)"
    return (f"split[picture][copy];[copy]crop={width}:{block_h}:0:0,"
            f"geq=lum='if(lt(X,{2 * copy}),{bits},16)':cb=128:cr=128[strip];"
            "[picture][strip]overlay=0:0")


def read_frame_numbers(video: Path) -> list[int]:
    """The stamped source frame number of every frame of ``video`` (``track``'s annotated output), in order; -1
    where the two copies disagree."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    numbers = []
    block_w, block_h = _BLOCK
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return numbers
            strip = image[2:block_h - 2, :2 * NUMBER_BITS * block_w].mean(axis=2)
            # the middle half of each block: box outlines drawn across the strip are thin
            bits = [np.median(strip[:, i * block_w + 8:(i + 1) * block_w - 8]) > 128 for i in range(2 * NUMBER_BITS)]
            first, second = (sum(int(bit) << i for i, bit in enumerate(half))
                             for half in (bits[:NUMBER_BITS], bits[NUMBER_BITS:]))
            numbers.append(first if first == second else -1)
    finally:
        capture.release()


def cut_truth(run: LiveRun, video: Path, truth, window: int = 5) -> list[GapTruth]:
    """Per outage of a live run on the stamped PETS09-S2L1 video, with ground truth: the people tracked (IoU >=
    0.5) on the last frame written before it, how many are tracked again in the first ``window`` frames after
    it, by the same ID, and the people after it given another person's ID before (``swapped``). Frame ``k`` of the
    annotated video is the ``k``-th frame tracked, whose id is the ``k``-th line of the tracks JSON lines (every
    tracked frame has one, with or without tracks; frames the pipeline dropped have none). An outage whose window
    after it reaches the test video's loop point (a source frame after it precedes the one before it) is not
    scored: everyone before it left the scene, and a camera never does this."""
    info = run.info or {}
    numbers = read_frame_numbers(video)
    tracks_file = run.results.with_name(f"{run.results.stem}_tracks.jsonl")
    frame_ids = [json.loads(line)["frame"] for line in tracks_file.read_text().splitlines() if line.strip()]
    if len(numbers) != len(frame_ids):
        raise ValueError(f"{video}: {len(numbers)} frames, but {len(frame_ids)} frames tracked")
    cuts = [outage["frames_before"] for outage in info.get("outages", {}).get("each", [])]
    source_frame = dict(zip(frame_ids, _source_frames(frame_ids, numbers, cuts, 795)))
    table = read_results(run.results)
    boxes = np.column_stack([table.boxes[:, :2], table.boxes[:, :2] + table.boxes[:, 2:], table.ids])

    def people(frame_id: int) -> dict[int, int]:  # ground-truth person -> track id on a written frame
        number = source_frame[frame_id]
        return {} if number < 0 else _truth_to_track(truth, number + 1, boxes[table.frames == frame_id])

    results = []
    for outage in info.get("outages", {}).get("each", []):
        before_ids = [f for f in frame_ids if f <= outage["frames_before"]]
        after_ids = [f for f in frame_ids if f > outage["frames_before"]][:window]
        if not outage.get("recovered") or not before_ids or len(after_ids) < window:
            continue
        last_before = source_frame[before_ids[-1]]
        if any(0 <= source_frame[f] < last_before for f in after_ids):  # the video looped: another scene
            continue
        before, after = people(before_ids[-1]), {}
        for frame_id in after_ids:
            for person, track_id in people(frame_id).items():
                after.setdefault(person, track_id)
        results.append(_gap_counts(before, after))
    return results


def _source_frames(frame_ids: list[int], numbers: list[int], cuts: list[int], frames: int) -> list[int]:
    """The source frame of each tracked frame from the stamped numbers read back (-1: unreadable), filling the gaps:
    between two outages the stream delivers consecutive source frames, so ``number - frame_id`` hardly changes
    there (a frame lost or repeated in transit shifts it by one); a frame without a valid read takes it from the
    nearest frame with one on its side of every outage (-1 when there is none)."""
    segment = np.searchsorted(np.asarray(sorted(cuts)), np.asarray(frame_ids), side="left")
    valid = [k for k, number in enumerate(numbers) if 0 <= number < frames]
    result = []
    for k, frame_id in enumerate(frame_ids):
        same = [j for j in valid if segment[j] == segment[k]]
        if not same:
            result.append(-1)
            continue
        nearest = min(same, key=lambda j: abs(j - k))
        result.append((numbers[nearest] + frame_id - frame_ids[nearest]) % frames)
    return result


def _gap_counts(before: dict[int, int], after: dict[int, int]) -> GapTruth:
    both = [person for person in before if person in after]
    owner = {track_id: person for person, track_id in before.items()}
    return GapTruth(len(before), len(both), sum(before[person] == after[person] for person in both),
                    sum(owner.get(track_id, person) != person for person, track_id in after.items()))


@dataclass(frozen=True)
class GapTruth:
    """Across one gap, with ground truth: people tracked before it, found after, by the same ID, and people after
    it holding another person's ID from before."""

    alive_before: int
    found_after: int
    kept_id: int
    swapped: int


@dataclass(frozen=True)
class GapResult:
    """Ground-truth people tracked (IoU >= 0.5) on the last frame before a gap, how many are tracked again in the
    5 frames after it, how many of those by the same track ID, and how many people after it were given the ID
    another person had before (``swapped``).

    ``mode``: ``outage`` steps the tracker over the gap by the time that passed and re-associates the tracks lost
    across it within the Kalman filter's uncertainty (``gap_reacquire_s``: what ``track`` does on live sources);
    ``iou`` steps by the time that passed but associates by IoU alone (``gap_reacquire_s=0``); ``count`` steps one
    frame, as a tracker counting frames does."""

    gap_s: float
    mode: str
    alive_before: int
    found_after: int
    kept_id: int
    swapped: int


GAP_MODES = {"outage": {}, "iou": {"gap_reacquire_s": 0.0}, "count": {"gap_reacquire_s": 0.0}}


def gap_study(sequence_dir: Path, weights: Path, gaps_s: tuple[float, ...], cuts: tuple[int, ...],
              track_buffer: int = 300, cache_dir: Path = Path("runs/live_stream/detections"),
              reid: Path | None = None) -> list[GapResult]:
    """Offline, with ground truth: a recorded sequence whose frames stop for ``gap_s`` at each frame of ``cuts``
    (after 20 frames of tracking), then resume. The detector runs on the real frames (cached per weights).
    ``reid``: an appearance model's ONNX file; the tracker is then ``--reid``'s (modes ``outage`` and ``iou``)."""
    from benchmarks.detect_interval import detector_detections
    from int8track.apps.io.motchallenge import load_sequence, read_ground_truth

    sequence = load_sequence(sequence_dir)
    detections = detector_detections(sequence, weights, threads=2, cache_dir=cache_dir)
    truth = read_ground_truth(sequence.gt_path)
    embedder = None
    if reid is not None:
        from int8track.tracker.appearance import OnnxEmbedder

        embedder = OnnxEmbedder(reid, num_threads=1)
    images = _ImageCache(sequence.image_paths()) if embedder is not None else None
    results = []
    for gap_s in gaps_s:
        skipped = int(round(gap_s * sequence.frame_rate))
        for mode in GAP_MODES if embedder is None else ("outage", "iou"):
            counts = np.zeros(4, dtype=int)
            for cut in cuts:
                if cut + skipped + 5 <= len(detections):
                    counts += _one_gap(detections, truth, sequence.frame_rate, (cut, skipped), mode, track_buffer,
                                       (embedder, images))
            results.append(GapResult(gap_s, f"{mode} + reid" if embedder is not None else mode,
                                     *(int(c) for c in counts)))
    return results


class _ImageCache:
    """Frames of a sequence read once (the gap study revisits each frame for several gaps)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths, self.images = paths, {}

    def __getitem__(self, index: int):
        import cv2

        if index not in self.images:
            self.images[index] = cv2.imread(str(self.paths[index]))
        return self.images[index]


def _one_gap(detections: list[np.ndarray], truth, fps: float, where: tuple[int, int], mode: str,
             track_buffer: int, appearance: tuple = (None, None)) -> tuple[int, int, int, int]:
    """(people before, found after, same ID, swapped) of one gap of ``skipped`` frames after frame ``cut``
    (``where``); ``appearance``: (embedder, images) for ``--reid``'s tracker, or Nones."""
    from int8track.tracker import ByteTracker
    from int8track.tracker.reid import wrap_tracker

    (cut, skipped), (embedder, images) = where, appearance
    tracker = ByteTracker(frame_rate=fps, track_buffer=track_buffer, **GAP_MODES[mode])
    if embedder is not None:
        tracker = wrap_tracker(tracker, reid=embedder)

    def update(index: int, **step):
        frame = () if embedder is None else (images[index],)
        return tracker.update(detections[index][:, :5], *frame, **step)

    for index in range(cut - 20, cut):
        tracks = update(index)
    before = _truth_to_track(truth, cut, tracks)  # frame ids are 1-based: index cut-1 is frame cut
    after: dict[int, int] = {}
    for k, index in enumerate(range(cut + skipped, cut + skipped + 5)):
        step = skipped + 1 if k == 0 and mode != "count" else 1
        tracks = update(index, frame_gap=step)
        for person, track_id in _truth_to_track(truth, index + 1, tracks).items():
            after.setdefault(person, track_id)
    return astuple(_gap_counts(before, after))


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
    parser.add_argument("--cuts", default="10,25,40,55",
                        help="seconds after tracking started at which the cut run kills the server (comma-separated)")
    parser.add_argument("--down", type=float, default=3.0, help="seconds the server stays down")
    parser.add_argument("--track-buffer", type=int, default=300,
                        help="track buffer for the cut run and the gap study (frames at 30 fps; 300 -> 10 s, so "
                             "tracks outlive the outage and only association decides)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/live_stream"))
    parser.add_argument("--json", type=Path, help="write the table as JSON")
    parser.add_argument("--track-args", default="", help="extra track arguments (one string)")
    parser.add_argument("--gap-study", action="store_true",
                        help="instead: offline on PETS09-S2L1 with ground truth, IDs kept across gaps of 1-7 s")
    parser.add_argument("--cut-only", action="store_true", help="only the cut run (not the plain one)")
    parser.add_argument("--reid", type=Path, default=None, metavar="ONNX",
                        help="--gap-study: with the --reid tracker and this appearance model")
    args = parser.parse_args(argv)
    if args.gap_study:
        return _print_gap_study(args)
    sys.path.insert(0, str(TESTS))
    from live_server import RtspStream

    video = require_path(args.video or SHARED_DATA / "videos/vtest.avi", "video")
    weights = require_path(args.weights or SHARED_DATA / "weights/bytetrack_nano_mot17.onnx", "weights")
    frames = str(int(round(args.seconds * 10)))
    base = ["--weights", str(weights), "--max-frames", frames, *args.track_args.split()]
    cuts = tuple(ServerCut(float(at), args.down) for at in args.cuts.split(","))
    # The default video is PETS09-S2L1's frames: stamp their numbers so the cut run can be scored on ground truth.
    stamp = frame_number_filter(768, 795) if args.video is None else None
    rows = []
    with RtspStream(video, video_filter=stamp) as stream:
        if not args.cut_only:
            rows.append(_summary("live", run_track(stream.url, args.output_dir / "plain", base), None))
        cut_run = run_track(stream.url, args.output_dir / "cut", [*base, "--track-buffer", str(args.track_buffer)],
                            stream=stream, cut=cuts, timeout_s=300 + 10 * len(cuts), video=stamp is not None)
    per_cut = cut_continuity(cut_run)
    total = IdContinuity(*(sum(getattr(c, f) for c in per_cut) for f in ("alive_before", "reappeared", "kept_id")))
    rows.append(_summary(f"{len(cuts)} cuts of {args.down:g} s", cut_run, total))
    truth = _cut_truth_or_none(cut_run) if stamp is not None else None
    _print_rows(rows, per_cut, truth)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "rows": rows, "cuts": [{"after_s": c.after_s, "down_s": c.down_s} for c in cuts],
            "per_cut": [asdict(c) for c in per_cut], "truth_per_cut": [asdict(t) for t in truth or []],
        }, indent=1) + "\n")
    return 0


def _cut_truth_or_none(run: LiveRun) -> list[GapTruth] | None:
    from int8track.apps.io.motchallenge import read_ground_truth

    sequence = require_path(SHARED_DATA / "MOT15/train/PETS09-S2L1", "PETS09-S2L1")
    try:
        return cut_truth(run, run.results.with_suffix(".mp4"), read_ground_truth(sequence / "gt/gt.txt"))
    except (ValueError, OSError) as exc:
        print(f"no ground-truth scoring: {exc}")
        return None


def _print_rows(rows: list[dict], per_cut: list[IdContinuity], truth: list[GapTruth] | None) -> None:
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    print("per cut, from the MOT file (alive before / reappeared / same ID):",
          [(c.alive_before, c.reappeared, c.kept_id) for c in per_cut])
    if truth:
        sums = [sum(getattr(t, f) for t in truth) for f in ("alive_before", "found_after", "kept_id", "swapped")]
        print("per cut, ground truth (people before / found after / same ID / swapped):",
              [astuple(t) for t in truth], "total", sums,
              f"kept {100 * sums[2] / sums[1]:.0f}%" if sums[1] else "")


def cut_continuity(run: LiveRun) -> list[IdContinuity]:
    """:func:`id_continuity` of each outage the run came back from (its report's ``outages.each``)."""
    info = run.info or {}
    fps = info.get("source_fps") or 10.0
    return [id_continuity(run.results, outage["frames_before"], outage["duration_s"], fps)
            for outage in info.get("outages", {}).get("each", []) if outage.get("recovered")]


def _print_gap_study(args: argparse.Namespace) -> int:
    sequence = require_path(SHARED_DATA / "MOT15/train/PETS09-S2L1", "PETS09-S2L1")
    weights = require_path(args.weights or SHARED_DATA / "weights/bytetrack_nano_mot17.onnx", "weights")
    cuts = tuple(range(40, 765, 25))  # every 3.6 s of the sequence: different people, crossings and crowds
    results = gap_study(sequence, weights, (1.0, 2.0, 3.0, 5.0, 7.0), cuts, track_buffer=args.track_buffer,
                        reid=args.reid)
    print(f"IDs kept across a gap, PETS09-S2L1 (7 fps), up to {len(cuts)} cuts, --track-buffer {args.track_buffer}")
    print("gap s | mode | people before | found after | same ID | kept % | swapped")
    for r in results:
        share = f"{100 * r.kept_id / r.found_after:.0f}" if r.found_after else "-"
        print(f"{r.gap_s:g} | {r.mode} | {r.alive_before} | {r.found_after} | {r.kept_id} | {share} | {r.swapped}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
