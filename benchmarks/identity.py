"""Identity benchmark: our ByteTracker (default and parity mode, and with ``track --cmc`` / ``--reid``) against
roboflow ``trackers`` ByteTrack, C-BIoU and BoT-SORT (with its CMC on the variants' frames) on the same cached
detections, scored under the MOTChallenge protocol (MOTA, IDF1, HOTA, ID switches) with the
tracker's milliseconds per frame (``update`` calls only).

Sequences: our detector's cached outputs (``benchmarks/identity_data.py``: vtest.avi fitted at 10 fps, PETS09-S2L1
native at 7 fps, the PETS09 panning-camera and shaking-camera variants, MOT17-05 mini) and the MOT17 train
public FRCNN detections.

    .venv/bin/python benchmarks/identity_data.py            # once: runs the detector, writes runs/identity/sequences
    /tmp/peers/bin/pip install torch==2.13.0 trackers==2.6.1 numpy opencv-python   # the peers' own venv
    .venv/bin/python benchmarks/identity.py --peers-python /tmp/peers/bin/python --json runs/identity/report.json

The peers run as a subprocess in their virtual environment (``benchmarks/identity_peers.py``); their results files
are kept under ``runs/identity/results/<tracker>/`` and reused (``--rerun-peers`` to run them again), so iterating
on our tracker costs only our runs. ``--trackers`` picks the columns, ``--sequences`` the rows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from int8track.apps.evaluation.metrics import OVERALL, evaluate_sequence, evaluate_sequence_hota, summarize
from int8track.apps.io.mot_results import MotResultWriter
from int8track.apps.io.motchallenge import MotSequence, load_sequence
from int8track.tracker import ByteTracker, TrackerConfig

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import PROJECT_ROOT, SHARED_DATA
from benchmarks.identity_data import CACHE_ROOT, MOT17_NAMES, MOT17_PUBLIC, SUBSAMPLED, VARIANTS, frame_source

RESULTS_ROOT = PROJECT_ROOT / "runs" / "identity" / "results"
PEER_SCRIPT = Path(__file__).resolve().with_name("identity_peers.py")
SEQUENCES = (*VARIANTS, *MOT17_NAMES, *SUBSAMPLED)
#: Rows pooling a group's events (motmetrics' overall: not a mean of per-sequence values).
POOLED = {"MOT17 (pooled)": MOT17_NAMES, "MOT17-s3 (pooled)": SUBSAMPLED}
#: The official ByteTrack, reproduced exactly (tests/tracker/test_tracker_parity.py): pixel-inclusive IoU, official ids,
#: every mechanism beyond the official tracker off.
PARITY = TrackerConfig.parity()
OURS = {"ours": TrackerConfig(),
        # the default before the identity work: continuous IoU, compact ids, no mechanism beyond the official
        "ours-previous": TrackerConfig(velocity_noise_exponent=0, freeze_size_on_low_score=False),
        "ours-parity": PARITY,
        # not run by default: one mechanism at a time, and the alternatives benchmarks/README.md discusses
        "ours-velocity-only": TrackerConfig(freeze_size_on_low_score=False),
        "ours-freeze-only": TrackerConfig(velocity_noise_exponent=0),
        "ours-exp1.5": TrackerConfig(velocity_noise_exponent=1.5),
        "ours+biou": TrackerConfig(buffer_ratio=0.3, second_buffer_ratio=0.5),
        "ours-no-shared-shift": TrackerConfig(shared_shift=0.0),
        # roboflow's thresholds (high 0.6, new tracks 0.7) in ours: the thresholds study of benchmarks/README.md
        "ours@0.6": TrackerConfig.from_track_thresh(0.6)}
#: Our tracker with what ``track --cmc`` / ``--reid`` / both add (``tracker.reid.wrap_tracker``: OSNet x0.25 MSMT17
#: weights, **research use only**): they read the frames, so they run on the variants with images only.
#: name: (the ``OURS`` config, reid, cmc).
WRAPPED = {"ours+cmc": ("ours", False, True), "ours+reid": ("ours", True, False),
           "ours+reid+cmc": ("ours", True, True), "ours+reid+cmc@0.6": ("ours@0.6", True, True)}
REID_WEIGHTS = SHARED_DATA / "weights" / "osnet_x0_25_msmt17.onnx"
#: roboflow BoT-SORT compensates camera motion from the frames where a variant has them (not MOT17 public).
PEERS = {"roboflow-bytetrack": "bytetrack", "roboflow-cbiou": "cbiou", "roboflow-botsort": "botsort",
         "roboflow-botsort@0.5": "botsort"}
#: Peer constructor arguments other than the defaults: ``roboflow-botsort@0.5`` has our thresholds (high 0.5, new
#: tracks 0.6) instead of its 0.6 / 0.7.
PEER_OPTIONS = {"roboflow-botsort@0.5": ("high_conf_det_threshold=0.5", "track_activation_threshold=0.6")}
TRACKERS = (*OURS, *WRAPPED, *PEERS)
DEFAULT_TRACKERS = ("ours", "ours-previous", "ours-parity", *PEERS)


@dataclass(frozen=True)
class Run:
    """One tracker on one sequence: its results file and milliseconds per ``update`` call."""

    tracker: str
    sequence: str
    results_path: Path
    ms_per_frame: tuple[float, ...]


def sequence_folder(name: str, cache_root: Path = CACHE_ROOT) -> Path:
    """The folder of a sequence: a cached variant (``benchmarks/identity_data.py``) or a MOT17 public one."""
    if name in VARIANTS or name in SUBSAMPLED:
        folder = cache_root / name
        if not (folder / "det" / "det.txt").is_file():
            sys.exit(f"error: no cached detections for {name} ({folder}); run benchmarks/identity_data.py first")
        return folder
    if name in MOT17_NAMES:
        return MOT17_PUBLIC / name
    raise ValueError(f"unknown sequence {name!r}; expected one of {SEQUENCES}")


def run_ours(config: TrackerConfig, tracker_name: str, sequence: MotSequence, out_dir: Path) -> Run:
    """Track the sequence's detections with a fresh ByteTracker at its frame rate; write the results file."""
    tracker = ByteTracker(config, frame_rate=sequence.frame_rate)
    path = out_dir / tracker_name / f"{sequence.name}.txt"
    times = []
    with MotResultWriter(path) as writer:
        for frame_id, dets in enumerate(sequence.detections(), start=1):
            start = time.perf_counter_ns()
            tracks = tracker.update(dets)
            times.append((time.perf_counter_ns() - start) / 1e6)
            writer.write(frame_id, tracks)
    return Run(tracker_name, sequence.name, path, tuple(times))


