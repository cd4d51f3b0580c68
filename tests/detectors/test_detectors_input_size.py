"""Input sizes: the fitted size per frame shape, ``--imgsz`` parsing and errors, any-size inference (torch and
ONNX Runtime agree), the one exporter's dynamic batch, and int8 models cached and calibrated per input size."""
from __future__ import annotations

import json
from fractions import Fraction

import cv2
import numpy as np
import onnx
import pytest
import torch
from test_detectors_loading import randomised

from int8track.detectors import ZOO, load_detector
from int8track.detectors.input_size import InputSizeChoice, check_input_size, fitted_input_size, resolve_input_size
from int8track.detectors.preprocess import preprocess
from int8track.detectors.runtime import create_session, export_onnx
from int8track.detectors.spec import SPEC_METADATA_KEY
from int8track.detectors.yolov5 import YOLOv5, yolov5_yaml
from int8track.detectors.yolox import YOLOX

from conftest import SavedProto, require_data

BYTETRACK = ZOO["bytetrack_nano_mot17"]  # native 608x1088
YOLOV5 = ZOO["yolov5n"]  # native 640x640


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "cache"))


@pytest.mark.parametrize("spec, frame_hw, expected", [
    (BYTETRACK, (576, 768), (608, 832)),    # 4:3 (PETS09): r = 608/576, 810.7 -> 832
    (BYTETRACK, (1080, 1920), (608, 1088)),  # 16:9 already fits the native size
    (BYTETRACK, (768, 576), (608, 480)),    # portrait: r = 608/768, 456 -> 480
    (BYTETRACK, (608, 1088), (608, 1088)),  # the native size itself
    (BYTETRACK, (480, 640), (608, 832)),    # 4:3 upscaled keeps the native scale too
    (YOLOV5, (576, 768), (480, 640)),       # square native: the short side is trimmed
    (YOLOV5, (1080, 1920), (384, 640)),     # 16:9 on 640x640: 360 -> 384
    (YOLOV5, (640, 640), (640, 640)),
    (BYTETRACK, (10, 4000), (32, 1088)),    # a thin strip keeps at least one stride
])
def test_fitted_size_for_frame_shapes(spec, frame_hw, expected):
    assert fitted_input_size(spec, frame_hw) == expected


@pytest.mark.parametrize("frame_hw", [(576, 768), (1080, 1920), (768, 576), (720, 1280), (480, 640), (333, 999),
                                      (1000, 100), (608, 1088), (2160, 3840), (17, 23)])
