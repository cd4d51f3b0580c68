"""`track --int8` through the product's front door: is every fresh int8 calibration faithful, identical and quick?

Runs the `track` program (a subprocess, as a user would) on a video: fp32; fp32 on the same frames re-encoded as
JPEG quality 95 (the noise reference: a change no user would notice); then ``--runs`` fresh ``--int8``
calibrations, each with an empty model cache (``INT8TRACK_HOME`` in a new temporary folder), the second one while
``--busy`` other processes keep the cores busy. The speed plan's timings (``quant.speed_table``, per graph and
machine) are measured by the first int8 run and kept for the others, as they are for a user.
Scores every run with ``apps.evaluation`` (MOTChallenge protocol,
MOT15 layout: PETS09-S2L1's gt rows with consider flag 0 dropped) and prints MOTA, IDF1, ID switches, the int8
decisions (floor, agreement reached, int8 convs, calibration seconds and frames/s per step) and median inference
ms per run; whether the int8 runs' tracks are identical; and writes ``front_door.json`` and ``front_door.csv``.

    python benchmarks/int8_front_door.py                       # ByteTrack nano on vtest.avi, 3 int8 runs
    python benchmarks/int8_front_door.py --weights ../shared/data/weights/yolox_nano.onnx --max-frames 100

Timings from a shared machine are pessimistic; the calibration's CPU seconds are reported beside the wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, busy_processes, require_path, write_json_and_csv  # noqa: E402
from int8track.apps.evaluation.metrics import accumulate, summarize  # noqa: E402
from int8track.apps.io.motchallenge import load_sequence, read_results  # noqa: E402

DEFAULT_VIDEO = SHARED_DATA / "videos" / "vtest.avi"
DEFAULT_SEQUENCE = SHARED_DATA / "MOT15" / "train" / "PETS09-S2L1"
DEFAULT_WEIGHTS = SHARED_DATA / "weights" / "bytetrack_nano_mot17.onnx"
JPEG_QUALITY = 95


def track(source: Path, out: Path, args: argparse.Namespace, extra: list[str], env: dict | None = None) -> dict:
    """One `track` run; its timing report, results file and stderr."""
    argv = [sys.executable, "-m", "int8track.apps.cli.track", str(source), "--weights", str(args.weights),
            "--no-video", "--quiet", "--output-dir", str(out), *extra]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.max_frames is not None:
        argv += ["--max-frames", str(args.max_frames)]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"track failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-2000:]}")
    stem = source.stem if source.is_file() else source.name
    timing = json.loads((out / f"{stem}_timing.json").read_text())
    return {"timing": timing, "results": out / f"{stem}.txt", "stderr": done.stderr,
            "wall_s": time.perf_counter() - start}


def jpeg_frames(video: Path, folder: Path, max_frames: int | None) -> Path:
    """The video's frames as JPEG quality 95 files (000001.jpg, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    k = 0
    while max_frames is None or k < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        k += 1
        cv2.imwrite(str(folder / f"{k:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    cap.release()
    return folder


def score(results: Path, sequence_root: Path, frames: int) -> dict:
    sequence = load_sequence(sequence_root)
    acc = accumulate(sequence.ground_truth(), read_results(results), frames, "MOT15")
    m = summarize({"run": acc})["run"]
    return {"MOTA": 100 * m.mota, "IDF1": 100 * m.idf1, "IDSW": m.num_switches}


def infer_ms(timing: dict) -> float:
    rows = {row["stage"]: row for row in timing["summary"]}
    return float(rows["infer"]["median_ms"])


def interleaved_speed(args: argparse.Namespace, fp32_timing: dict, int8_models: list[str],
                      rounds: int = 30) -> dict[str, dict]:
    """Median inference ms of fp32 (at the size the fp32 run used) and of every shipped int8 model, calls
    interleaved round-robin on one frame, on one ONNX Runtime thread; and the worst int8/fp32 ratio.

    One thread only: with several multi-threaded sessions in one process, each session's idle pool threads spin
    after its run and slow the next session (on this 2-core machine identical graphs then differed by 12% and
    two threads timed slower than one); ``track``'s own per-run medians are in the rows beside."""
    from int8track.detectors import load_detector

    size = fp32_timing["info"].get("input_size")
    capture = cv2.VideoCapture(str(args.video))
    _, frame = capture.read()
    capture.release()
    fp32 = load_detector(args.weights, backend="onnxruntime", num_threads=1)
    if size:
        fp32 = fp32.with_input_size([int(v) for v in str(size).split("x")])
    models = [fp32] + [load_detector(path, backend="onnxruntime", num_threads=1) for path in int8_models]
    blob = fp32.preprocess(frame)[0]
    times: list[list[float]] = [[] for _ in models]
    for det in models:
        det.infer(blob)  # warm-up
    for _ in range(rounds):
        for det, samples in zip(models, times):
            start = time.perf_counter()
            det.infer(blob)
            samples.append((time.perf_counter() - start) * 1000)
    medians = [float(sorted(t)[len(t) // 2]) for t in times]
    return {"1": {"fp32_ms": medians[0], "int8_ms": medians[1:],
                  "int8_over_fp32": max(medians[1:], default=medians[0]) / medians[0]}}  # keyed by thread count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--sequence", type=Path, default=DEFAULT_SEQUENCE, help="MOT sequence with the video's gt")
    parser.add_argument("--runs", type=int, default=3, help="fresh int8 calibrations (the second one busy)")
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes during the second int8 run")
    parser.add_argument("--threads", type=int, help="track --threads (default: ONNX Runtime's choice)")
    parser.add_argument("--max-frames", type=int, help="track only this many frames (scores cover them only)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs") / "front_door")
    args = parser.parse_args(argv)
    for path, what in ((args.weights, "weights"), (args.video, "video"), (args.sequence, "sequence")):
        require_path(path, what)
    out = args.output_dir / args.weights.stem
    out.mkdir(parents=True, exist_ok=True)
    frames = args.max_frames or load_sequence(args.sequence).length
    fps = ["--fps", str(cv2.VideoCapture(str(args.video)).get(cv2.CAP_PROP_FPS))]  # same tracker rate everywhere

    rows: list[dict] = []

    def done(row: dict) -> None:  # each run is printed and kept as it finishes: a long benchmark can be cut short
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
        (out / "front_door_rows.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")

    fp32 = track(args.video, out / "fp32", args, [])
    done({"run": "fp32", **score(fp32["results"], args.sequence, frames), "infer_ms": infer_ms(fp32["timing"])})
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = track(jpeg_frames(args.video, Path(tmp) / "vtest_q95", args.max_frames), out / "fp32_jpeg95", args,
                     fps)
        done({"run": f"fp32 on JPEG q{JPEG_QUALITY}", **score(jpeg["results"], args.sequence, frames),
              "infer_ms": infer_ms(jpeg["timing"])})
    results = []
    int8_models: list[str] = []
    speed_table = Path(tempfile.mkdtemp(prefix="speed_table_"))  # measured by the first int8 run, kept after
    for k in range(args.runs):
        busy = busy_processes(args.busy) if k == 1 else []
        try:
            with tempfile.TemporaryDirectory() as home:
                run = track(args.video, out / f"int8_{k + 1}", args, ["--int8"],
                            {"INT8TRACK_HOME": home, "INT8TRACK_SPEED_TABLE": str(speed_table)})
                shipped = sorted(Path(home).glob("int8/*.onnx"))
                if shipped:  # the model this run calibrated, kept for the interleaved timing below
                    int8_models.append(shutil.copy(shipped[0], out / f"int8_{k + 1}" / "int8_model.onnx"))
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        int8 = run["timing"]["info"]["int8"]
        results.append(run["results"].read_bytes())
        done({"run": f"int8 #{k + 1}" + (f" ({args.busy} busy loops)" if busy else ""),
                     **score(run["results"], args.sequence, frames), "infer_ms": infer_ms(run["timing"]),
                     "calibration_s": int8.get("calibration_wall_seconds", int8["calibration_seconds"]),
                     "calibration_steps_s": int8["calibration_seconds"],
                     "calibration_cpu_s": sum(int8["cpu_seconds"].values()),
                     "floor": int8["floor"], "agreement": int8["agreement"], "accepted": int8["accepted"],
                     "int8_convs": int8["quantized_convs"], "float_convs": int8["float_convs"],
                     "observer": int8["observer"], "speed_ms": int8["speed_ms"], "speed_choice": int8["speed_choice"],
                     "frames_per_second": int8["frames_per_second"], "seconds": int8["seconds"],
                     "cpu_seconds": int8["cpu_seconds"], "speed_timings": int8["extra"].get("speed_timings")})
    int8_rows = [r for r in rows if r["run"].startswith("int8")]
    speed = interleaved_speed(args, fp32["timing"], int8_models)
    summary = {
        "weights": str(args.weights), "video": str(args.video), "frames": frames, "threads": args.threads,
        "rows": rows, "int8_tracks_identical": len(set(results)) <= 1,
        "int8_mota_spread": (max(r["MOTA"] for r in int8_rows) - min(r["MOTA"] for r in int8_rows)
                             if int8_rows else None),
        "every_int8_within_1_mota": all(r["MOTA"] >= rows[0]["MOTA"] - 1.0 for r in int8_rows),
        "every_int8_at_floor": all(r["agreement"]["high"] >= r["floor"]["high"] and
                                   r["agreement"]["low"] >= r["floor"]["low"] for r in int8_rows),
        "calibration_max_s": max((r["calibration_s"] for r in int8_rows), default=None),
        # from the interleaved timing in this process: the runs' own medians were taken minutes apart (and one
        # under busy loops), so they differ by more than any int8 effect
        "interleaved_infer_ms": speed,
        "int8_never_slower": all(t["int8_over_fp32"] <= 1.05 for t in speed.values()),
    }
    print(f"\n{args.weights.name} on {args.video.name}, {frames} frames (threads {args.threads or 'ORT default'})")
    print(f"{'run':28s} {'MOTA':>6s} {'IDF1':>6s} {'IDSW':>5s} {'infer ms':>9s} {'calib s':>8s} {'cpu s':>6s}  "
          "decision")
    for r in rows:
        calib = (f"{r['calibration_s']:8.1f} {r['calibration_cpu_s']:6.1f}" if "calibration_s" in r
                 else f"{'':8s} {'':6s}")
        decision = ""
        if "accepted" in r:
            decision = (f"{r['accepted']}; {r['int8_convs']} int8 / {r['float_convs']} float convs; F1@0.5 "
                        f"{r['agreement']['high']:.3f}>={r['floor']['high']:.3f}, F1@0.1 {r['agreement']['low']:.3f}"
                        f">={r['floor']['low']:.3f}")
        print(f"{r['run']:28s} {r['MOTA']:6.1f} {r['IDF1']:6.1f} {r['IDSW']:5d} {r['infer_ms']:9.1f} {calib}  "
              f"{decision}")
    for r in int8_rows:
        print(f"{r['run']}: " + ", ".join(f"{k} {v:.1f} s" + (f" ({r['frames_per_second'][k]:.1f} frames/s)"
                                                              if k in r["frames_per_second"] else "")
                                          for k, v in r["seconds"].items()))
    for threads, t in speed.items():
        print(f"interleaved inference, {threads} thread(s): fp32 {t['fp32_ms']:.1f} ms, int8 models "
              + ", ".join(f"{ms:.1f}" for ms in t["int8_ms"]) + f" ms (worst int8/fp32 {t['int8_over_fp32']:.2f})")
    for key in ("int8_tracks_identical", "int8_mota_spread", "every_int8_within_1_mota", "every_int8_at_floor",
                "calibration_max_s", "int8_never_slower"):
        print(f"{key}: {summary[key]}")
    write_json_and_csv(out / "front_door", summary, rows, ["run", "MOTA", "IDF1", "IDSW", "infer_ms", "calibration_s",
                                                           "calibration_cpu_s", "accepted", "int8_convs",
                                                           "float_convs"])
    return summary


if __name__ == "__main__":
    main()
