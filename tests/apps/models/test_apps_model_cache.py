"""The int8 model cache: one entry per calibration source, reuse of the same source, thresholds carried over.

The quantizer is a parameter of the cache; here it is a stand-in that saves the float model in the saved-int8
format (spec in the ``int8track_spec`` metadata), so the cache's own logic runs for real in a second. The real
quantizer goes through the same cache end to end in test_apps_track.py.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import pytest

from int8track.apps.models.cache import Int8ModelCache, source_fingerprint
from int8track.detectors import load_detector

from conftest import SavedProto, require_data

OLD_TIME_NS = 1_600_000_000 * 10**9


def _age(folder) -> None:
    """Give every entry an old modification time, so any later change is seen whatever the clock's tick."""
    for entry in (folder, *folder.rglob("*")):
        os.utime(entry, ns=(OLD_TIME_NS, OLD_TIME_NS))


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("000001.jpg", "000002.jpg"):
        (folder / name).write_bytes(b"jpeg bytes of " + name.encode())
    _age(folder)
    return folder


def test_folder_fingerprint_changes_with_its_images(image_folder):
    before = source_fingerprint(image_folder)
    assert before == source_fingerprint(image_folder)
    assert before["path"] == str(image_folder.resolve()) and before["files"] == 2

    (image_folder / "000003.jpg").write_bytes(b"new")
    added = source_fingerprint(image_folder)
    (image_folder / "000003.jpg").unlink()
    _age(image_folder)
    assert source_fingerprint(image_folder) == before

    (image_folder / "000001.jpg").write_bytes(b"rewritten, same folder")
    rewritten = source_fingerprint(image_folder)
    _age(image_folder)
    (image_folder / "000002.jpg").rename(image_folder / "000009.jpg")
    renamed = source_fingerprint(image_folder)
    assert len({json.dumps(f, sort_keys=True) for f in (before, added, rewritten, renamed)}) == 4


def test_file_and_live_fingerprints(image_folder):
    video = image_folder / "000001.jpg"
    first = source_fingerprint(video)
    assert first == {"path": str(video.resolve()), "bytes": video.stat().st_size, "mtime_ns": OLD_TIME_NS}
    os.utime(video, ns=(OLD_TIME_NS, OLD_TIME_NS + 1))
    assert source_fingerprint(video) != first
    assert source_fingerprint("0", live=True) == {"live": "0"}  # a camera is known by its index only
    with pytest.raises(FileNotFoundError, match="nowhere.mp4: calibration source not found"):
        source_fingerprint(image_folder / "nowhere.mp4")


class FloatStandIn:
    """Stands in for ``quant.quantize_detector``: same contract (a detector whose ``save`` writes a model that
    ``load_detector`` reads back with its spec), no calibration. Counts its calls and the frames it got."""

    def __init__(self, weights) -> None:
        self.weights = weights
        self.frames_seen: list[int] = []

    def __call__(self, detector, frames, **options):
        self.frames_seen.append(len(frames))
        proto = onnx.load(self.weights)
        proto.metadata_props.add(key="int8track_spec", value=json.dumps(detector.spec.to_dict()))
        return SavedProto(proto)


def test_each_calibration_source_has_its_entry_and_the_same_source_reuses(tmp_path, image_folder):
    weights = require_data("weights/yolox_nano.onnx")
    detector = load_detector(str(weights), backend="onnxruntime", num_threads=1, conf_thresh=0.3,
                             nms_thresh=0.5, classes=[0, 2])
    other_folder = tmp_path / "other"
    shutil.copytree(image_folder, other_folder)
    quantize = FloatStandIn(weights)
    cache = Int8ModelCache(tmp_path / "cache", quantize=quantize)

    def get(folder, refresh=False):
        calibration = {"frames": 2, "source": source_fingerprint(folder)}
        return cache.get(detector, weights, lambda: [np.zeros((8, 8, 3), np.uint8)] * 2, None, calibration,
                         num_threads=1, refresh=refresh)

    first, second, again = get(image_folder), get(other_folder), get(image_folder)
    assert (first.reused, second.reused, again.reused) == (False, False, True)
    assert quantize.frames_seen == [2, 2]  # frames are read only for a model that is made
    assert first.path != second.path and again.path == first.path
    entries = {first.path, second.path, first.path.with_suffix(".json"), second.path.with_suffix(".json")}
    assert set((tmp_path / "cache").iterdir()) == entries  # a model and its record each, no temporary files
    assert again.calibration["source"]["path"] == str(image_folder.resolve())
    record = json.loads(second.path.with_suffix(".json").read_text())
    assert record["settings"]["calibration"]["source"]["path"] == str(other_folder.resolve())
    assert record["weights"] == str(weights.resolve())

    loaded = again.detector  # the cached model filters and thresholds like the detector it replaces
    assert (loaded.conf_thresh, loaded.nms_thresh, loaded.classes) == (0.3, 0.5, [0, 2])

    (other_folder / "000003.jpg").write_bytes(b"one more image")
    assert not get(other_folder).reused  # the folder changed: calibrated anew
    refreshed = get(image_folder, refresh=True)  # --recalibrate
    assert not refreshed.reused and refreshed.path == first.path and len(quantize.frames_seen) == 4


