"""Does the int8 model depend on the machine's load while its speed plan is measured? The `quantize` command on
two fresh caches ($INT8TRACK_HOME each), the second with busy loops running throughout; prints both plans and
whether the saved graphs are identical (exit status 1 when they are not). The "15% rule" column is what the
previous choice rule (the most-float candidate within the speed margin of the fastest) picks on the same timings.

The saved ONNX files carry the quantization report (step durations, timings) in their metadata, which differ from
run to run by nature; the graphs are compared without it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    SHARED_DATA,
    busy_processes,
    require_path,
    stop_processes,
    write_json_and_csv,
)
from int8track.quant.config import SPEED_MARGIN  # noqa: E402

DEFAULT_WEIGHTS = SHARED_DATA / "weights" / "yolov5n.pt"
DEFAULT_VIDEO = SHARED_DATA / "videos" / "vtest.avi"


def graph_digest(path: Path) -> str:
    """sha256 of the ONNX model without its metadata (the report's durations and timings)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    return hashlib.sha256(model.SerializeToString()).hexdigest()[:16]


def margin_rule(speed_ms: dict[str, float], margin: float = SPEED_MARGIN) -> str:
    """The choice the rule before ``quant.speed.pick_candidate`` made on the same timings: of the candidates
    beating fp32 by ``margin``, the most-float one within ``margin`` of the fastest (kept here for comparison)."""
    fp32 = speed_ms["fp32"]
    eligible = [n for n in speed_ms if n != "fp32" and fp32 > speed_ms[n] * (1 + margin)]
    if not eligible:
        return "fp32"
    fastest = min(speed_ms[n] for n in eligible)
    return next(n for n in eligible if speed_ms[n] <= fastest * (1 + margin))


def load_average() -> float:
    return os.getloadavg()[0]


def quantize_fresh(args: argparse.Namespace, folder: Path, busy: int) -> dict:
    """One `quantize` run on a fresh $INT8TRACK_HOME under ``folder``, with ``busy`` busy loops throughout."""
    folder.mkdir(parents=True, exist_ok=True)
    out, report_path = folder / "model_int8.onnx", folder / "report.json"
    command = [sys.executable, "-m", "int8track.apps.cli.quantize", str(args.weights), "--calib", str(args.calib),
               "-o", str(out), "--report", str(report_path), "--quiet"]
    if args.calib_frames is not None:
        command += ["--calib-frames", str(args.calib_frames)]
    env = {**os.environ, "INT8TRACK_HOME": str(folder / "home")}
    env.pop("INT8TRACK_SPEED_TABLE", None)  # a fresh speed table too: the plan is measured in this run
    loops = busy_processes(busy)
    load_before, start = load_average(), time.perf_counter()
    try:
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        stop_processes(loops)
    report = json.loads(report_path.read_text())
    rounds = report["extra"].get("speed_rounds", {})
    return {"busy_loops": busy, "load_before": round(load_before, 2), "load_after": round(load_average(), 2),
            "wall_s": round(time.perf_counter() - start, 1), "speed_choice": report["speed_choice"],
            "accepted": report["accepted"], "float_convs": len(report["float_layers"]),
            "speed_ms": {k: round(v, 2) for k, v in report["speed_ms"].items()},
            "margin_rule_choice": margin_rule(report["speed_ms"]) if report["speed_ms"] else "",
            "rounds": rounds.get("rounds"), "stable": rounds.get("stable"),
            "speed_plan_s": round(report["seconds"].get("speed plan (interleaved ORT timings)", 0.0), 1),
            "graph": graph_digest(out)}


def plan_only(args: argparse.Namespace) -> dict:
    """``--plan-only N``: only the speed plan's timing (``quant.speed.time_models``) of the candidates, N times
    quiet then N times with the busy loops, in this process; the choice of each and the 15% rule's on the same
    timings. Minutes instead of the hour of full quantizations, for the decision alone."""
    from int8track.detectors import load_detector
    from int8track.quant.config import QuantConfig
    from int8track.quant.pipeline import prepare
    from int8track.quant.speed import FP32, pick_candidate, time_models

    detector = load_detector(str(args.weights), backend="onnxruntime", num_threads=1)
    config = QuantConfig(num_frames=2, held_out_frames=1)
    prep = prepare(detector, str(args.calib), config, None)
    candidates = prep.speed_candidates(prep.timing_plan(config))
    models = {name: prep.proto.SerializeToString() if name == FP32 else prep.int8_bytes(plan)
              for name, plan in candidates.items()}
    rows = []
    for busy in (0, args.busy):
        loops = busy_processes(busy)
        try:
            for k in range(args.plan_only):
                load_before, start = load_average(), time.perf_counter()
                timings = time_models(models, prep.calib_blobs[0])
                rows.append({"busy_loops": busy, "run": k, "load": round(load_before, 2),
                             "wall_s": round(time.perf_counter() - start, 1), "rounds": timings.rounds,
                             "stable": timings.stable, "choice": pick_candidate(timings, SPEED_MARGIN),
                             "margin_rule_choice": margin_rule(timings.ms),
                             "ratios": {n: round(ms / timings.fp32_ms, 3) for n, ms in timings.ms.items()}})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            stop_processes(loops)
    choices = {r["choice"] for r in rows}
    print(f"choices: {sorted(choices)}; the 15% rule's: {sorted({r['margin_rule_choice'] for r in rows})}")
    result = {"weights": str(args.weights), "runs": rows, "same_model": len(choices) == 1}
    write_json_and_csv(args.output_dir / "speed_plan_only", result, rows)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--calib", type=Path, default=DEFAULT_VIDEO, help="calibration video / folder")
    parser.add_argument("--calib-frames", type=int, help="quantize --calib-frames (default: the command's)")
    parser.add_argument("--busy", type=int, default=2, help="busy loops during the second run")
    parser.add_argument("--pairs", type=int, default=1, help="quiet/busy pairs to run")
    parser.add_argument("--output-dir", type=Path, default=Path("runs") / "speed_plan_under_load")
    parser.add_argument("--plan-only", type=int, metavar="N",
                        help="only time the speed candidates, N times quiet and N times busy (no quantization)")
    args = parser.parse_args(argv)
    require_path(args.weights, "weights")
    require_path(args.calib, "calibration source")
    if args.plan_only:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        return plan_only(args)
    rows = []
    for pair in range(args.pairs):
        for busy in (0, args.busy):
            row = {"pair": pair, **quantize_fresh(args, args.output_dir / f"pair{pair}_busy{busy}", busy)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'pair':>4} {'busy':>4} {'load':>11} {'wall s':>7} {'plan s':>6} {'rounds':>6}  {'speed choice':<20} "
          f"{'15% rule':<20} {'float':>5}  {'graph':<16}  accepted")
    for r in rows:
        print(f"{r['pair']:>4} {r['busy_loops']:>4} {r['load_before']:>5}-{r['load_after']:<5} {r['wall_s']:>7} "
              f"{r['speed_plan_s']:>6} {r['rounds']!s:>6}  {r['speed_choice']:<20} {r['margin_rule_choice']:<20} "
              f"{r['float_convs']:>5}  {r['graph']:<16}  {r['accepted']}")
    same = len({r["graph"] for r in rows}) == 1
    print("same model in every run" if same else "THE MODELS DIFFER")
    result = {"weights": str(args.weights), "calib": str(args.calib), "runs": rows, "same_model": same}
    write_json_and_csv(args.output_dir / "speed_plan_under_load", result, rows)
    return result


if __name__ == "__main__":
    raise SystemExit(0 if main()["same_model"] else 1)
