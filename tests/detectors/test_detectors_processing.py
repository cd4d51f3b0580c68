"""Pre/post-processing, NMS and AP against independent references (brute force, hand-decoded boxes, pycocotools)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
import torch

from int8track.detectors import load_detector
from int8track.detectors.evaluation import average_precision, coco_summary
from int8track.detectors.nms import batched_nms, nms
from int8track.detectors.postprocess import postprocess
from int8track.detectors.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess
from int8track.detectors.spec import ModelSpec
from int8track.detectors.zoo import zoo_spec

from conftest import require_data


# ---------------------------------------------------------------------------------------------------- NMS
def scalar_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes in plain Python floats (independent of the library's vectorised IoU)."""
    w = max(0.0, min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0])))
    h = max(0.0, min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1])))
    union = (float(a[2]) - float(a[0])) * (float(a[3]) - float(a[1])) + \
        (float(b[2]) - float(b[0])) * (float(b[3]) - float(b[1])) - w * h
    return w * h / union if union > 0 else 0.0


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thresh: float) -> set[int]:
    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        if all(classes[i] != classes[j] or scalar_iou(boxes[i], boxes[j]) <= thresh for j in keep):
            keep.append(i)
    return set(keep)


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = rng.uniform(0, 200, (n, 2)) // 40 * 40 + rng.normal(0, 6, (n, 2))  # clustered, many overlaps
    sizes = rng.uniform(10, 60, (n, 2))
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


@pytest.mark.parametrize("seed", range(8))
def test_batched_nms_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    boxes, scores = random_boxes(rng, n), rng.permutation(n) / n + 0.01
    classes = rng.integers(0, 3, n)
    thresh = float(rng.choice([0.3, 0.45, 0.65, 0.7]))
    assert set(batched_nms(boxes, scores, classes, thresh).tolist()) == brute_force_nms(boxes, scores, classes, thresh)
    single = np.zeros(n, dtype=int)
    assert set(nms(boxes, scores, thresh).tolist()) == brute_force_nms(boxes, scores, single, thresh)


def test_nms_keeps_order_and_handles_empty():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5).tolist() == [1, 2]
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5).shape == (0,)


# ---------------------------------------------------------------------------------------------------- preprocessing
def official_yolox_preproc(img: np.ndarray, size: tuple[int, int], normalise: bool) -> np.ndarray:
    """Independent transcription of YOLOX/ByteTrack ``preproc`` (float64 canvas like ByteTrack)."""
    padded = np.ones((size[0], size[1], 3)) * 114.0
    r = min(size[0] / img.shape[0], size[1] / img.shape[1])
    resized = cv2.resize(img, (int(img.shape[1] * r), int(img.shape[0] * r)), interpolation=cv2.INTER_LINEAR)
    padded[: int(img.shape[0] * r), : int(img.shape[1] * r)] = resized
    if normalise:
        padded = (padded[:, :, ::-1] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return padded.transpose(2, 0, 1)[None].astype(np.float32)


def official_yolov5_letterbox(img: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    r = min(size[0] / img.shape[0], size[1] / img.shape[1])
    unpad = int(round(img.shape[1] * r)), int(round(img.shape[0] * r))
    dw, dh = (size[1] - unpad[0]) / 2, (size[0] - unpad[1]) / 2
    img = cv2.resize(img, unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom, left, right = int(round(dh - 0.1)), int(round(dh + 0.1)), int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return (img[:, :, ::-1].transpose(2, 0, 1)[None] / 255.0).astype(np.float32), (left, top)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (333, 517, 3), dtype=np.uint8)  # odd sizes exercise rounding


@pytest.mark.parametrize("convention", ["yolox", "yolox_legacy"])
def test_yolox_preprocessing_matches_official(frame, convention):
    blob, meta = preprocess(frame, (416, 416), convention)
    expected = official_yolox_preproc(frame, (416, 416), normalise=convention == "yolox_legacy")
    np.testing.assert_allclose(blob, expected, rtol=0, atol=1e-5)
    assert meta["pad"] == (0, 0) and meta["scale"] == pytest.approx(416 / 517)
    resized_h = int(333 * 416 / 517)
    if convention == "yolox":  # padding below the pasted image (top-left placement), BGR untouched
        assert np.all(blob[0, :, resized_h:, :] == 114) and (blob[0, :, :resized_h, :] != 114).any()
        np.testing.assert_array_equal(blob[0, :, 0, 0], cv2.resize(frame, (416, resized_h))[0, 0].astype(np.float32))


@pytest.mark.parametrize("shape", [(333, 517), (576, 768), (640, 640), (100, 1000), (1001, 37)])
def test_yolov5_letterbox_matches_official(shape):
    img = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    blob, meta = preprocess(img, (640, 640), "yolov5")
    expected, pad = official_yolov5_letterbox(img, (640, 640))
    np.testing.assert_allclose(blob, expected, rtol=0, atol=1e-6)
    assert meta["pad"] == pad


@pytest.mark.parametrize("convention", ["yolox", "yolov5"])
def test_extreme_aspect_ratio_frames(convention):
    for shape in [(1, 1000, 3), (1000, 1, 3), (1, 1, 3)]:
        blob, meta = preprocess(np.full(shape, 200, np.uint8), (64, 64), convention)
        assert blob.shape == (1, 3, 64, 64) and np.isfinite(blob).all()


def test_grey_and_bgra_frames_are_converted(frame):
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    as_bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    for variant in (grey, grey[:, :, None]):
        expected = preprocess(as_bgr, (416, 416), "yolox")[0]
        np.testing.assert_array_equal(preprocess(variant, (416, 416), "yolox")[0], expected)
    bgra = np.dstack([frame, np.full(frame.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(preprocess(bgra, (416, 416), "yolox")[0], preprocess(frame, (416, 416), "yolox")[0])


@pytest.mark.parametrize("bad,message", [
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((1, 10, 10, 3), np.uint8), "shape"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 0), np.uint8), "empty"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10, 3), np.uint16), "uint8"),
])
def test_bad_frames_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        preprocess(bad, (416, 416), "yolox")