def run_wrapped(tracker_name: str, sequence: MotSequence, out_dir: Path) -> Run:
    """``ours`` with ``--reid`` and/or ``--cmc`` (``WRAPPED``) over a variant's frames; writes its results file."""
    from int8track.tracker.reid import wrap_tracker

    config, reid, cmc = WRAPPED[tracker_name]
    tracker = wrap_tracker(ByteTracker(OURS[config], frame_rate=sequence.frame_rate),
                           reid=REID_WEIGHTS if reid else None, cmc=cmc)
    path = out_dir / tracker_name / f"{sequence.name}.txt"
    times = []
    frames = VARIANTS[sequence.name].frames()
    with MotResultWriter(path) as writer:
        for frame_id, dets in enumerate(sequence.detections(), start=1):
            frame = next(frames)
            start = time.perf_counter_ns()
            tracks = tracker.update(dets, frame)
            times.append((time.perf_counter_ns() - start) / 1e6)
            writer.write(frame_id, tracks)
    return Run(tracker_name, sequence.name, path, tuple(times))


def run_peer(peers_python: Path, tracker_name: str, sequence: MotSequence, out_dir: Path, rerun: bool) -> Run:
    """A roboflow tracker in its own venv on the sequence; reuses an earlier results file unless ``rerun``."""
    path = out_dir / tracker_name / f"{sequence.name}.txt"
    timing_path = path.with_suffix(".ms.json")
    if rerun or not (path.is_file() and timing_path.is_file()):
        command = [str(peers_python), str(PEER_SCRIPT), PEERS[tracker_name], str(sequence.root), str(path)]
        if PEERS[tracker_name] == "botsort" and sequence.name in VARIANTS:
            spec = path.with_suffix(".frames.json")
            spec.parent.mkdir(parents=True, exist_ok=True)
            spec.write_text(json.dumps(frame_source(sequence.name)))
            command += ["--frames", str(spec)]
        for option in PEER_OPTIONS.get(tracker_name, ()):
            command += ["--option", option]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"error: {tracker_name} failed on {sequence.name}:\n{done.stderr[-2000:]}")
        timing_path.write_text(done.stdout.strip().splitlines()[-1])
    times = json.loads(timing_path.read_text())["ms_per_frame"]
    return Run(tracker_name, sequence.name, path, tuple(times))


def time_updates(trackers: list[str], sequences: dict[str, MotSequence], repeats: int) -> dict[str, dict[str, float]]:
    """Per sequence, per tracker of ours: ms per ``update`` over the whole sequence, the minimum of ``repeats``
    runs interleaved across trackers (so a change in the machine's load hits all of them alike)."""
    table: dict[str, dict[str, float]] = {}
    for sequence in sequences.values():
        frames = sequence.detections()
        best = dict.fromkeys(trackers, float("inf"))
        for _ in range(repeats):
            for name in trackers:
                tracker = ByteTracker(OURS[name], frame_rate=sequence.frame_rate)
                start = time.perf_counter_ns()
                for dets in frames:
                    tracker.update(dets)
                best[name] = min(best[name], (time.perf_counter_ns() - start) / 1e6 / len(frames))
        table[sequence.name] = best
    return table


