"""int8 vs fp32 on ONNX Runtime: agreement, person AP50 on PETS09-S2L1, speed at 1 and 2 threads.

Real models are calibrated on PETS09-S2L1 frames k = 0 mod 4, the float set is searched on k = 2 mod 4,
and everything is evaluated on the other frames (k odd), so no evaluation frame was seen by calibration.
Randomly initialised YOLOX-s and YOLOv5s at 640x640 are timed only (default float set, no search).
Timings interleave fp32 and int8 runs on the same blob (median ms) to cancel the drift of a shared CPU.
Beside int8's agreement with fp32 stands fp32's agreement with itself on the same frames re-encoded as JPEG
(quality 95, ``jpegF1``, and its AP50): the noise floor of each metric under a perturbation no user would notice.

    .venv/bin/python -m benchmarks.quantization --frames 100 --json results/quantization.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from int8track.apps.io.motchallenge import load_sequence

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path
from int8track.detectors import Detector, OrtRunner, TorchRunner, create_session, load_detector, zoo_spec
from int8track.detectors.evaluation import boxes_by_frame, coco_summary
from int8track.detectors.layers import fuse_conv_bn
from int8track.detectors.yolov5 import YOLOv5, yolov5_yaml
from int8track.detectors.yolox import YOLOX
from int8track.frames import read_image
from int8track.quant import quantize_detector
from int8track.quant.agreement import detection_f1
from int8track.quant.floor import jpeg
from int8track.quant.fold import fold_batchnorm
from int8track.quant.onnx_export import export_fp32, int8_op_count, optimized_op_counts
from int8track.quant.search import search, write_table
from int8track.quant.sensitivity import cosine
from int8track.quant.simulate import run_simulated

MODELS = ["bytetrack_nano_mot17.onnx", "yolox_nano.onnx", "yolov5n.pt"]
SEQUENCE = SHARED_DATA / "MOT15" / "train" / "PETS09-S2L1"
AP_CONF = 0.01
TRACK_HIGH_THRESH = 0.5  # ByteTracker's default track_high_thresh
JPEG_QUALITY = 95  # the fp32 noise floor: fp32 on frames re-encoded at this quality vs fp32 on the originals


def evenly(items: list, num: int) -> list:
    if num >= len(items):
        return list(items)
    return [items[int(round(i))] for i in np.linspace(0, len(items) - 1, num)]


def interleaved_ms(runners: dict[str, OrtRunner], blob: np.ndarray, rounds: int) -> dict[str, float]:
    """Median ms per inference of each runner, alternating runners every round."""
    for run in runners.values():
        run(blob)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run(blob)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(t)) for name, t in times.items()}


def speed(fp32_onnx: bytes, int8_onnx: bytes, blob: np.ndarray, rounds: int) -> dict[str, dict[str, float]]:
    out = {}
    for threads in (1, 2):
        ms = interleaved_ms({"fp32": OrtRunner(create_session(fp32_onnx, threads)),
                             "int8": OrtRunner(create_session(int8_onnx, threads))}, blob, rounds)
        out[f"{threads}t"] = {"fp32_ms": ms["fp32"], "int8_ms": ms["int8"], "speedup": ms["fp32"] / ms["int8"]}
    return out


def agreement(ref: list[np.ndarray], cand: list[np.ndarray]) -> tuple[float, float]:
    """Detection F1 at the detector's conf threshold and over the boxes scoring >= TRACK_HIGH_THRESH on both sides.

    Boxes near the conf threshold flip in and out under any perturbation; the tracker's high threshold is where
    a flip changes tracks.
    """
    high = [b[b[:, 4] >= TRACK_HIGH_THRESH] for b in ref], [b[b[:, 4] >= TRACK_HIGH_THRESH] for b in cand]
    return detection_f1(ref, cand), detection_f1(*high)


def with_conf(det: Detector, conf: float | None, classes: list[int] | None) -> Detector:
    return Detector(det.spec, det.runner, det.model, conf_thresh=conf, classes=classes)


def real_model(name: str, paths: list[Path], gt: list[np.ndarray], args: argparse.Namespace) -> dict:
    weights = require_path(SHARED_DATA / "weights" / name, f"weights {name}")
    det = load_detector(weights)
    calib = [read_image(p) for p in evenly(paths[0::4], args.calib_frames)]
    search = [read_image(p) for p in evenly(paths[2::4], args.search_frames)]
    eval_idx = evenly([i for i in range(len(paths)) if i % 2 == 1], args.frames)
    frames = [read_image(paths[i]) for i in eval_idx]
    qdet = quantize_detector(det, calib, observer=args.observer, eval_frames=search, num_threads=2,
                             target_agreement=args.target, ranking=args.ranking,
                             migrate=args.migrate,
                             bias_correction=args.bias_correction)
    # the reference is the unmodified folded model (qdet.float_model may carry migration Muls)
    fp32_onnx = export_fp32(fold_batchnorm(det.model.float().eval()), det.spec.input_size).SerializeToString()
    fdet = Detector(det.spec, OrtRunner(create_session(fp32_onnx, 2)))
    fdet_ap = with_conf(fdet, AP_CONF, [0])
    decoders = {"fp32": (fdet, fdet_ap), "int8": (qdet, with_conf(qdet, AP_CONF, [0])), "fp32_jpeg": (fdet, fdet_ap)}
    boxes = {tag: [] for tag in decoders}  # at the detector's conf threshold
    ap_boxes = {tag: [] for tag in decoders}  # person boxes at AP_CONF
    dot = np.zeros(3)  # fp32.int8, fp32.fp32, int8.int8 over all raw outputs (cosine without keeping them)
    sims = []
    for k, frame in enumerate(tqdm(frames, desc=f"{name} fp32 vs int8", unit="frame")):
        blob, meta = det.preprocess(frame)
        raws = {"fp32": fdet.infer(blob), "int8": qdet.infer(blob),
                "fp32_jpeg": fdet.infer(det.preprocess(jpeg(frame, JPEG_QUALITY))[0])}
        a, b = (raws[t].astype(np.float64).ravel() for t in ("fp32", "int8"))
        dot += (a @ b, a @ a, b @ b)
        for tag, (decoder, ap_decoder) in decoders.items():
            boxes[tag].append(decoder.postprocess(raws[tag], meta))
            ap_boxes[tag].append(ap_decoder.postprocess(raws[tag], meta))
        if k < args.sim_frames:
            sims.append(cosine(run_simulated(qdet.float_model, qdet.plan, blob), raws["int8"]))
    f1, f1_high = agreement(boxes["fp32"], boxes["int8"])
    floor, floor_high = agreement(boxes["fp32"], boxes["fp32_jpeg"])
    ap = {tag: coco_summary(ap_boxes[tag], [gt[i] for i in eval_idx]) for tag in decoders}
    counts = optimized_op_counts(qdet.proto.SerializeToString())
    return {"f1_vs_fp32": f1, f"f1_vs_fp32_at_{TRACK_HIGH_THRESH}": f1_high,
            f"fp32_jpeg{JPEG_QUALITY}_f1": floor, f"fp32_jpeg{JPEG_QUALITY}_f1_at_{TRACK_HIGH_THRESH}": floor_high,
            "output_cosine": float(dot[0] / np.sqrt(dot[1] * dot[2])),
            "sim_vs_deployed_cosine": float(np.mean(sims)) if sims else None,
            "AP50_fp32": ap["fp32"]["AP50"], "AP50_int8": ap["int8"]["AP50"], "AP50_fp32_jpeg": ap["fp32_jpeg"]["AP50"],
            "AP50:95_fp32": ap["fp32"]["AP50:95"], "AP50:95_int8": ap["int8"]["AP50:95"],
            "int8_nodes": int8_op_count(counts), "float_convs": counts["Conv"] + counts["FusedConv"],
            "float_layers": len(qdet.quant_info.float_layers),
            "floor": qdet.quant_info.floor, "held_out_agreement": qdet.quant_info.agreement,
            "observer": qdet.quant_info.observer, "observer_scores": qdet.quant_info.observer_scores,
            "plan_speed_ms": qdet.quant_info.speed_ms, "accepted": qdet.quant_info.accepted,
            "eval_frames": len(frames), "calibration_frames": len(calib),
            "speed": speed(fp32_onnx, qdet.proto.SerializeToString(), det.preprocess(frames[0])[0], args.rounds)}


def search_table(name: str, paths: list[Path], gt: list[np.ndarray], args: argparse.Namespace) -> list[dict]:
    """``quant.search`` over observer x scheme x weight granularity x equalization x float set: simulated F1,
    SQNR and person AP50 on search frames (k = 2 mod 4), ranges from calibration frames (k = 0 mod 4)."""
    # person AP: the ground truth holds person boxes only
    det = load_detector(require_path(SHARED_DATA / "weights" / name, f"weights {name}")).with_classes([0])
    calib = [read_image(p) for p in evenly(paths[0::4], args.table_calib_frames)]
    index = evenly(list(range(2, len(paths), 4)), args.table_eval_frames)
    rows = search(det, calib, [read_image(paths[i]) for i in index], ground_truth=[gt[i] for i in index])
    if args.json is not None:
        write_table(rows, args.json.with_name(f"{args.json.stem}_search_{Path(name).stem}"))
    print(f"\n{name}: search, best first ({len(calib)} calibration / {len(index)} search frames, simulated)")
    print(f"{'observer':12s} {'scheme':6s} {'weights':11s} {'CLE':5s} {'float set':9s} {'F1':>6s} {'SQNR dB':>8s} "
          f"{'AP50':>6s}")
    for r in rows:
        print(f"{r.observer:12s} {r.scheme:6s} {r.weight_granularity:11s} {str(r.equalized):5s} {r.float_set:9s} "
              f"{r.f1:6.3f} {r.sqnr_db:8.2f} {r.ap50:6.3f}")
    return [asdict(r) for r in rows]


def random_model(name: str, calib: list[np.ndarray], args: argparse.Namespace) -> dict:
    """Speed only: a randomly initialised 640x640 model quantized with the default float set."""
    torch.manual_seed(0)
    spec = zoo_spec(name)
    model = YOLOX("s", 80) if spec.family == "yolox" else YOLOv5(yolov5_yaml("s"))
    model = fuse_conv_bn(model.eval())
    det = Detector(spec, TorchRunner(model), model)
    # speed only: a random model's detections mean nothing, so the floor is nominal
    qdet = quantize_detector(det, calib, observer="minmax", speed_aware=False, num_threads=1, target_agreement=1e-9)
    counts = optimized_op_counts(qdet.proto.SerializeToString())
    blob = det.preprocess(calib[0])[0]
    return {"int8_nodes": int8_op_count(counts), "float_convs": counts["Conv"] + counts["FusedConv"],
            "speed": speed(export_fp32(model, spec.input_size).SerializeToString(), qdet.proto.SerializeToString(),
                           blob, args.rounds)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="evaluation frames (odd frame indices, evenly spaced)")
    parser.add_argument("--calib-frames", type=int, default=100, help="calibration frames (k = 0 mod 4)")
    parser.add_argument("--search-frames", type=int, default=32, help="float-set search frames (k = 2 mod 4)")
    parser.add_argument("--sim-frames", type=int, default=3, help="frames for the simulated-vs-deployed cosine")
    parser.add_argument("--observer", default="auto", help="a quant.observers name or auto (default)")
    parser.add_argument("--target", type=float,
                        help="explicit F1 floor at both tracker thresholds (default: fp32 vs fp32 on JPEG q95)")
    parser.add_argument("--ranking", choices=("local", "full"), default="full",
                        help="search order: each conv's own int8 error (local) or the detector's error with that "
                             "conv alone int8 (full: one simulation per conv)")
    parser.add_argument("--migrate", action="store_true", help="outlier scale migration (quant.migrate)")
    parser.add_argument("--bias-correction", action="store_true", help="empirical bias correction")
    parser.add_argument("--search-table", action="store_true",
                        help="also score every observer x scheme x weight granularity x equalization x float set")
    parser.add_argument("--table-calib-frames", type=int, default=16, help="calibration frames of --search-table")
    parser.add_argument("--table-eval-frames", type=int, default=8, help="search frames of --search-table")
    parser.add_argument("--rounds", type=int, default=10, help="timed runs per model and thread count")
    parser.add_argument("--models", nargs="*", default=MODELS, help="files in shared/data/weights")
    parser.add_argument("--random", nargs="*", default=["yolox_s", "yolov5s"], help="random 640x640 models (speed)")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    args = parser.parse_args(argv)

    torch.set_num_threads(2)
    seq = load_sequence(require_path(SEQUENCE, "PETS09-S2L1 sequence"))
    paths = seq.image_paths()
    gt_all = seq.ground_truth()
    gt = boxes_by_frame(gt_all.frames, gt_all.boxes, seq.length)
    results: dict = {"sequence": str(SEQUENCE), "args": {k: v for k, v in vars(args).items() if k != "json"},
                     "models": {}}
    for name in args.models:
        if args.search_table:
            results.setdefault("search", {})[name] = search_table(name, paths, gt, args)
        results["models"][name] = real_model(name, paths, gt, args)
        write_json(results, args.json)
    calib = [read_image(p) for p in evenly(paths[0::4], 8)]
    for name in args.random:
        results["models"][f"{name} (random init, 640)"] = random_model(name, calib, args)
        write_json(results, args.json)
    print_table(results)
    return results


def write_json(results: dict, path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))


def print_table(results: dict) -> None:
    print(f"\n{'model':34s} {'F1':>6s} {'F1@.5':>6s} {'jpegF1':>6s} {'@.5':>6s} {'cos':>7s} {'sim/dep':>8s} "
          f"{'AP50 fp32':>9s} {'AP50 int8':>9s} {'AP50 jpeg':>9s} "
          f"{'int8 ops':>8s} {'fl.convs':>8s}  speed: fp32/int8 ms (ratio) at 1t | 2t")
    for name, r in results["models"].items():
        acc = (f"{r['f1_vs_fp32']:6.3f} {r[f'f1_vs_fp32_at_{TRACK_HIGH_THRESH}']:6.3f} "
               f"{r[f'fp32_jpeg{JPEG_QUALITY}_f1']:6.3f} "
               f"{r[f'fp32_jpeg{JPEG_QUALITY}_f1_at_{TRACK_HIGH_THRESH}']:6.3f} "
               f"{r['output_cosine']:7.4f} "
               f"{r['sim_vs_deployed_cosine'] or float('nan'):8.4f} "
               f"{r['AP50_fp32']:9.3f} {r['AP50_int8']:9.3f} {r['AP50_fp32_jpeg']:9.3f}" if "f1_vs_fp32" in r else
               f"{'-':>6s} {'-':>6s} {'-':>6s} {'-':>6s} {'-':>7s} {'-':>8s} {'-':>9s} {'-':>9s} {'-':>9s}")
        sp = " | ".join(f"{s['fp32_ms']:.1f}/{s['int8_ms']:.1f} ({s['speedup']:.2f}x)" for s in r["speed"].values())
        print(f"{name:34s} {acc} {r['int8_nodes']:8d} {r['float_convs']:8d}  {sp}")


if __name__ == "__main__":
    main()
