"""The pipeline hands the detector its class list: the tracker sees exactly the boxes of those classes."""
from __future__ import annotations

import numpy as np
import pytest

from int8track.apps.io.sources import open_source
from int8track.apps.pipeline.run import track_frames
from int8track.detectors import load_detector
from int8track.tracker import ByteTracker

from conftest import require_data

FRAMES = 3


class RecordingTracker:
    """A real ByteTracker that keeps the detections each update received."""

    def __init__(self) -> None:
        self.tracker = ByteTracker(frame_rate=7)
        self.detections: list[np.ndarray] = []

    def update(self, detections: np.ndarray, img: object = None, *, frame_gap: int | None = None,
               timestamp: float | None = None) -> np.ndarray:
        self.detections.append(detections.copy())
        return self.tracker.update(detections, img, frame_gap=frame_gap, timestamp=timestamp)

    @property
    def last_stage_ns(self) -> dict[str, int]:
        return self.tracker.last_stage_ns


@pytest.fixture(scope="module")
def coco_detector():
    return load_detector(str(require_data("weights/yolox_nano.onnx")), backend="onnxruntime", num_threads=1,
                         conf_thresh=0.05)


def _run(detector, classes=None) -> tuple[RecordingTracker, list[np.ndarray], list[np.ndarray]]:
    tracker = RecordingTracker()
    sequence = require_data("MOT15/train/PETS09-S2L1")
    frames, tracks = [], []
    for _, image, frame_tracks in track_frames(open_source(sequence), detector, tracker, classes=classes,
                                               max_frames=FRAMES):
        frames.append(image.copy())
        tracks.append(frame_tracks)
    return tracker, frames, tracks


@pytest.mark.parametrize("classes", [[0], [0, 2]])
def test_tracker_receives_exactly_the_detections_of_the_classes(coco_detector, classes):
    tracker, frames, tracks = _run(coco_detector, classes)
    assert len(frames) == FRAMES
    for image, detections, frame_tracks in zip(frames, tracker.detections, tracks):
        everything = coco_detector(image)
        assert not np.isin(everything[:, 5], classes).all()  # other classes were there to be dropped
        np.testing.assert_array_equal(detections, everything[np.isin(everything[:, 5], classes)])
        assert np.isin(frame_tracks[:, 6], classes).all()
    assert coco_detector.classes is None  # the caller's detector is not changed


def test_without_classes_the_detectors_own_list_applies(coco_detector):
    cars = coco_detector.with_classes([2])
    tracker, frames, _ = _run(cars)
    assert sum(len(d) for d in tracker.detections) > 0
    for image, detections in zip(frames, tracker.detections):
        np.testing.assert_array_equal(detections, cars(image))
        assert (detections[:, 5] == 2).all()


def test_a_bad_class_list_is_a_clear_error_and_closes_the_source(coco_detector):
    source = open_source(require_data("MOT15/train/PETS09-S2L1"))
    closed = []
    close = source.close
    source.close = lambda: closed.append(close())
    with pytest.raises(ValueError, match="outside 0..79"):
        next(track_frames(source, coco_detector, RecordingTracker(), classes=[80]))
    assert closed  # the read-ahead thread was stopped and the source released