def test_a_new_algorithm_version_or_other_settings_are_not_served_an_old_model(tmp_path, monkeypatch):
    from int8track.quant import config as quant_config
    from int8track.quant.config import QuantConfig

    weights = require_data("weights/yolox_nano.onnx")
    detector = load_detector(str(weights), backend="onnxruntime", num_threads=1)
    quantize = FloatStandIn(weights)
    cache = Int8ModelCache(tmp_path / "cache", quantize=quantize)

    def get(config=None):
        return cache.get(detector, weights, lambda: [np.zeros((8, 8, 3), np.uint8)], config, {"frames": 1},
                         num_threads=1)

    old = get()
    assert get(QuantConfig()).reused  # the default settings, spelled out, are the same key
    target = get(QuantConfig(target_agreement=0.9))
    assert not target.reused and target.path != old.path
    monkeypatch.setattr(quant_config, "ALGORITHM_VERSION", quant_config.ALGORITHM_VERSION + 1)
    new = get()
    assert not new.reused and new.path not in (old.path, target.path) and len(quantize.frames_seen) == 3
    record = json.loads(new.path.with_suffix(".json").read_text())
    assert record["settings"]["quant"]["algorithm_version"] == quant_config.ALGORITHM_VERSION
    assert new.quant_report == {}  # the stand-in's model carries no quantization report


def test_a_truncated_entry_is_reported_removed_and_rebuilt(tmp_path, capsys):
    weights = require_data("weights/yolox_nano.onnx")
    detector = load_detector(str(weights), backend="onnxruntime", num_threads=1)
    quantize = FloatStandIn(weights)
    cache = Int8ModelCache(tmp_path / "cache", quantize=quantize)

    def get():
        return cache.get(detector, weights, lambda: [np.zeros((8, 8, 3), np.uint8)], None, {"frames": 1},
                         num_threads=1)

    first = get()
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 3])  # as a full disk or a killed copy leaves it
    rebuilt = get()
    assert not rebuilt.reused and rebuilt.path == first.path and len(quantize.frames_seen) == 2
    assert rebuilt.path.read_bytes() == data and rebuilt.path.with_suffix(".json").is_file()
    err = capsys.readouterr().err
    assert f"cached int8 model {first.path} does not load" in err and "calibrating again" in err
    assert "\n" not in err.strip()  # one line
    assert get().reused  # and the rebuilt entry serves the next run


def _calibration_children() -> list:
    import multiprocessing

    return [p for p in multiprocessing.active_children() if p.name == "int8-calibration"]


def test_the_calibration_child_reports_a_death_an_error_and_stops_on_an_interrupt(tmp_path):
    """``quantize_in_child``: a child killed from outside is an error naming the model, an exception in the child is
    raised here as itself, and an interrupt while the frames are read stops the child; no child is left behind."""
    from types import SimpleNamespace

    from int8track.apps.models.cache import quantize_in_child
    from int8track.quant.config import QuantConfig

    detector = SimpleNamespace(model=None, spec=SimpleNamespace(name="no-float-model"))
    path = tmp_path / "model.onnx"

    def kill_child() -> list:
        (child,) = _calibration_children()
        child.kill()
        child.join()
        return []

    with pytest.raises(RuntimeError, match=f"ended before writing {path}"):
        quantize_in_child(detector, kill_child, QuantConfig(), path)

    def interrupted() -> list:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quantize_in_child(detector, interrupted, QuantConfig(), path)
    assert not _calibration_children()

    with pytest.raises(ValueError, match="no-float-model: quantization needs the float torch model"):
        quantize_in_child(detector, lambda: [np.zeros((8, 8, 3), np.uint8)], QuantConfig(), path)
    assert not _calibration_children() and not path.exists()
