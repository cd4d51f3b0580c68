"""Adapters: Ultralytics (tracker yaml, Results), supervision (update_with_detections), BoxMOT (update(dets, img))."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from int8track.apps.io.motchallenge import load_sequence
from int8track.tracker import ByteTracker, TrackerConfig
from int8track.tracker.interop import detections_from_ultralytics

from conftest import require_data

# Ultralytics' ultralytics/cfg/trackers/bytetrack.yaml (8.x), comments shortened.
ULTRALYTICS_BYTETRACK_YAML = """\
# Default Ultralytics settings for ByteTrack tracker when using mode="track"
tracker_type: bytetrack # tracker type, ['botsort', 'bytetrack']
track_high_thresh: 0.25 # threshold for the first association
track_low_thresh: 0.1 # threshold for the second association
new_track_thresh: 0.25 # threshold for init new track if the detection does not match any tracks
track_buffer: 30 # buffer to calculate the time when to remove tracks
match_thresh: 0.8 # threshold for matching tracks
fuse_score: True # Whether to fuse confidence scores with the iou distances before matching
# min_box_area: 10  # threshold for min box areas(for tracker evaluation, not used for now)
"""


def write(tmp_path: Path, text: str, name: str = "bytetrack.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ultralytics_bytetrack_yaml_maps_key_for_key(tmp_path: Path) -> None:
    path = write(tmp_path, ULTRALYTICS_BYTETRACK_YAML)
    expected = TrackerConfig(track_high_thresh=0.25, track_low_thresh=0.1, new_track_thresh=0.25, track_buffer=30,
                             match_thresh=0.8, fuse_score=True)
    assert TrackerConfig.from_yaml(path) == expected
    tracker = ByteTracker.from_yaml(path, frame_rate=10)
    assert tracker.config == expected.replace(frame_rate=10) and tracker.max_time_lost == 10
    assert TrackerConfig.from_yaml(write(tmp_path, "track_buffer: 60\n", "partial.yaml")) == TrackerConfig(track_buffer=60)


@pytest.mark.parametrize(("text", "message"), [
    (ULTRALYTICS_BYTETRACK_YAML + "gmc_method: sparseOptFlow\nproxy_thresh: 0.5\n",
     "unknown tracker setting.*gmc_method, proxy_thresh"),
    (ULTRALYTICS_BYTETRACK_YAML.replace("tracker_type: bytetrack", "tracker_type: botsort"),
     "'botsort' is not supported"),
    ("track_high_thresh: high\n", "track_high_thresh must be a finite number"),
    ("track_buffer: 30.5\n", "track_buffer must be an integer"),
    ("- 0.5\n- 0.1\n", "expected tracker settings"),
    ("track_buffer: [1\n", "not valid YAML"),
    ("", "expected tracker settings"),
])
def test_bad_tracker_files_get_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as error:
        TrackerConfig.from_yaml(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_missing_tracker_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path / 'nope.yaml'}: cannot read"):
        ByteTracker.from_yaml(tmp_path / "nope.yaml")


def public_detections(frames: int = 20) -> list[np.ndarray]:
    """Real (N, 6) detections: MOT17-05's public FRCNN detections (class 0), first ``frames`` frames."""
    sequence = load_sequence(require_data("MOT17-mini/train/MOT17-05-FRCNN"))
    return [np.column_stack((dets, np.zeros(len(dets)))) for dets in sequence.detections()[:frames]]


@dataclass
class Boxes:
    """Ultralytics' ``Boxes`` data layout: xyxy (N, 4), conf (N,), cls (N,) tensors."""

    xyxy: object
    conf: object
    cls: object


@dataclass
class Results:
    """Ultralytics' ``Results`` as far as tracking reads it (``results.boxes``)."""

    boxes: Boxes | None


