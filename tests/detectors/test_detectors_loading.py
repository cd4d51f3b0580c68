"""Architectures, checkpoint formats, zoo/cache behaviour and bad weights files."""
from __future__ import annotations

import os
import pickle

import numpy as np
import onnx
import pytest
import torch

from int8track.detectors import ZOO, Detector, load_detector
from int8track.detectors.layers import fuse_conv_bn, is_fused
from int8track.detectors.runtime import OrtRunner
from int8track.detectors.yolov5 import YOLOv5, yolov5_yaml
from int8track.detectors.yolox import YOLOX

# Published parameter counts: YOLOX README (M, unfused) and Ultralytics' fused model summaries (exact).
YOLOX_PARAMS_M = {"nano": 0.91, "tiny": 5.06, "s": 9.0, "m": 25.3, "l": 54.2, "x": 99.1}
YOLOV5_FUSED_PARAMS = {"n": 1867405, "s": 7225885, "m": 21172173, "l": 46533693, "x": 86705005}

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # whole module on one torch thread


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_architectures_match_published_parameter_counts():
    with torch.device("meta"):
        for variant, millions in YOLOX_PARAMS_M.items():
            digits = 2 if millions < 1 or variant == "tiny" else 1
            assert round(count(YOLOX(variant, 80)) / 1e6, digits) == millions, variant
        for variant, exact in YOLOV5_FUSED_PARAMS.items():
            assert count(fuse_conv_bn(YOLOv5(yolov5_yaml(variant)))) == exact, variant


def test_variant_is_read_from_state_dict():
    from int8track.detectors.checkpoints import yolox_arch_of_state

    with torch.device("meta"):
        for variant in YOLOX_PARAMS_M:
            assert yolox_arch_of_state(YOLOX(variant, 7).state_dict(), "x.pth") == (variant, 7)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and BN statistics (so folding is really exercised), eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=gen) * 0.5 + 0.5 if "running_var" in name or name.endswith(
                    "bn.weight") else torch.randn(tensor.shape, generator=gen) * 0.1
                tensor.copy_(values)
    return model.eval()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INT8TRACK_HOME", str(tmp_path / "cache"))


def assert_same_output(a: torch.nn.Module, b: torch.nn.Module, size: tuple[int, int]) -> None:
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1)) * 2
    with torch.inference_mode():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-4)


def test_official_yolox_pth_loads_strictly_and_folds(tmp_path):
    reference = randomised(YOLOX("nano", 80))
    path = tmp_path / "yolox_nano.pth"
    torch.save({"model": reference.state_dict(), "start_epoch": 300}, path)
    det = load_detector(path)
    assert det.spec.name == "yolox_nano" and det.spec.preprocessing == "yolox" and det.spec.nms_thresh == 0.65
    assert is_fused(det.model)
    assert_same_output(det.model, reference, (64, 96))


def test_bytetrack_pth_tar_is_inferred_as_one_class_person_detector(tmp_path):
    reference = randomised(YOLOX("nano", 1), seed=3)
    path = tmp_path / "my_run.pth.tar"
    torch.save({"model": reference.state_dict(), "optimizer": {"state": {}}, "start_epoch": 80, "amp": None}, path)
    det = load_detector(path, conf_thresh=0.3)
    spec = det.spec
    assert (spec.variant, spec.num_classes, spec.class_names) == ("nano", 1, ["person"])
    assert spec.preprocessing == "yolox_legacy" and spec.input_size == (608, 1088) and det.conf_thresh == 0.3
    assert_same_output(det.model, reference, (64, 64))


def test_wrong_architecture_lists_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "nano.pth"
    torch.save({"model": YOLOX("nano", 80).state_dict()}, path)
    with pytest.raises(ValueError) as info:
        load_detector(path, spec="yolox_s")
    message = str(info.value)
    assert str(path) in message and "missing keys" in message and "unexpected keys" in message
    assert "backbone.backbone.dark2.0.dconv.conv.weight" in message or "dconv" in message
    path80 = tmp_path / "eighty.pth"
    torch.save({"model": YOLOX("nano", 80).state_dict()}, path80)
    with pytest.raises(ValueError, match=r"\d+ shape mismatch keys .*head\.cls_preds"):
        load_detector(path80, spec="bytetrack_nano_mot17")


@pytest.mark.parametrize("suffix", [".pth", ".pth.tar", ".pt", ".onnx"])
def test_truncated_or_garbage_weights_raise_value_error_naming_file(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    if suffix == ".onnx":
        torch.onnx.export(torch.nn.Conv2d(3, 3, 1), (torch.zeros(1, 3, 8, 8),), str(good), dynamo=False)
    else:
        torch.save({"model": YOLOX("nano", 1).state_dict()}, good)
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"this is not a model\n" * 10)
    foreign = [good] if suffix in (".onnx", ".pt") else []  # a 1-conv ONNX; a YOLOX state dict named .pt
    for bad in (truncated, garbage, *foreign):
        with pytest.raises(ValueError, match=bad.name):
            load_detector(bad)


