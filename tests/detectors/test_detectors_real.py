"""The detectors against the real models and real PETS09-S2L1 frames.

* torch model rebuilt from each original ONNX file reproduces ONNX Runtime on that file (cosine, max abs);
* yolov5n.pt (no reference runtime): finds the annotated people, and torch == our ONNX export;
* torch and onnxruntime backends give the same boxes;
* each model's preprocessing convention beats plausible wrong ones (channel order, mean/std).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from int8track.detectors import load_detector
from int8track.detectors.evaluation import boxes_by_frame, gt_recall, iou_matrix
from int8track.detectors.preprocess import IMAGENET_MEAN, IMAGENET_STD
from int8track.detectors.runtime import create_session

from conftest import require_data

PETS = "MOT15/train/PETS09-S2L1"
FRAMES = list(range(1, 796, 100))  # 8 frames spread over the sequence
MODELS = ["yolox_nano.onnx", "bytetrack_nano_mot17.onnx", "yolov5n.pt"]

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # whole module on one torch thread


@pytest.fixture(scope="module")
def pets() -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    from int8track.apps.io.motchallenge import load_sequence

    seq = load_sequence(require_data(PETS))
    gt = seq.ground_truth()
    gt_boxes = boxes_by_frame(gt.frames, gt.boxes, seq.length)
    paths = seq.image_paths()
    return ({f: cv2.imread(str(paths[f - 1])) for f in FRAMES}, {f: gt_boxes[f - 1] for f in FRAMES})


@pytest.fixture(scope="module")
def detectors(tmp_path_factory, single_torch_thread) -> dict[tuple[str, str], object]:
    """Each real model on both backends (person class only), the ORT export cached in a temp dir."""
    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INT8TRACK_HOME", str(tmp_path_factory.mktemp("cache")))
        for name in MODELS:
            path = require_data(f"weights/{name}")
            for backend in ("torch", "onnxruntime"):
                out[name, backend] = load_detector(path, backend=backend, classes=[0])
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("name", ["yolox_nano.onnx", "bytetrack_nano_mot17.onnx"])
def test_torch_model_reproduces_original_onnx(name, detectors, pets):
    det = detectors[name, "torch"]
    session = create_session(require_data(f"weights/{name}"))
    frames, _ = pets
    for f in FRAMES[:2]:
        blob, _ = det.preprocess(frames[f])
        reference = session.run(None, {"images": blob})[0]
        with torch.inference_mode():
            ours = det.model(torch.from_numpy(blob)).numpy()
        assert ours.shape == reference.shape
        cos, max_abs = cosine(ours, reference), float(np.abs(ours - reference).max())
        print(f"{name} frame {f}: cosine {cos:.9f} max abs diff {max_abs:.3g}")
        assert cos >= 0.99999
        # obj/cls are probabilities: the boxes depend on them directly
        assert np.abs(ours[..., 4:] - reference[..., 4:]).max() < 1e-3


@pytest.mark.parametrize("name", MODELS)
def test_backends_give_same_boxes(name, detectors, pets):
    frames, _ = pets
    for f in FRAMES[:2]:
        a = detectors[name, "torch"](frames[f])
        b = detectors[name, "onnxruntime"](frames[f])
        assert a.shape == b.shape and len(a) > 0
        np.testing.assert_allclose(a[:, :4], b[:, :4], atol=0.05)
        np.testing.assert_allclose(a[:, 4], b[:, 4], atol=1e-3)
        np.testing.assert_array_equal(a[:, 5], b[:, 5])


def test_yolov5_export_matches_torch_raw(detectors, pets):
    frames, _ = pets
    det_t, det_o = detectors["yolov5n.pt", "torch"], detectors["yolov5n.pt", "onnxruntime"]
    blob, _ = det_t.preprocess(frames[FRAMES[0]])
    raw_t, raw_o = det_t.infer(blob), det_o.infer(blob)
    assert raw_t.shape == (1, 25200, 85)
    assert cosine(raw_t, raw_o) >= 0.99999


@pytest.mark.parametrize("name", MODELS)
def test_models_find_the_annotated_people(name, detectors, pets):
    frames, gt = pets
    det = detectors[name, "onnxruntime"]
    dets = [det(frames[f]) for f in FRAMES]
    confident = [d[d[:, 4] >= 0.5] for d in dets]
    recall = gt_recall(confident, [gt[f] for f in FRAMES])
    print(f"{name}: {recall:.3f} of {sum(len(gt[f]) for f in FRAMES)} gt boxes matched at IoU>=0.5 (score>=0.5)")
    assert recall >= 0.85
    assert all(np.all(d[:, 5] == 0) for d in dets)  # classes=[0] filter


def _mean_gt_score(det, frames, gt, blob_transform) -> float:
    """Mean over gt boxes of the best score of a detection at IoU>=0.5 (0 when missed)."""
    scores = []
    for f in FRAMES:
        blob, meta = det.preprocess(frames[f])
        boxes = det.postprocess(det.infer(np.ascontiguousarray(blob_transform(blob), dtype=np.float32)), meta)
        ious = iou_matrix(gt[f], boxes) if len(boxes) else np.zeros((len(gt[f]), 0))
        scores.extend(np.where(ious >= 0.5, boxes[None, :, 4], 0).max(axis=1, initial=0.0))
    return float(np.mean(scores))


MEAN = IMAGENET_MEAN[None, :, None, None]
STD = IMAGENET_STD[None, :, None, None]
WRONG_CONVENTIONS = {
    "yolox_nano.onnx": {"RGB instead of BGR": lambda b: b[:, ::-1]},
    "bytetrack_nano_mot17.onnx": {
        "BGR instead of RGB": lambda b: ((b * STD + MEAN)[:, ::-1] - MEAN) / STD,
        "no mean/std": lambda b: b * STD + MEAN,
    },
    "yolov5n.pt": {"BGR instead of RGB": lambda b: b[:, ::-1]},
}


@pytest.mark.parametrize("name", MODELS)
def test_preprocessing_convention_beats_wrong_ones(name, detectors, pets):
    frames, gt = pets
    det = detectors[name, "onnxruntime"]
    right = _mean_gt_score(det, frames, gt, lambda b: b)
    for label, transform in WRONG_CONVENTIONS[name].items():
        wrong = _mean_gt_score(det, frames, gt, transform)
        print(f"{name}: mean gt score {right:.3f} (trained convention) vs {wrong:.3f} ({label})")
        assert right > wrong + 0.005, label


@pytest.mark.parametrize("name,other", [("yolox_nano.onnx", "yolox_legacy"), ("bytetrack_nano_mot17.onnx", "yolox"),
                                        ("yolov5n.pt", "yolox")])
def test_other_family_convention_fails(name, other, detectors, pets):
    frames, gt = pets
    det = detectors[name, "onnxruntime"]
    original = det.spec
    det.spec = original.replace(preprocessing=other)
    try:
        recall = gt_recall([det(frames[f]) for f in FRAMES[:6]], [gt[f] for f in FRAMES[:6]])
    finally:
        det.spec = original
    assert recall < 0.7


def test_zoo_name_finds_onnx_in_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path))
    (tmp_path / "bytetrack_nano_mot17.onnx").symlink_to(require_data("weights/bytetrack_nano_mot17.onnx"))
    det = load_detector("bytetrack_nano_mot17", backend="onnxruntime")
    assert det.spec.name == "bytetrack_nano_mot17" and det.spec.input_size == (608, 1088)
    assert det.spec.preprocessing == "yolox_legacy" and det.spec.nms_thresh == 0.7 and det.model is not None


def test_yolov5n_checkpoint_layout_is_the_v6_layout():
    from int8track.detectors.checkpoints import yolov5_checkpoint
    from int8track.detectors.yolov5 import yolov5_yaml

    ckpt = yolov5_checkpoint(require_data("weights/yolov5n.pt"))
    ours = yolov5_yaml("n")
    for key in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone"):
        assert ckpt["yaml"][key] == ours[key], key
    as_text = [[f, n, m, [str(a) for a in args]] for f, n, m, args in ckpt["yaml"]["head"]]
    assert as_text == [[f, n, m, [str(a) for a in args]] for f, n, m, args in ours["head"]]
    assert ckpt["activation"] == "SiLU" and ckpt["names"][0] == "person" and len(ckpt["state_dict"]) == 349
