"""int8 for the appearance embedder (OSNet x0.25, MSMT17 weights: research use only), through this project's
quantization library (``quant.embedder``): held-out faithfulness and speed against fp32, per sequence.

Each sequence's ground-truth person crops are split by time: calibration on crops of the first half of the
frames, the floor on crops of the second half (every ``--step``-th frame). The report per sequence: cosine of each
held-out int8 embedding to its fp32 one (min, mean), the share of crop pairs whose re-find decision (cosine >=
0.65, ``ReidConfig.min_similarity``) is the same with both models, fp32 and int8 milliseconds for a batch of 8
crops (interleaved, ``--threads`` ORT threads), and whether int8 would ship (faithful and 15% faster).

    .venv/bin/python benchmarks/reid_int8.py [--step 20] [--threads 1] [--out runs/reid_int8/report]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA, require_path, write_json_and_csv  # noqa: E402
from int8track.apps.io.motchallenge import read_ground_truth  # noqa: E402
from int8track.quant.embedder import quantize_embedder  # noqa: E402
from int8track.quant.runtime_int8 import int8_pairs_saturate  # noqa: E402
from int8track.quant.speed_table import machine_id  # noqa: E402
from int8track.tracker.appearance import OnnxEmbedder  # noqa: E402

WEIGHTS = SHARED_DATA / "weights" / "osnet_x0_25_msmt17.onnx"
SEQUENCES = {"PETS09-S2L1": SHARED_DATA / "MOT15" / "train" / "PETS09-S2L1",
             "MOT17-05-mini": SHARED_DATA / "MOT17-mini" / "train" / "MOT17-05-FRCNN"}
MIN_HEIGHT, MIN_WIDTH = 16, 8  # smaller ground-truth boxes carry no appearance (tracker: CropSettings)


def gt_crops(sequence: Path, frames: range) -> list[np.ndarray]:
    """Person crops of the ground truth (MOTChallenge pedestrians: class 1 where classes are given)."""
    gt = read_ground_truth(sequence / "gt" / "gt.txt")
    people = gt.consider if gt.classes is None else gt.consider & (gt.classes == 1)  # MOT15 has no classes
    crops = []
    for frame in frames:
        boxes = gt.boxes[people & (gt.frames == frame)]
        if not len(boxes):
            continue
        image = cv2.imread(str(sequence / "img1" / f"{frame:06d}.jpg"))
        for x, y, w, h in boxes.astype(int):
            crop = image[max(y, 0):y + h, max(x, 0):x + w]
            if crop.shape[0] >= MIN_HEIGHT and crop.shape[1] >= MIN_WIDTH:
                crops.append(crop)
    return crops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=20, help="every STEP-th frame gives crops")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/reid_int8/report"))
    args = parser.parse_args(argv)
    weights = require_path(WEIGHTS, "OSNet weights")
    embedder = OnnxEmbedder(weights)
    print(f"machine: {machine_id()}; int8 pairs saturate: {int8_pairs_saturate()}")
    rows = []
    for name, folder in SEQUENCES.items():
        require_path(folder, f"sequence {name}")
        count = len(list((folder / "img1").glob("*.jpg")))
        step = max(1, min(args.step, count // 8))  # the 48-frame mini sequence: every 6th frame
        calibration = embedder.preprocess(gt_crops(folder, range(1, count // 2 + 1, step)))
        held_out = embedder.preprocess(gt_crops(folder, range(count // 2 + 1, count + 1, step)))
        _, report = quantize_embedder(weights, calibration, held_out, num_threads=args.threads)
        print(f"{name}: {report.summary()}")
        rows.append({"sequence": name, **report.to_dict()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_and_csv(args.out, {"machine": machine_id(), "pairs_saturate": int8_pairs_saturate(), "rows": rows},
                       rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