# ---------------------------------------------------------------------------------------------------- decoding
def test_yolox_decoding_by_hand():
    spec = zoo_spec("yolox_nano").replace(num_classes=3, class_names=["a", "b", "c"])
    raw = np.zeros((1, 52 * 52 + 26 * 26 + 13 * 13, 8), np.float32)
    row = 52 * 52 + 5 * 26 + 3  # stride 16, cell x=3, y=5
    raw[0, row] = [0.25, 0.5, np.log(2), np.log(3), 0.9, 0.1, 0.2, 0.8]
    meta = {"scale": 0.5, "pad": (0, 0), "frame_shape": (1000, 1000)}
    boxes = postprocess(raw, meta, spec, conf_thresh=0.1, nms_thresh=0.65)
    # cx = (3 + 0.25) * 16 = 52, cy = (5 + 0.5) * 16 = 88, w = 2 * 16, h = 3 * 16; then / 0.5
    np.testing.assert_allclose(boxes, [[72, 128, 136, 224, 0.72, 2]], rtol=1e-5)
    assert len(postprocess(raw, meta, spec, conf_thresh=0.73, nms_thresh=0.65)) == 0


def test_yolov5_decoding_by_hand():
    spec = zoo_spec("yolov5n").replace(num_classes=1, class_names=["person"])
    n8, n16, n32 = 80 * 80, 40 * 40, 20 * 20
    raw = np.zeros((1, 3 * (n8 + n16 + n32), 6), np.float32)
    row = 3 * n8 + 1 * n16 + 5 * 40 + 3  # stride 16, anchor 1 (62 x 45), cell x=3, y=5
    raw[0, row] = [0.5, 0.75, 0.5, 0.25, 0.8, 0.5]
    meta = {"scale": 2.0, "pad": (10, 20), "frame_shape": (300, 300)}
    boxes = postprocess(raw, meta, spec, conf_thresh=0.1, nms_thresh=0.45)
    # cx = (1 - 0.5 + 3) * 16 = 56, cy = (1.5 - 0.5 + 5) * 16 = 96, w = 1^2 * 62, h = 0.5^2 * 45
    cx, cy, w, h = 56, 96, 62, 11.25
    expected = [(cx - w / 2 - 10) / 2, (cy - h / 2 - 20) / 2, (cx + w / 2 - 10) / 2, (cy + h / 2 - 20) / 2, 0.4, 0]
    np.testing.assert_allclose(boxes, [expected], rtol=1e-5)


def test_boxes_are_clipped_and_raw_shape_checked():
    spec = zoo_spec("bytetrack_nano_mot17").replace(input_size=[64, 64])
    raw = np.zeros((1, 64 + 16 + 4, 6), np.float32)
    raw[0, 0] = [0, 0, 3, 3, 0.9, 0.9]  # a huge box at the corner
    boxes = postprocess(raw, {"scale": 1.0, "pad": (0, 0), "frame_shape": (50, 60)}, spec, 0.1, 0.7)
    np.testing.assert_allclose(boxes[0, :4], [0, 0, 60, 50])
    with pytest.raises(ValueError, match="expected"):
        postprocess(raw[:, :-1], {"scale": 1.0, "pad": (0, 0), "frame_shape": (50, 60)}, spec, 0.1, 0.7)