@pytest.mark.parametrize("spec", [BYTETRACK, YOLOV5], ids=["bytetrack", "yolov5"])
def test_fitted_size_keeps_the_native_scale_with_the_least_padding(spec, frame_hw):
    """Against exact rational arithmetic: each side is the smallest stride multiple holding the frame at the native
    letterbox scale, so the letterbox at the fitted size uses the same scale and keeps every pixel."""
    stride, (native_h, native_w) = max(spec.strides), spec.input_size
    scale = min(Fraction(native_h, frame_hw[0]), Fraction(native_w, frame_hw[1]))
    smallest = tuple(max(stride, -(-(side * scale) // stride) * stride) for side in frame_hw)
    fitted = fitted_input_size(spec, frame_hw)
    assert fitted == smallest and fitted[0] <= native_h and fitted[1] <= native_w
    frame = np.zeros((*frame_hw, 3), np.uint8)
    _, native_meta = preprocess(frame, spec.input_size, spec.preprocessing)
    _, fitted_meta = preprocess(frame, fitted, spec.preprocessing)
    assert fitted_meta["scale"] == pytest.approx(native_meta["scale"], rel=1e-12)


@pytest.mark.parametrize("text, mode, size", [
    ("fitted", "fitted", ()), ("native", "native", ()), ("NATIVE", "native", ()), ("640", "long", (640,)),
    ("608x832", "exact", (608, 832)), (" 480X640 ", "exact", (480, 640)),
])
def test_imgsz_parsing(text, mode, size):
    choice = InputSizeChoice.parse(text)
    assert (choice.mode, choice.size) == (mode, size)
    assert InputSizeChoice.parse(str(choice)) == choice


@pytest.mark.parametrize("text", ["", "abc", "0", "-640", "608x", "x832", "608x832x3", "0x640", "608*832", "6.4e2"])
def test_imgsz_parse_errors(text):
    with pytest.raises(ValueError, match="imgsz"):
        InputSizeChoice.parse(text)


def test_resolve_longer_side_exact_and_stride_errors():
    assert resolve_input_size(BYTETRACK, InputSizeChoice.parse("640"), (576, 768))[0] == (480, 640)
    assert resolve_input_size(BYTETRACK, InputSizeChoice.parse("512"), (576, 768))[0] == (384, 512)
    assert resolve_input_size(BYTETRACK, InputSizeChoice.parse("640"), (768, 576))[0] == (640, 480)
    assert resolve_input_size(BYTETRACK, InputSizeChoice.parse("640x640"), None)[0] == (640, 640)
    size, reason = resolve_input_size(BYTETRACK, InputSizeChoice(), (576, 768))
    assert size == (608, 832) and "fitted" in reason and "608x1088" in reason
    assert resolve_input_size(BYTETRACK, InputSizeChoice("native"), None)[0] == (608, 1088)
    with pytest.raises(ValueError, match="600x800 is not a multiple of its stride 32"):
        resolve_input_size(BYTETRACK, InputSizeChoice.parse("600x800"), (576, 768))
    with pytest.raises(ValueError, match="500 is not a multiple of its stride 32"):
        resolve_input_size(BYTETRACK, InputSizeChoice.parse("500"), (576, 768))
    with pytest.raises(ValueError, match="follows the frames"):
        resolve_input_size(BYTETRACK, InputSizeChoice(), None)
    assert check_input_size(BYTETRACK, [64, 96]) == (64, 96)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_with_input_size_runs_the_same_model_at_another_size(tmp_path, backend):
    """A random 2-class YOLOX: at a non-native size the ORT export and the torch model give the same raw output,
    and the copy leaves the original at its size."""
    path = tmp_path / "two_class.pth"
    torch.save({"model": randomised(YOLOX("nano", 2)).state_dict()}, path)
    small = ZOO["yolox_nano"].replace(num_classes=2, class_names=["a", "b"], input_size=[64, 96])
    reference = load_detector(path, backend="torch", spec=small).with_input_size((96, 64))
    detector = load_detector(path, backend=backend, num_threads=1, spec=small)
    resized = detector.with_input_size((96, 64))
    assert detector.spec.input_size == (64, 96) and resized.spec.input_size == (96, 64)
    assert detector.with_input_size((64, 96)) is detector
    blob = np.random.default_rng(0).random((1, 3, 96, 64), dtype=np.float32) * 255
    raw = resized.infer(blob)
    assert raw.shape == (1, (12 * 8 + 6 * 4 + 3 * 2), 7)
    np.testing.assert_allclose(raw, reference.infer(blob), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="not a multiple of its stride 32"):
        detector.with_input_size((90, 64))


def test_load_detector_imgsz_and_int8_files_have_a_fixed_size(tmp_path):
    path = tmp_path / "two_class.pth"
    torch.save({"model": randomised(YOLOX("nano", 2)).state_dict()}, path)
    small = ZOO["yolox_nano"].replace(num_classes=2, class_names=["a", "b"], input_size=[128, 128])
    fitted = load_detector(path, backend="onnxruntime", spec=small, imgsz="fitted", frame_shape=(60, 80))
    assert fitted.spec.input_size == (96, 128)
    assert load_detector(path, spec=small, imgsz=(64, 32)).spec.input_size == (64, 32)
    assert load_detector(path, spec=small, imgsz="64", frame_shape=(60, 80)).spec.input_size == (64, 64)
    assert load_detector(path, spec=small).spec.input_size == (128, 128)

    proto = export_onnx(fitted.model, fitted.spec.input_size)
    proto.metadata_props.add(key=SPEC_METADATA_KEY, value=json.dumps(fitted.spec.to_dict()))
    onnx.save(proto, str(tmp_path / "saved.onnx"))
    saved = load_detector(tmp_path / "saved.onnx", imgsz="fitted", frame_shape=(60, 80))
    assert saved.spec.input_size == (96, 128) and saved.model is None
    with pytest.raises(ValueError, match="fixed 96x128 ONNX graph"):
        saved.with_input_size((128, 128))


@pytest.mark.parametrize("family", ["yolox", "yolov5"])
def test_export_with_dynamic_batch_runs_each_image_as_alone(family):
    model = randomised(YOLOX("nano", 3) if family == "yolox" else YOLOv5(yolov5_yaml("n", 3)))
    size = (64, 96)
    proto = export_onnx(model, size, dynamic_batch=True)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert export_onnx(model, size).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    session = create_session(proto.SerializeToString(), num_threads=1)
    blobs = np.random.default_rng(1).random((3, 3, *size), dtype=np.float32)
    batched = session.run(None, {"images": blobs})[0]
    with torch.inference_mode():
        expected = model(torch.from_numpy(blobs)).numpy()
    assert batched.shape[0] == 3
    np.testing.assert_allclose(batched, expected, rtol=1e-3, atol=1e-4)
    alone = session.run(None, {"images": blobs[1:2]})[0]
    np.testing.assert_allclose(alone[0], batched[1], rtol=1e-4, atol=1e-5)


def test_real_bytetrack_torch_and_onnxruntime_agree_at_the_fitted_size(single_torch_thread):  # noqa: F811
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    frame = cv2.imread(str(require_data("MOT15/train/PETS09-S2L1/img1/000001.jpg")))
    ort_det = load_detector(weights, backend="onnxruntime", num_threads=1, imgsz="fitted", frame_shape=frame.shape)
    torch_det = load_detector(weights, backend="torch", imgsz="fitted", frame_shape=frame.shape)
    native = load_detector(weights, backend="onnxruntime", num_threads=1)
    assert ort_det.spec.input_size == torch_det.spec.input_size == (608, 832)
    boxes_ort, boxes_torch, boxes_native = ort_det(frame), torch_det(frame), native(frame)
    people = boxes_ort[boxes_ort[:, 4] > 0.5]
    assert len(people) >= 3  # PETS09 frame 1 shows three people (gt)
    assert boxes_ort.shape == boxes_torch.shape
    np.testing.assert_allclose(boxes_ort, boxes_torch, atol=0.05)
    # same scale as the native input, so the confident boxes are (almost) the same people in the same places
    native_people = boxes_native[boxes_native[:, 4] > 0.5]
    assert len(native_people) == len(people)
    np.testing.assert_allclose(people[:, :4], native_people[:, :4], atol=3.0)


def _quantize_here(detector, frames, config, path, before=lambda: None) -> None:
    """``apps.models.cache.quantize_in_child`` in this process, where a replaced ``quant.quantize_detector`` is seen."""
    from int8track.apps.models.cache import quantize_in_process

    calibration_frames = frames()
    before()
    quantize_in_process(detector, calibration_frames, config, path)


def test_int8_cache_and_calibration_follow_the_input_size(tmp_path, monkeypatch):
    """``track --int8``: the detector handed to the quantizer is already at the fitted size (its calibration
    blobs too), the cached model runs at that size, and another size is another cache entry."""
    from int8track import quant
    from int8track.apps.cli.track import main
    from int8track.apps.models import cache as model_cache

    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "cache"))
    seen: list[tuple] = []

    def stand_in(detector, frames, **options):  # the float model at the detector's size, saved like an int8 one
        seen.append((detector.spec.input_size, detector.preprocess(frames[0])[0].shape))
        proto = export_onnx(detector.model, detector.spec.input_size)
        proto.metadata_props.add(key=SPEC_METADATA_KEY, value=json.dumps(detector.spec.to_dict()))
        return SavedProto(proto)

    monkeypatch.setattr(quant, "quantize_detector", stand_in)
    monkeypatch.setattr(model_cache, "quantize_in_child", _quantize_here)  # sees the stand-in
    base = [str(video), "--weights", str(weights), "--int8", "--calib-frames", "2", "--threads", "1", "--no-video",
            "--quiet", "--max-frames", "2"]
    assert main([*base, "--output-dir", str(tmp_path / "fitted")]) == 0
    assert main([*base, "--imgsz", "native", "--output-dir", str(tmp_path / "native")]) == 0
    assert main([*base, "--output-dir", str(tmp_path / "again")]) == 0
    assert seen == [((608, 832), (1, 3, 608, 832)), ((608, 1088), (1, 3, 608, 1088))]  # the third run reused
    records = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "int8").glob("*.json")]
    assert sorted(r["input_size"] for r in records) == [[608, 832], [608, 1088]]
    for run, size in (("fitted", "608x832"), ("native", "608x1088"), ("again", "608x832")):
        info = json.loads((tmp_path / run / "vtest_timing.json").read_text())["info"]
        assert (info["precision"], info["input_size"]) == ("int8", size)


