"""Many streams on one machine: K copies of a video tracked (a) by K separate ``track`` processes, (b) by the worker
pool, (c) by the pool with batched inference, (d) by Ray actors on a local cluster; all in one run, interleaved per K.

For each K and mode: aggregate fps over the whole command (process start and model load included) and over the
serving span (first stream's first frame to last stream's last frame, from the streams' timing files), per-stream
fps, p95 frame latency (summed stage time of a frame), how many streams kept up with the source's frame rate
(10 fps for vtest.avi; files are read as fast as possible, not paced), and each stage's share of all stage time.
Checks that every mode wrote the same MOT file for every stream as the pool (the pool with batching may differ in
the last float bits of a batched convolution, so it is reported, not required). Prints a table, writes
``streams.json`` and ``streams.csv``.

The ratios compare modes measured in the same run; on a machine shared with other work only those are fair.

Measured 2026-12-02 on the 2-core machine, quiet (nothing else running), 150 frames per stream, pool and Ray with
2 workers x 1 thread; aggregate fps over the whole command (over the serving span), ratios vs naive in the same run:

    ByteTrack nano fp32 (608x832):
    K=1  naive 13.6 (20.9)   pool 13.1 (19.4) x0.96   batch 14.4 (21.5) x1.06   ray  8.0 (14.8) x0.59
    K=2  naive 24.4 (38.6)   pool 27.3 (38.8) x1.12   batch 26.8 (39.5) x1.10   ray 16.5 (27.8) x0.68
    K=4  naive 24.7 (36.7)   pool 29.5 (35.7) x1.20   batch 25.4 (34.0) x1.03   ray 21.9 (30.4) x0.89
    K=8  naive 21.9 (33.5)   pool 32.0 (35.7) x1.46   batch 26.3 (30.2) x1.20   ray 27.8 (34.6) x1.27
    yolov5n (480x640), K=4: fp32 naive 26.8 (42.5), pool 34.1 (42.7) x1.27; int8 naive 32.4 (55.5), pool 45.9
    (58.1) x1.42 (the int8 model calibrated once before both modes, so naive did not calibrate either)

Every mode wrote the pool's MOT file for every stream at every K (Ray and the batched pool included). Serving
throughput is the same in every mode (~35 fps fp32 ByteTrack nano: both cores are busy with inference whatever
schedules it); the pool's gain is start-up (one model load per worker instead of per stream), so it grows with
K. Batching does not pay on 2 cores: it lowered serving throughput at K=4 and 8 (34.0 and 30.2 vs the pool's
35.7 fps) and raised p95 frame latency (151 vs 136 ms, 361 vs 299 ms), so it stays off by default.
Ray costs ~7 s to start a local cluster and its actors, and ~0.7 s per stream at K=8 over the pool.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from int8track.apps.cli.fleet import prepare_model
from int8track.apps.fleet.config import FleetConfig, ModelRef
from int8track.apps.fleet.jobs import plan_jobs
from int8track.apps.fleet.pool import run_fleet
from int8track.apps.models.request import CalibrationRequest, ModelRequest
from int8track.apps.pipeline.profiler import TimingReport
from int8track.quant.config import QuantConfig, held_out_count

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path, write_json_and_csv  # noqa: E402

DEFAULT_VIDEO = SHARED_DATA / "videos" / "vtest.avi"
DEFAULT_WEIGHTS = SHARED_DATA / "weights" / "bytetrack_nano_mot17.onnx"
MODES = ("naive", "pool", "batch", "ray")
SOURCE_FPS = 10.0  # vtest.avi's header


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--ks", default="1,2,4,8", help="stream counts (default 1,2,4,8)")
    parser.add_argument("--modes", default="naive,pool,ray", help=f"comma-separated of {','.join(MODES)}")
    parser.add_argument("--frames", type=int, default=150, help="frames per stream (default 150)")
    parser.add_argument("--precisions", default="fp32", help="fp32,int8")
    parser.add_argument("--calib-frames", type=int, default=50)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool/Ray workers (default: cores)")
    parser.add_argument("--quick", action="store_true", help="smoke test: K=1,2, 8 frames")
    parser.add_argument("--output-dir", type=Path, default=Path("runs") / "streams")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.ks, args.frames = "1,2", 8
    video = require_path(args.video, "video")
    weights = require_path(args.weights, "weights")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        sys.exit(f"error: unknown mode(s) {sorted(set(modes) - set(MODES))}; choose from {MODES}")
    ks = [int(k) for k in args.ks.split(",")]
    cores = os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        int8 = None
        if precision == "int8":
            quant = QuantConfig(num_frames=None, held_out_frames=held_out_count(args.calib_frames))
            int8 = CalibrationRequest(quant=quant, frames=args.calib_frames)
        request = ModelRequest(weights=weights, threads=cores, int8=int8)
        model = prepare_model(request, [str(video)], None)
        for k in ks:
            reference: dict[str, str] | None = None
            for mode in modes:
                out = args.output_dir / precision / f"k{k}" / mode
                row = run_mode(mode, k, video, weights, model, precision, args, out)
                files = {p.parent.name: p.read_text() for p in sorted(out.glob("*/vtest.txt"))}
                if mode == "pool":
                    reference = files
                row["same_mot_as_pool"] = None if reference is None or mode == "pool" else files == reference
                rows.append(row)
                print(_format_row(row), flush=True)
    for row in rows:  # the pool's speed-up over naive, same K and precision
        naive = next((r for r in rows if r["mode"] == "naive" and r["k"] == row["k"]
                      and r["precision"] == row["precision"]), None)
        if naive:
            row["speedup_vs_naive_wall"] = row["aggregate_fps_wall"] / naive["aggregate_fps_wall"]
            row["speedup_vs_naive_serving"] = row["aggregate_fps_serving"] / naive["aggregate_fps_serving"]
    print(f"\n{len(rows)} runs, {args.frames} frames per stream, {cores} cores (speed-ups vs naive, same run):")
    for row in rows:
        print(_format_row(row) + f"  x{row.get('speedup_vs_naive_wall', float('nan')):.2f} wall"
              f"  x{row.get('speedup_vs_naive_serving', float('nan')):.2f} serving")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    meta = {"video": str(video), "weights": str(weights), "frames": args.frames, "cores": cores,
            "workers": args.workers, "source_fps": SOURCE_FPS}
    columns = [c for c in rows[0] if c != "stage_share"] if rows else []
    write_json_and_csv(args.output_dir / "streams", {"meta": meta, "runs": rows}, rows, columns)
    return 0


def run_mode(mode: str, k: int, video: Path, weights: Path, model: ModelRef, precision: str,
             args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Track K copies of ``video`` in ``mode``; the row of measurements."""
    jobs = plan_jobs([str(video)] * k, out)
    config = FleetConfig(workers=args.workers, threads=os.cpu_count(), max_frames=args.frames, write_video=False)
    start = time.perf_counter()
    if mode == "naive":
        _naive(jobs, weights, precision, args)
    elif mode == "pool":
        run_fleet(jobs, model, config)
    elif mode == "batch":
        run_fleet(jobs, model, config.with_batching())
    else:
        from int8track.apps.fleet.ray_actors import run_fleet_ray

        run_fleet_ray(jobs, model, config)
    wall = time.perf_counter() - start
    return {"precision": precision, "k": k, "mode": mode, "frames_per_stream": args.frames, "wall_s": wall,
            **_measure(out, k, wall)}


