"""`track --detect-every` through the product's front door: accuracy, detector calls and wall time.

Runs the `track` program (a subprocess, as a user would) on vtest.avi with the detector on every frame, then
with ``--detect-every 2``, ``3``, ``auto`` and ``auto --no-flow``, then every frame, ``--detect-every 2`` and
``3`` with ``--interpolate 20`` (offline: the MOT file's boxes between detector calls redrawn), plus the every-frame
run on the same frames
re-encoded as JPEG quality 95: the noise floor (a change no user would notice moves MOTA by this much). Scores
every run against PETS09-S2L1's ground truth (the same frames; MOTChallenge protocol, ``apps.evaluation``) and
prints MOTA, IDF1, ID switches, detector calls, wall seconds and the propagation cost per frame.

    python benchmarks/detect_every_front_door.py [--threads 2] [--json runs/detect_every/front_door.json]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import require_path, write_json_and_csv  # noqa: E402
from benchmarks.int8_front_door import (  # noqa: E402
    DEFAULT_SEQUENCE,
    DEFAULT_VIDEO,
    DEFAULT_WEIGHTS,
    jpeg_frames,
    score,
    track,
)
from int8track.apps.io.motchallenge import load_sequence  # noqa: E402

MODES = {
    "every frame": [],
    "every frame, JPEG q95 (noise)": None,  # the same run on re-encoded frames
    "--detect-every 2": ["--detect-every", "2"],
    "--detect-every 3": ["--detect-every", "3"],
    "--detect-every auto": ["--detect-every", "auto"],
    "--detect-every auto --no-flow": ["--detect-every", "auto", "--no-flow"],
    # offline: the MOT file's boxes between detector calls redrawn from both sides, against every frame with the
    # same interpolation
    "every frame --interpolate 20": ["--interpolate", "20"],
    "--detect-every 2 --interpolate 20": ["--detect-every", "2", "--interpolate", "20"],
    "--detect-every 3 --interpolate 20": ["--detect-every", "3", "--interpolate", "20"],
    "every frame --interpolate 20 gsi": ["--interpolate", "20", "--interpolation", "gsi"],
    "--detect-every 2 --interpolate 20 gsi": ["--detect-every", "2", "--interpolate", "20", "--interpolation", "gsi"],
}
COLUMNS = ["mode", "MOTA", "IDF1", "IDSW", "detector_calls", "frames", "wall_s", "end_to_end_fps",
           "propagate_ms_per_frame"]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--sequence", type=Path, default=DEFAULT_SEQUENCE, help="MOT sequence with the video's gt")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma-separated modes to leave out, e.g. 'noise,no-flow' "
                                                   "(a mode is skipped when its name contains one of them)")
    parser.add_argument("--json", type=Path, help="write the rows as JSON (and CSV beside it)")
    args = parser.parse_args(argv)
    skip = [part.strip() for part in args.skip.split(",") if part.strip()]
    require_path(args.video, "video")
    require_path(args.weights, "detector weights")
    frames = args.max_frames or load_sequence(require_path(args.sequence, "sequence")).length
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for mode, extra in MODES.items():
            if any(part in mode for part in skip):
                continue
            source = args.video if extra is not None else jpeg_frames(args.video, work / "jpeg", args.max_frames)
            run = track(source, work / f"run{len(rows)}", args, extra or [])
            info = run["timing"]["info"]
            row = {"mode": mode, **score(run["results"], args.sequence, frames),
                   "detector_calls": info["detector_calls"], "frames": info["frames"], "wall_s": run["wall_s"],
                   "end_to_end_fps": info["end_to_end_fps"], "propagate_ms_per_frame": info["propagate_ms_per_frame"]}
            rows.append(row)
            print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  file=sys.stderr, flush=True)
    header = f"{'mode':<36}{'MOTA':>7}{'IDF1':>7}{'IDSW':>6}{'det calls':>11}{'wall s':>8}{'fps':>7}{'prop ms':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['mode']:<36}{row['MOTA']:>7.1f}{row['IDF1']:>7.1f}{row['IDSW']:>6}"
              f"{row['detector_calls']:>6}/{row['frames']:<4}{row['wall_s']:>8.1f}{row['end_to_end_fps']:>7.1f}"
              f"{row['propagate_ms_per_frame']:>9.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json_and_csv(args.json.with_suffix(""), {"rows": rows}, rows, COLUMNS)
    return rows


if __name__ == "__main__":
    main()