def test_track_imgsz_option_and_its_errors(tmp_path, capsys):
    from int8track.apps.cli.track import main

    video = require_data("videos/vtest.avi")
    weights = require_data("weights/bytetrack_nano_mot17.onnx")
    base = [str(video), "--weights", str(weights), "--threads", "1", "--no-video", "--quiet", "--max-frames", "2"]
    assert main([*base, "--imgsz", "512", "--output-dir", str(tmp_path / "out")]) == 0
    info = json.loads((tmp_path / "out" / "vtest_timing.json").read_text())["info"]
    assert info["input_size"] == "384x512" and "longer side 512" in info["input_size_reason"]
    assert "input_size: 384x512" in capsys.readouterr().out  # the printed summary says it too

    assert main([*base, "--imgsz", "600x800", "--output-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "600x800 is not a multiple of its stride 32" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--imgsz", "big"])
    assert exit_info.value.code == 2 and "--imgsz" in capsys.readouterr().err


def test_one_detector_per_input_size_shares_the_float_model(tmp_path):
    """Streams of different frame shapes each get a detector at their fitted size, all on one float model."""
    path = tmp_path / "two_class.pth"
    torch.save({"model": randomised(YOLOX("nano", 2)).state_dict()}, path)
    spec = ZOO["yolox_nano"].replace(num_classes=2, class_names=["a", "b"], input_size=[96, 160])
    base = load_detector(path, backend="onnxruntime", num_threads=1, spec=spec)
    shapes = [(60, 80), (90, 120), (100, 50), (96, 160)]
    by_size = {fitted_input_size(base.spec, shape): None for shape in shapes}
    detectors = {size: base.with_input_size(size) for size in by_size}
    assert sorted(detectors) == [(96, 64), (96, 128), (96, 160)]  # the two 4:3 streams share one size
    assert all(d.model is base.model for d in detectors.values())
    assert detectors[(96, 160)] is base
    frame = np.random.default_rng(2).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    assert detectors[(96, 128)](frame).shape[1] == 6