def _naive(jobs, weights: Path, precision: str, args: argparse.Namespace) -> None:
    """K ``track`` processes side by side, one inference thread each, as a user would start them."""
    extra = ["--int8", "--calib-frames", str(args.calib_frames)] if precision == "int8" else []
    processes = [subprocess.Popen(
        [sys.executable, "-m", "int8track.apps.cli.track", job.location, "--weights", str(weights), "--threads", "1",
         "--no-video", "--quiet", "--max-frames", str(args.frames), "--output-dir", job.output_dir, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for job in jobs]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"naive track process failed: {err.decode().strip().splitlines()[-1:]}")


def _measure(out: Path, k: int, wall: float) -> dict[str, Any]:
    """Rates, latency and stage shares from the streams' timing files (a file's mtime is its stream's end)."""
    timings = sorted(out.glob("*/vtest_timing.json"))
    if len(timings) != k:
        raise RuntimeError(f"{out}: {len(timings)} timing files for {k} streams")
    reports = [TimingReport.load_json(path) for path in timings]
    ends = [path.stat().st_mtime for path in timings]
    starts = [end - report.info["wall_s"] for end, report in zip(ends, reports)]
    frames = sum(report.num_frames for report in reports)
    fps = [report.info["end_to_end_fps"] for report in reports]
    p95 = [float(np.percentile(report.totals_ns(), 95)) / 1e6 for report in reports]
    stage_ns = {s: sum(float(np.sum(r.samples_ns[s])) for r in reports) for s in reports[0].stages}
    grand = sum(stage_ns.values()) or 1.0
    return {
        "aggregate_fps_wall": frames / wall,
        "aggregate_fps_serving": frames / (max(ends) - min(starts)),
        "stream_fps_min": min(fps), "stream_fps_mean": float(np.mean(fps)),
        "p95_latency_ms_max": max(p95), "p95_latency_ms_mean": float(np.mean(p95)),
        "streams_kept_up": sum(f >= SOURCE_FPS for f in fps),
        "stage_share": {s: v / grand for s, v in stage_ns.items()},
    }


def _format_row(row: dict[str, Any]) -> str:
    same = {None: "-", True: "same", False: "DIFF"}[row.get("same_mot_as_pool")]
    return (f"{row['precision']:<5} K={row['k']:<2} {row['mode']:<6} wall {row['wall_s']:6.1f}s  "
            f"agg {row['aggregate_fps_wall']:6.1f} fps (serving {row['aggregate_fps_serving']:6.1f})  "
            f"stream {row['stream_fps_mean']:5.1f} fps  p95 {row['p95_latency_ms_max']:6.1f} ms  "
            f"kept up {row['streams_kept_up']}/{row['k']}  MOT {same}")


if __name__ == "__main__":
    raise SystemExit(main())