def test_ultralytics_results_become_our_detections() -> None:
    # ultralytics itself needs torchvision, which cannot be installed here: its documented layout is used instead.
    torch = pytest.importorskip("torch")
    dets = public_detections(1)[0]
    dets[:, 5] = np.arange(len(dets)) % 3
    tensors = Boxes(torch.tensor(dets[:, :4], dtype=torch.float32, requires_grad=True),
                    torch.tensor(dets[:, 4], dtype=torch.float32), torch.tensor(dets[:, 5], dtype=torch.float32))
    converted = detections_from_ultralytics(Results(tensors))
    assert converted.shape == dets.shape and converted.dtype == np.float64
    np.testing.assert_allclose(converted, dets, rtol=1e-6)  # float32 tensors
    np.testing.assert_array_equal(detections_from_ultralytics(Boxes(dets[:, :4], dets[:, 4], dets[:, 5])), dets)
    empty = Results(Boxes(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0)))
    assert detections_from_ultralytics(empty).shape == (0, 6)
    assert ByteTracker().update(converted).shape[1] == 8
    with pytest.raises(ValueError, match="results\\[0\\]"):
        detections_from_ultralytics([Results(tensors)])
    with pytest.raises(ValueError, match="no axis-aligned boxes"):
        detections_from_ultralytics(Results(None))


def test_boxmot_call_takes_the_frame_and_ignores_it() -> None:
    frames = public_detections()
    image = np.zeros((1080, 1920, 3), dtype=np.uint8)
    plain, boxmot = ByteTracker(), ByteTracker()
    for dets in frames:
        np.testing.assert_array_equal(boxmot.update(dets, image), plain.update(dets))


@pytest.mark.parametrize("return_lost", [False, True])
def test_supervision_round_trip_keeps_every_field_of_the_matched_detections(return_lost: bool) -> None:
    sv = pytest.importorskip("supervision")
    rng = np.random.default_rng(0)
    reference, tracker = ByteTracker(return_lost=return_lost), ByteTracker(return_lost=return_lost)
    names = np.array(["person", "cyclist", "dog"])
    for frame, dets in enumerate(public_detections(), start=1):
        count = len(dets)
        classes = rng.integers(0, 3, count)
        masks = rng.random((count, 8, 8)) > 0.5
        detections = sv.Detections(
            xyxy=dets[:, :4].astype(np.float32), confidence=dets[:, 4].astype(np.float32), class_id=classes,
            mask=masks, data={"class_name": names[classes], "row": np.arange(count), "frame": np.full(count, frame)})
        tracked = tracker.update_with_detections(detections)
        expected = reference.update(np.column_stack((detections.xyxy, detections.confidence, classes)))
        expected = expected[expected[:, 7] >= 0]  # lost tracks have no detection to return
        rows = expected[:, 7].astype(int)
        assert len(tracked) == len(rows) > 0
        np.testing.assert_array_equal(tracked.tracker_id, expected[:, 4].astype(int))
        np.testing.assert_array_equal(tracked.xyxy, detections.xyxy[rows])  # the detection's box, not the filter's
        np.testing.assert_array_equal(tracked.confidence, detections.confidence[rows])
        np.testing.assert_array_equal(tracked.class_id, classes[rows])
        np.testing.assert_array_equal(tracked.mask, masks[rows])
        for key, values in detections.data.items():
            np.testing.assert_array_equal(tracked.data[key], values[rows])
        assert tracked.xyxy.dtype == np.float32  # the caller's arrays, not converted copies


def test_supervision_edge_cases() -> None:
    sv = pytest.importorskip("supervision")
    assert len(ByteTracker().update_with_detections(sv.Detections.empty())) == 0
    tracker = ByteTracker()
    no_class = sv.Detections(xyxy=np.array([[0.0, 0.0, 40.0, 100.0]]), confidence=np.array([0.9]))
    out = tracker.update_with_detections(no_class)
    assert out.tracker_id.tolist() == [1] and out.class_id is None
    with pytest.raises(ValueError, match="confidence"):
        tracker.update_with_detections(sv.Detections(xyxy=np.array([[0.0, 0.0, 40.0, 100.0]])))