def evaluate(runs: list[Run], sequences: dict[str, MotSequence]) -> dict[str, dict[str, dict]]:
    """Per tracker: per sequence (and each ``POOLED`` group) metrics and ms per frame."""
    report: dict[str, dict[str, dict]] = {}
    for tracker in dict.fromkeys(run.tracker for run in runs):
        mine = [run for run in runs if run.tracker == tracker]
        accumulators = {r.sequence: evaluate_sequence(sequences[r.sequence], r.results_path) for r in mine}
        hota = {r.sequence: evaluate_sequence_hota(sequences[r.sequence], r.results_path) for r in mine}
        metrics = summarize(accumulators, hota)
        rows = {}
        for run in mine:
            row = metrics[run.sequence].to_dict()
            row["ms_per_frame"] = float(np.mean(run.ms_per_frame))
            rows[run.sequence] = row
        for label, group in POOLED.items():
            names = [r.sequence for r in mine if r.sequence in group]
            if len(names) > 1:
                pooled = summarize({name: accumulators[name] for name in names}, {name: hota[name] for name in names})
                row = pooled[OVERALL].to_dict()
                row["ms_per_frame"] = float(np.mean(np.concatenate([r.ms_per_frame for r in mine
                                                                    if r.sequence in group])))
                rows[label] = row
        report[tracker] = rows
    return report


def format_table(report: dict[str, dict[str, dict]]) -> str:
    """One block per sequence, one line per tracker: MOTA, IDF1, HOTA (in %), ID switches, ms per frame."""
    header = f"{'sequence':<19}{'tracker':<20}{'MOTA':>7}{'IDF1':>7}{'HOTA':>7}{'IDSW':>6}{'ms/frame':>10}"
    lines = [header, "-" * len(header)]
    sequences = list(dict.fromkeys(name for rows in report.values() for name in rows))
    for name in sequences:
        for tracker, rows in report.items():
            if name in rows:
                m = rows[name]
                lines.append(f"{name:<19}{tracker:<20}{100 * m['mota']:>7.1f}{100 * m['idf1']:>7.1f}"
                             f"{100 * m['hota']:>7.1f}{m['num_switches']:>6}{m['ms_per_frame']:>10.3f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Identity keeping: ours vs roboflow ByteTrack and C-BIoU.")
    parser.add_argument("--trackers", default=",".join(DEFAULT_TRACKERS),
                        help=f"comma-separated, of {', '.join(TRACKERS)} (default: {', '.join(DEFAULT_TRACKERS)})")
    parser.add_argument("--sequences", default=",".join(SEQUENCES), help="comma-separated, of " + ", ".join(SEQUENCES))
    parser.add_argument("--peers-python", type=Path, default=Path("/tmp/peers/bin/python"),
                        help="python of the venv with roboflow trackers==2.6.1 (default /tmp/peers/bin/python)")
    parser.add_argument("--rerun-peers", action="store_true", help="run the peers again instead of reusing results")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_ROOT, help="where results files go")
    parser.add_argument("--cache-root", type=Path, default=CACHE_ROOT, help="where identity_data.py cached sequences")
    parser.add_argument("--json", type=Path, help="write the report as JSON to this path")
    parser.add_argument("--timing-repeats", type=int, default=0, metavar="N",
                        help="instead of scoring: time our trackers' update, min of N interleaved runs per sequence")
    return parser


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise SystemExit(f"error: unknown {what} {unknown or text!r}; expected some of {', '.join(allowed)}")
    return names


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    trackers = _names(args.trackers, TRACKERS, "trackers")
    names = _names(args.sequences, SEQUENCES, "sequences")
    if any(t in PEERS for t in trackers) and not args.peers_python.is_file():
        sys.exit(f"error: peers' python not found: {args.peers_python} (see this script's docstring)")
    sequences = {name: load_sequence(sequence_folder(name, args.cache_root)) for name in names}
    sequences = {seq.name: seq for seq in sequences.values()}
    if args.timing_repeats > 0:
        ours = [t for t in trackers if t in OURS]  # the wrapped modes read frames: timed by reid_cmc.py
        timing = time_updates(ours, sequences, args.timing_repeats)
        print(f"{'sequence':<19}" + "".join(f"{name:>15}" for name in ours) + "   (ms per update, min of "
              f"{args.timing_repeats})")
        for name, row in timing.items():
            print(f"{name:<19}" + "".join(f"{row[t]:>15.3f}" for t in ours))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"ms_per_update_min": timing, "repeats": args.timing_repeats}, indent=1))
        return 0
    runs = []
    for tracker in trackers:
        for sequence in sequences.values():
            if tracker in OURS:
                runs.append(run_ours(OURS[tracker], tracker, sequence, args.out_dir))
            elif tracker in WRAPPED:
                if sequence.name in VARIANTS:  # the others have no images
                    runs.append(run_wrapped(tracker, sequence, args.out_dir))
            else:
                runs.append(run_peer(args.peers_python, tracker, sequence, args.out_dir, args.rerun_peers))
    report = evaluate(runs, sequences)
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"trackers": {t: (str(OURS[t]) if t in OURS else PEERS.get(t, t))
                                                      for t in trackers},
                                         "results": report}, indent=1))
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
