"""Detector accuracy and speed on PETS09-S2L1 (real frames, real gt).

For each real model: person AP50 / AP75 / AP50:95 (COCO-style, 101-point, ``detectors.evaluation``)
over the sequence, and ms per frame split into preprocess / infer / postprocess for each backend at
1 and 2 threads (JPEG decoding excluded). Accuracy runs on ONNX Runtime (the backends give the same
boxes, see tests/detectors/test_detectors_real.py) with ``--conf`` (default 0.01, as in COCO-style evaluation).

    .venv/bin/python -m benchmarks.detection --frames 795 --json results/detection.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from int8track.apps.io.motchallenge import load_sequence

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path
from int8track.detectors import load_detector
from int8track.detectors.evaluation import boxes_by_frame, coco_summary, gt_recall
from int8track.frames import read_image

MODELS = ["yolox_nano.onnx", "bytetrack_nano_mot17.onnx", "yolov5n.pt"]
SEQUENCE = SHARED_DATA / "MOT15" / "train" / "PETS09-S2L1"
STAGES = ("preprocess", "infer", "postprocess")


def accuracy(weights: Path, paths: list[Path], gt: list[np.ndarray], conf: float) -> dict[str, float]:
    """Person AP over the frames (ORT backend, 2 threads) and recall of gt at score >= 0.5."""
    det = load_detector(weights, backend="onnxruntime", num_threads=2, conf_thresh=conf, classes=[0])
    dets = [det(read_image(p)) for p in tqdm(paths, desc=f"AP {weights.name}", unit="frame")]
    summary = coco_summary(dets, gt)
    summary["recall@0.5score"] = gt_recall([d[d[:, 4] >= 0.5] for d in dets], gt)
    return summary


def timing(weights: Path, backend: str, threads: int, frames: list[np.ndarray], warmup: int = 3) -> dict[str, float]:
    """Mean ms per frame of each stage (default thresholds), after ``warmup`` untimed frames."""
    det = load_detector(weights, backend=backend, num_threads=threads)
    for frame in frames[:warmup]:
        det(frame)
    per_stage = {stage: [] for stage in STAGES}
    for frame in tqdm(frames, desc=f"{weights.name} {backend} {threads}t", unit="frame", leave=False):
        t0 = time.perf_counter_ns()
        blob, meta = det.preprocess(frame)
        t1 = time.perf_counter_ns()
        raw = det.infer(blob)
        t2 = time.perf_counter_ns()
        det.postprocess(raw, meta)
        t3 = time.perf_counter_ns()
        for stage, ns in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2)):
            per_stage[stage].append(ns / 1e6)
    totals = np.sum([per_stage[s] for s in STAGES], axis=0)
    out = {f"{stage}_ms": float(np.mean(v)) for stage, v in per_stage.items()}
    out.update(total_ms=float(totals.mean()), total_p50_ms=float(np.median(totals)), fps=float(1000 / totals.mean()))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="AP pass on the first N frames only (default all)")
    parser.add_argument("--timing-frames", type=int, default=60, help="frames per backend/thread timing run")
    parser.add_argument("--conf", type=float, default=0.01, help="confidence threshold for the AP pass")
    parser.add_argument("--models", nargs="+", default=MODELS, help="files in shared/data/weights")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--skip-ap", action="store_true", help="timing only")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    args = parser.parse_args(argv)

    seq = load_sequence(require_path(SEQUENCE, "PETS09-S2L1 sequence"))
    n = seq.length if args.frames is None else min(args.frames, seq.length)
    paths = seq.image_paths()[:n]
    gt_all = seq.ground_truth()
    gt = boxes_by_frame(gt_all.frames, gt_all.boxes, seq.length)[:n]
    timing_frames = [read_image(p) for p in paths[: args.timing_frames]]

    results: dict = {"sequence": str(SEQUENCE), "frames": n, "conf": args.conf, "gt_boxes": int(sum(map(len, gt))),
                     "timing_frames": len(timing_frames), "models": {}}
    for name in args.models:
        weights = require_path(SHARED_DATA / "weights" / name, f"weights {name}")
        entry = {"accuracy": None if args.skip_ap else accuracy(weights, paths, gt, args.conf), "speed": {}}
        for backend in args.backends:
            for threads in args.threads:
                entry["speed"][f"{backend}/{threads}t"] = timing(weights, backend, threads, timing_frames)
        results["models"][name] = entry
        if args.json:  # keep partial results if a later model fails
            write_json(results, args.json)
    print_table(results)
    return results


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(path)


def print_table(results: dict) -> None:
    scored = {name: entry["accuracy"] for name, entry in results["models"].items() if entry["accuracy"]}
    if scored:
        print(f"\nPETS09-S2L1, {results['frames']} frames, {results['gt_boxes']} gt boxes, conf {results['conf']}")
        print(f"{'model':28s} {'AP50':>6s} {'AP75':>6s} {'AP50:95':>8s} {'rec@.5':>7s}")
    for name, a in scored.items():
        print(f"{name:28s} {a['AP50']:6.3f} {a['AP75']:6.3f} {a['AP50:95']:8.3f} {a['recall@0.5score']:7.3f}")
    print(f"\nms per frame over {results['timing_frames']} frames (mean; p50 of total)")
    print(f"{'model':28s} {'backend':16s} {'pre':>6s} {'infer':>7s} {'post':>6s} {'total':>7s} {'p50':>7s} {'fps':>6s}")
    for name, entry in results["models"].items():
        for config, s in entry["speed"].items():
            print(f"{name:28s} {config:16s} {s['preprocess_ms']:6.2f} {s['infer_ms']:7.2f} {s['postprocess_ms']:6.2f} "
                  f"{s['total_ms']:7.2f} {s['total_p50_ms']:7.2f} {s['fps']:6.1f}")


if __name__ == "__main__":
    main()