def test_missing_file_and_unknown_names():
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_detector("/nowhere/nowhere.pth")
    with pytest.raises(FileNotFoundError, match="zoo names"):
        load_detector("yolox_q")
    with pytest.raises(ValueError, match="backend"):
        load_detector("yolox_s", backend="tensorrt")


def test_unpickler_never_executes_checkpoint_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path, pickle_protocol=2)
    with pytest.raises(ValueError, match="evil.pt"):
        load_detector(path)
    path_pth = tmp_path / "evil.pth"
    path_pth.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="evil.pth"):
        load_detector(path_pth)
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(1)) == 1  # stdlib pickle untouched


def test_zoo_names_and_missing_weights_error(monkeypatch):
    from int8track.detectors import zoo

    assert {"yolox_nano", "yolox_x", "bytetrack_nano_mot17", "bytetrack_s_mot17", "yolov5n", "yolov5x"} <= set(ZOO)
    assert ZOO["bytetrack_s_mot17"].class_names == ["person"] and ZOO["yolov5n"].sha256 is not None

    def offline(url, target, sha256=None):
        raise OSError("network unreachable")

    monkeypatch.setattr(zoo, "download", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_detector("yolox_s")
    message = str(info.value)
    assert ZOO["yolox_s"].url in message and str(zoo.cache_dir() / "yolox_s.pth") in message


def test_zoo_name_finds_weights_in_cache(tmp_path):
    from int8track.detectors.zoo import cache_dir

    reference = randomised(YOLOX("nano", 80))
    cache_dir().mkdir(parents=True)
    torch.save({"model": reference.state_dict()}, cache_dir() / "yolox_nano.pth")
    det = load_detector("yolox_nano")
    assert det.spec.name == "yolox_nano" and det.spec.url is not None
    assert_same_output(det.model, reference, (32, 32))


def test_yolov5_activation_is_selectable():
    for name, cls in [("nn.ReLU()", torch.nn.ReLU), ("nn.ReLU6()", torch.nn.ReLU6),
                      ("nn.LeakyReLU(0.1)", torch.nn.LeakyReLU), (None, torch.nn.SiLU)]:
        model = YOLOv5(yolov5_yaml("n", 2, name))
        acts = {type(m) for m in model.modules() if isinstance(m, (torch.nn.SiLU, torch.nn.ReLU, torch.nn.ReLU6,
                                                                   torch.nn.LeakyReLU))}
        assert acts == {cls}
    assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 3 * (64 + 16 + 4), 7)


def test_onnxruntime_export_is_cached_and_quantized_spec_metadata_loads(tmp_path, monkeypatch):
    from int8track.detectors import loading

    reference = randomised(YOLOX("nano", 2))
    path = tmp_path / "two_class.pth"
    torch.save({"model": reference.state_dict()}, path)
    small = ZOO["yolox_nano"].replace(num_classes=2, class_names=["a", "b"], input_size=[64, 96])
    det_ort = load_detector(path, backend="onnxruntime", num_threads=1, spec=small)
    det_torch = load_detector(path, backend="torch", spec=small)
    blob = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32) * 255
    np.testing.assert_allclose(det_ort.infer(blob), det_torch.infer(blob), rtol=1e-3, atol=1e-4)

    exported = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(exported) == 1
    monkeypatch.setattr(loading, "export_onnx", lambda *a, **k: pytest.fail("export not cached"))
    load_detector(path, backend="onnxruntime", spec=small)

    proto = onnx.load(str(exported[0]))
    proto.metadata_props.add(key="int8track_spec", value=__import__("json").dumps(det_ort.spec.to_dict()))
    saved = tmp_path / "saved.onnx"
    onnx.save(proto, str(saved))
    det_saved = load_detector(saved, nms_thresh=0.5)
    assert isinstance(det_saved, Detector) and det_saved.model is None and isinstance(det_saved.runner, OrtRunner)
    assert det_saved.spec == det_ort.spec and det_saved.nms_thresh == 0.5
    np.testing.assert_allclose(det_saved.infer(blob), det_ort.infer(blob), rtol=1e-5, atol=1e-6)


def test_download_verifies_sha256_and_leaves_no_partial_file(tmp_path):
    import hashlib

    from int8track.detectors.zoo import download

    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "model.pth"
    assert download(source.as_uri(), target, digest).read_bytes() == source.read_bytes()
    wrong = tmp_path / "cache" / "other.pth"
    with pytest.raises(OSError, match="sha256"):
        download(source.as_uri(), wrong, "0" * 64)
    assert not wrong.exists() and not list(wrong.parent.glob("*.part"))