# ---------------------------------------------------------------------------------------------------- spec
def test_spec_json_round_trip_and_validation():
    spec = zoo_spec("yolov5n")
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="class names"):
        spec.replace(num_classes=3)
    with pytest.raises(ValueError, match="unknown keys"):
        ModelSpec.from_dict({**spec.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="preprocessing"):
        spec.replace(preprocessing="rgb")


# ---------------------------------------------------------------------------------------------------- AP
def pycocotools_ap(dets: list[np.ndarray], gts: list[np.ndarray]) -> np.ndarray:
    coco_mod = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    images = [{"id": i + 1} for i in range(len(gts))]
    boxes = [(i + 1, b) for i, g in enumerate(gts) for b in g]
    annotations = [{"id": k + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": float((b[2] - b[0]) * (b[3] - b[1]))}
                   for k, (image_id, b) in enumerate(boxes)]
    gt = coco_mod.COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    gt.createIndex()
    results = [{"image_id": i + 1, "category_id": 1, "bbox": [d[0], d[1], d[2] - d[0], d[3] - d[1]],
                "score": float(d[4])} for i, ds in enumerate(dets) for d in ds]
    ev = cocoeval.COCOeval(gt, gt.loadRes(results), "bbox")
    ev.evaluate()
    ev.accumulate()
    precision = ev.eval["precision"][:, :, 0, 0, 2]  # (T, R) category 1, area all, maxDets 100
    return np.where(precision > -1, precision, 0).mean(axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_pycocotools(seed):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(6):
        g = random_boxes(rng, int(rng.integers(0, 8)))
        noisy = g + rng.normal(0, 4, g.shape)  # detections near gt boxes, plus false positives
        noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 1)  # keep boxes valid
        d = np.concatenate([noisy[rng.random(len(g)) < 0.8], random_boxes(rng, int(rng.integers(0, 4)))])
        gts.append(g)
        dets.append(np.concatenate([d, rng.random((len(d), 1))], axis=1))
    if sum(len(g) for g in gts) == 0:
        pytest.skip("no gt drawn")
    np.testing.assert_allclose(average_precision(dets, gts), pycocotools_ap(dets, gts), atol=1e-9)


def test_average_precision_simple_cases():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    perfect = [np.array([[0, 0, 10, 10, 0.9], [20, 20, 30, 30, 0.8]])]
    assert coco_summary(perfect, gt) == {"AP50": 1.0, "AP75": 1.0, "AP50:95": 1.0}
    half = [np.array([[0, 0, 10, 10, 0.9]])]
    assert coco_summary(half, gt)["AP50"] == pytest.approx(51 / 101)  # precision 1 up to recall 0.5
    assert coco_summary([np.zeros((0, 5))], gt)["AP50"] == 0.0


# ---------------------------------------------------------------------------------------------------- class filter
CLASS_FILTER_FRAME = "MOT15/train/PETS09-S2L1/img1/000200.jpg"  # people, cars and a few stray COCO classes


@pytest.fixture(scope="module")
def coco_detector():
    weights = require_data("weights/yolox_nano.onnx")
    return load_detector(str(weights), backend="onnxruntime", num_threads=1, conf_thresh=0.05)


@pytest.fixture(scope="module")
def street_frame() -> np.ndarray:
    return cv2.imread(str(require_data(CLASS_FILTER_FRAME)))


def test_classes_filtered_before_nms_equal_filtering_afterwards(coco_detector, street_frame):
    everything = coco_detector(street_frame)
    assert {0, 2} < set(everything[:, 5].tolist())  # the filter below has something to remove
    for classes in ([0], [0, 2], [1]):  # people; people and cars; bicycles (none in this frame)
        only = coco_detector.with_classes(classes)
        assert only.runner is coco_detector.runner and only.spec is coco_detector.spec
        assert (only.conf_thresh, only.nms_thresh) == (coco_detector.conf_thresh, coco_detector.nms_thresh)
        # class-aware NMS never lets one class suppress another, so dropping classes first changes nothing else
        np.testing.assert_array_equal(only(street_frame), everything[np.isin(everything[:, 5], classes)])
    assert coco_detector.classes is None  # the original still detects every class
    assert coco_detector.with_classes([0]).with_classes(None).classes is None
    with pytest.raises(ValueError, match=r"yolox_nano: classes \[80\] outside 0..79"):
        coco_detector.with_classes([80])


def test_with_classes_keeps_an_int8_subclass_and_its_saved_form(coco_detector, street_frame, tmp_path):
    """``QuantizedDetector`` (here around the float ONNX: its precision does not matter for the class list)
    stays a QuantizedDetector sharing its session, and a detector loaded from its saved file filters the same."""
    from int8track.quant.onnx_export import QuantizedDetector
    from int8track.quant.report import QuantReport
    from int8track.quant.simulate import QuantPlan

    proto = onnx.load(require_data("weights/yolox_nano.onnx"))
    saved = QuantizedDetector(coco_detector.spec, proto, QuantReport(config={}, calibration_frames=0, eval_frames=0,
                                                                 observer="minmax"), num_threads=1,
                              conf_thresh=0.05, plan=QuantPlan(ranges={}, quantized=[]), float_model=torch.nn.Identity())
    people = saved.with_classes([0])
    assert type(people) is QuantizedDetector and people.runner is saved.runner and people.proto is saved.proto
    expected = coco_detector.with_classes([0])(street_frame)
    assert len(expected) > 0
    np.testing.assert_array_equal(people(street_frame), expected)
    reloaded = load_detector(str(people.save(tmp_path / "int8.onnx")), num_threads=1, conf_thresh=0.05)
    np.testing.assert_array_equal(reloaded.with_classes([0])(street_frame), expected)
