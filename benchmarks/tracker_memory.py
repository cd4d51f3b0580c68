"""Does ``ByteTracker`` memory stay flat over a long run? 100,000 frames of people entering and leaving.

Synthetic churn (``churn_frames``): a fixed number of people on screen, each walking for 40-80 frames
and then replaced by a new one elsewhere, 20% of detections missed, scores 0.3-1.0; so tracks are created,
lost, refound and removed all the time. Every ``--every`` frames it prints the process RSS, the tracks held,
the tracks created so far and the size of a serialised snapshot (``state_dict().to_bytes()``); at the end,
the time of a snapshot round trip (``state_dict``, ``to_bytes``, ``from_bytes``, ``load_state_dict``).

    .venv/bin/python benchmarks/tracker_memory.py [--frames 100000] [--people 12] [--every 10000]
"""
from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from int8track.tracker import ByteTracker
from int8track.tracker.state import TrackerState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json_and_csv

LIFETIME = (40, 80)  # frames a person stays; then a new person replaces them
MISS_RATE = 0.2


def churn_frames(frames: int, people: int = 12, seed: int = 0) -> Iterator[np.ndarray]:
    """(K, 5) ``x1, y1, x2, y2, score`` per frame: ``people`` walkers, each replaced after ``LIFETIME`` frames."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, 1000, (people, 2))
    born = rng.integers(-LIFETIME[1], 0, people)
    for frame in range(frames):
        expired = frame - born > rng.integers(*LIFETIME, people)
        starts[expired] = rng.uniform(0, 1000, (int(expired.sum()), 2))
        born[expired] = frame
        xy = starts + 3.0 * (frame - born)[:, None]
        seen = rng.random(people) > MISS_RATE
        yield np.column_stack((xy, xy + (40.0, 100.0), rng.uniform(0.3, 1.0, people)))[seen]


def rss_mib() -> float:
    """Resident set size of this process now (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def snapshot_timing(tracker: ByteTracker, number: int = 200) -> dict[str, float]:
    """Median microseconds of each snapshot step on ``tracker`` (5 repeats of ``number`` calls)."""
    state = tracker.state_dict()
    data = state.to_bytes()
    other = ByteTracker(tracker.config)
    steps = {"state_dict": tracker.state_dict, "to_bytes": state.to_bytes,
             "from_bytes": lambda: TrackerState.from_bytes(data),
             "load_state_dict": lambda: other.load_state_dict(state)}
    return {step: 1e6 * float(np.median(timeit.repeat(call, number=number, repeat=5))) / number
            for step, call in steps.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--every", type=int, default=10_000, help="report every N frames")
    parser.add_argument("--json", type=Path, help="write the rows to PATH.json and PATH.csv")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.people < 1 or args.every < 1:
        parser.error("--frames, --people and --every must be >= 1")
    tracker = ByteTracker(frame_rate=30)
    rows = []
    largest = 0
    start = time.perf_counter()
    header = f"{'frame':>8}{'RSS MiB':>9}{'tracks':>8}{'max tracks':>11}{'created':>9}{'snapshot B':>11}{'s':>7}"
    print(header)
    print("-" * len(header))
    for frame, dets in enumerate(churn_frames(args.frames, args.people), start=1):
        tracker.update(dets)
        largest = max(largest, tracker.num_tracks)
        if frame % args.every == 0 or frame in (1, 1000):
            state = tracker.state_dict()
            row = {"frame": frame, "rss_mib": round(rss_mib(), 1), "tracks": tracker.num_tracks,
                   "max_tracks": largest, "created": state.header.created, "snapshot_bytes": len(state.to_bytes()),
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(f"{frame:>8}{row['rss_mib']:>9.1f}{row['tracks']:>8}{largest:>11}{row['created']:>9}"
                  f"{row['snapshot_bytes']:>11}{row['seconds']:>7.1f}", flush=True)
    snapshot_us = snapshot_timing(tracker)
    print(f"snapshot round trip at {tracker.num_tracks} tracks, median of 5 x 200 (us): "
          + ", ".join(f"{step} {us:.0f}" for step, us in snapshot_us.items()))
    if args.json:
        write_json_and_csv(args.json, {"settings": vars(args) | {"json": str(args.json)}, "rows": rows,
                                       "snapshot_us": snapshot_us}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
