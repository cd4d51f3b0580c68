"""Frame sources: files, folders, MOT sequences, bad paths, read-ahead order and live-source dropping."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from int8track.apps.io.read_ahead import ReadAhead
from int8track.apps.io.sources import FrameSource, SourceError, SourceInfo, SourceInterrupted, open_source

from conftest import require_data


def _frames(source: FrameSource, **options) -> list:
    reader = ReadAhead(source, **options)
    frames = list(reader)
    reader.close()
    assert reader.error is None
    return frames


def test_video_file_matches_direct_decoding():
    path = require_data("videos/vtest.avi")
    source = open_source(path)
    assert source.info.kind == "video" and source.info.frame_count == 795 and source.info.fps == 10
    frames = _frames(source, max_buffer=2, max_frames=15)
    capture = cv2.VideoCapture(str(path))
    for frame in frames:
        ok, expected = capture.read()
        assert ok
        np.testing.assert_array_equal(frame.image, expected)
    assert [f.index for f in frames] == list(range(15))


def test_image_folder_sorted_and_mot_sequence_frame_rate():
    sequence = require_data("MOT17-mini/train/MOT17-05-FRCNN")
    folder = open_source(sequence / "img1")
    assert folder.info.kind == "images" and folder.info.fps is None and folder.info.frame_count == 48
    mot = open_source(sequence)
    assert mot.info.kind == "mot" and mot.info.fps == 14 and mot.info.frame_count == 48
    frames = _frames(mot)
    assert [f.index for f in frames] == list(range(48))
    np.testing.assert_array_equal(frames[47].image, cv2.imread(str(sequence / "img1" / "000048.jpg")))
    assert open_source(sequence, fps=5).info.fps == 5


def test_skipping_frames_lands_where_reading_them_would(tmp_path):
    # a resumed run skips the frames done: it must land on the frame reading them would, and an image folder
    # must not decode the images it skips (a resume near the end of a long sequence would decode them all)
    from int8track.apps.models.input_fit import PeekedSource

    sequence = require_data("MOT17-mini/train/MOT17-05-FRCNN")
    images = sorted((sequence / "img1").glob("*.jpg"))[:5]
    for k, image in enumerate(images):
        (tmp_path / f"{k:06d}.jpg").write_bytes(image.read_bytes())
    (tmp_path / "000001.jpg").write_bytes(b"not a jpeg")  # skipped, so never decoded
    folder = open_source(tmp_path)
    assert folder.skip(3) == 3
    np.testing.assert_array_equal(folder.read(), cv2.imread(str(images[3])))
    assert folder.skip(10) == 1 and folder.read() is None  # the end: fewer skipped than asked

    video = require_data("videos/vtest.avi")
    expected = cv2.VideoCapture(str(video))
    for _ in range(7):
        expected.grab()
    peeked = PeekedSource(open_source(video))  # its first frame already read, for fitting the input
    assert peeked.skip(7) == 7 and peeked.skip(0) == 0
    np.testing.assert_array_equal(peeked.read(), expected.read()[1])
    peeked.close()


def test_bad_paths_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="source not found"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(SourceError, match="cannot decode as video"):
        open_source(tmp_path / "notes.txt")
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "broken.jpg").write_bytes(b"not a jpeg")
    reader = ReadAhead(open_source(tmp_path / "sub"))
    assert list(reader) == []
    reader.close()
    assert isinstance(reader.error, SourceError) and "broken.jpg" in str(reader.error)


class _FakeCamera(FrameSource):
    """A live source producing ``count`` numbered frames, one every ``period`` seconds, then failing."""

    def __init__(self, count: int, period: float) -> None:
        self.info = SourceInfo("fake", "camera", "fake", 100.0, None, True)
        self.count, self.period, self.produced = count, period, 0

    def read(self):
        if self.produced == self.count:
            return None
        time.sleep(self.period)
        self.produced += 1
        return np.full((2, 2, 3), self.produced - 1, dtype=np.uint8)


def test_file_source_never_drops_with_a_slow_consumer():
    source = _FakeCamera(30, 0.0)
    source.info = SourceInfo("fake", "images", "fake", None, 30, False)
    reader = ReadAhead(source, max_buffer=2)
    seen = []
    for frame in reader:
        time.sleep(0.002)
        seen.append(frame.index)
    reader.close()
    assert seen == list(range(30)) and reader.dropped == 0 and reader.error is None


def test_live_source_keeps_latest_and_counts_drops():
    source = _FakeCamera(60, 0.001)
    reader = ReadAhead(source)  # live: buffer of one, drop oldest
    seen = []
    for frame in reader:
        time.sleep(0.01)  # a consumer ten times slower than the camera
        seen.append(frame.index)
        assert int(frame.image[0, 0, 0]) == frame.index
    reader.close()
    assert reader.dropped > 0
    assert len(seen) + reader.dropped == 60
    assert seen == sorted(set(seen))  # in order, no repeats
    assert seen[-1] == 59  # the newest frame is never the one dropped
    assert isinstance(reader.error, SourceInterrupted)  # a live source that stops is reported


def test_close_stops_reader_early():
    source = _FakeCamera(10_000, 0.0)
    source.info = SourceInfo("fake", "images", "fake", None, None, False)
    reader = ReadAhead(source, max_buffer=4)
    first = next(iter(reader))
    reader.close()
    assert first.index == 0 and source.produced < 10_000


class _GapRecordingTracker:
    """A real ByteTracker that also records the ``frame_gap`` or ``timestamp`` each update received."""

    def __init__(self) -> None:
        from int8track.tracker import ByteTracker

        self.inner = ByteTracker(frame_rate=100)
        self.gaps: list[int] = []
        self.timestamps: list[float] = []

    @property
    def last_stage_ns(self) -> dict:
        return self.inner.last_stage_ns

    def update(self, detections, frame_gap: int = 1, timestamp: float | None = None):
        if timestamp is not None:
            self.timestamps.append(timestamp)
            return self.inner.update(detections, timestamp=timestamp)
        self.gaps.append(frame_gap)
        return self.inner.update(detections, frame_gap=frame_gap)


class _EmptyDetector:
    """The detector stages with nobody in view: the test is about frame bookkeeping, not detection."""

    def preprocess(self, image):
        return image, None

    def infer(self, blob):
        return blob

    def postprocess(self, raw, meta):
        return np.zeros((0, 6), dtype=np.float32)


def test_frames_dropped_by_a_live_source_step_the_tracker_by_elapsed_time():
    from int8track.apps.pipeline.run import track_frames

    source = _FakeCamera(40, 0.01)  # in real time at its 100 fps
    reader = ReadAhead(source)
    tracker = _GapRecordingTracker()
    seen = []
    start = time.perf_counter()
    with pytest.raises(SourceInterrupted):
        for frame_id, _, _ in track_frames(source, _EmptyDetector(), tracker, reader=reader):
            time.sleep(0.03)  # slower than the camera: frames are dropped
            seen.append(frame_id)
    elapsed = time.perf_counter() - start
    assert reader.dropped > 0 and not tracker.gaps  # live: timestamps, never frame counts
    steps = np.diff(tracker.timestamps)
    period = 1 / source.info.fps
    # each step covers at least the frames dropped before it (they took >= one period each to arrive) ...
    assert np.all(steps >= np.diff(seen) * period - 1e-9)
    # ... and the steps add up to the time that passed, not to the frames counted
    assert tracker.timestamps[-1] - tracker.timestamps[0] <= elapsed
    assert tracker.inner.frame_id == 1 + sum(max(1, round(step * source.info.fps)) for step in steps)


class _PausingCamera(_FakeCamera):
    """A fake live camera, in real time (one frame a period), that stalls for ``pause`` seconds before frame ``at``
    (a stream outage)."""

    def __init__(self, count: int, at: int, pause: float) -> None:
        super().__init__(count, 0.01)
        self.at, self.pause = at, pause

    def read(self):
        if self.produced == self.at:
            time.sleep(self.pause)
        return super().read()


def test_a_pause_in_a_live_source_ages_the_tracker_by_its_length():
    from int8track.apps.pipeline.run import track_frames

    source = _PausingCamera(20, at=10, pause=0.3)
    tracker = _GapRecordingTracker()
    with pytest.raises(SourceInterrupted):
        for _ in track_frames(source, _EmptyDetector(), tracker, reader=ReadAhead(source, drop_oldest=False)):
            pass
    steps = np.diff(tracker.timestamps) * source.info.fps
    assert len(steps) == 19
    assert steps[9] >= 0.3 * source.info.fps - 1  # ~30 frame periods passed during the pause, not one
    assert np.all(np.delete(steps, 9) < 0.3 * source.info.fps / 2)
