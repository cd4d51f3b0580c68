"""How many calibration frames does int8 need? Agreement with fp32 against the number of calibration frames.

For each count N (default 16, 32, 48, 64, 100, 200) and each of ``--repeats`` different frame sets, the detector is
quantized with N calibration frames (evenly spaced over the video, shifted per repeat) and scored against fp32 on
a fixed evaluation set no calibration ever sees (every 12th frame from frame 6). The plan is fixed so that only the
frames change: the percentile observer, GPTQ rounding, every conv int8 except the stem and the head (no speed plan,
no floor search: the most quantized plan the product would try, so the most sensitive to calibration). Beside each
score stands the noise floor: fp32 against fp32 on the same evaluation frames re-encoded as JPEG quality 95.

Prints, per N, the detection F1 at the tracker's thresholds (0.5 and 0.1; mean and range over repeats) and the
calibration seconds (statistics pass, GPTQ); writes ``calibration_frames.json`` and ``.csv``.

    python benchmarks/calibration_frames.py                      # ByteTrack nano on vtest.avi
    python benchmarks/calibration_frames.py --weights ../shared/data/weights/yolox_nano.onnx --counts 32 64
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path, write_json_and_csv  # noqa: E402
from int8track.detectors import load_detector  # noqa: E402
from int8track.frames import evenly  # noqa: E402
from int8track.quant import QuantConfig, quantize_detector  # noqa: E402
from int8track.quant.floor import HeldOut  # noqa: E402
from int8track.quant.fold import fold_batchnorm  # noqa: E402
from int8track.quant.onnx_export import export_fp32, fuse_silu  # noqa: E402

DEFAULT_VIDEO = SHARED_DATA / "videos" / "vtest.avi"
DEFAULT_WEIGHTS = SHARED_DATA / "weights" / "bytetrack_nano_mot17.onnx"
EVAL_STEP, EVAL_OFFSET = 12, 6


def frame_sets(total: int, counts: list[int], repeats: int) -> tuple[list[int], dict[tuple[int, int], list[int]]]:
    """Evaluation indices, and calibration indices per (count, repeat): evenly spaced over the frames that are
    not evaluation frames, the grid shifted by a fraction of its spacing per repeat."""
    evaluation = list(range(EVAL_OFFSET, total, EVAL_STEP))
    pool = [i for i in range(total) if i not in set(evaluation)]
    calibration = {}
    for n in counts:
        base = evenly(len(pool), n)
        spacing = len(pool) / max(1, n)
        for r in range(repeats):
            shift = int(round(r * spacing / repeats))
            calibration[n, r] = sorted({pool[min(len(pool) - 1, i + shift)] for i in base})
    return evaluation, calibration


def decode(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames, index = {}, 0
    while len(frames) < len(wanted):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            frames[index] = frame
        index += 1
    capture.release()
    return frames


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--counts", type=int, nargs="+", default=[16, 32, 48, 64, 100, 200])
    parser.add_argument("--repeats", type=int, default=2, help="different calibration frame sets per count")
    parser.add_argument("--imgsz", default="fitted", help="detector input size, as track --imgsz")
    parser.add_argument("--classes", type=int, nargs="*", default=[0], help="class ids scored (default: person, "
                        "as track)")
    parser.add_argument("--output-dir", type=Path, default=Path("runs") / "calibration_frames")
    args = parser.parse_args(argv)
    require_path(args.weights, "weights")
    require_path(args.video, "video")
    capture = cv2.VideoCapture(str(args.video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = capture.read()
    capture.release()
    if total <= 0 or not ok:
        sys.exit(f"error: cannot read frames of {args.video}")
    evaluation, calibration = frame_sets(total, args.counts, args.repeats)
    frames = decode(args.video, set(evaluation).union(*calibration.values()))
    eval_frames = [frames[i] for i in evaluation if i in frames]
    detector = load_detector(args.weights, imgsz=args.imgsz, frame_shape=first.shape)
    detector = detector.with_classes(args.classes) if args.classes else detector
    fp32 = fuse_silu(export_fp32(fold_batchnorm(detector.model.float().eval()), detector.spec.input_size))
    noise = HeldOut(detector, fp32.SerializeToString(), eval_frames).jpeg_floor(95)
    print(f"{args.weights.name} at {detector.spec.input_size[0]}x{detector.spec.input_size[1]}: "
          f"{len(eval_frames)} evaluation frames; fp32 vs fp32 on JPEG q95: F1@0.5 {noise.high:.3f}, "
          f"F1@0.1 {noise.low:.3f}", flush=True)
    config = QuantConfig(observer="percentile", speed_aware=False, target_agreement=1e-6, num_frames=None)
    out = args.output_dir / args.weights.stem
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for (n, r), indices in calibration.items():
        start = time.perf_counter()
        int8 = quantize_detector(detector, [frames[i] for i in indices], config, eval_frames=eval_frames,
                                 num_threads=1, progress=False)
        report = int8.quant_info
        rows.append({"frames": len(indices), "count": n, "repeat": r, "f1_high": report.agreement["high"],
                     "f1_low": report.agreement["low"], "int8_convs": report.quantized_convs,
                     "statistics_s": report.seconds.get("calibration statistics (one pass, all observers)"),
                     "gptq_s": report.seconds.get("GPTQ weight rounding"), "total_s": time.perf_counter() - start})
        print(json.dumps(rows[-1]), flush=True)
    summary = []
    print(f"\n{'frames':>6s} {'F1@0.5 mean [min, max]':>24s} {'F1@0.1 mean [min, max]':>24s} {'stats s':>8s} "
          f"{'GPTQ s':>7s}")
    for n in args.counts:
        got = [row for row in rows if row["count"] == n]
        hi, lo = [row["f1_high"] for row in got], [row["f1_low"] for row in got]
        summary.append({"count": n, "f1_high_mean": float(np.mean(hi)), "f1_high_min": min(hi),
                        "f1_high_max": max(hi), "f1_low_mean": float(np.mean(lo)), "f1_low_min": min(lo),
                        "f1_low_max": max(lo), "statistics_s": float(np.mean([g["statistics_s"] for g in got])),
                        "gptq_s": float(np.mean([g["gptq_s"] for g in got]))})
        s = summary[-1]
        print(f"{n:6d} {s['f1_high_mean']:8.3f} [{s['f1_high_min']:.3f}, {s['f1_high_max']:.3f}] "
              f"{s['f1_low_mean']:8.3f} [{s['f1_low_min']:.3f}, {s['f1_low_max']:.3f}] {s['statistics_s']:8.1f} "
              f"{s['gptq_s']:7.1f}")
    print(f"noise floor (fp32 vs JPEG q95): F1@0.5 {noise.high:.3f}, F1@0.1 {noise.low:.3f}")
    result = {"weights": str(args.weights), "video": str(args.video), "input_size": detector.spec.input_size,
              "eval_frames": len(eval_frames), "jpeg95": {"high": noise.high, "low": noise.low}, "rows": rows,
              "summary": summary}
    write_json_and_csv(out / "calibration_frames", result, rows)
    return result


if __name__ == "__main__":
    main()
