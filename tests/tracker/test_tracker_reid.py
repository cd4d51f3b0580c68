"""Appearance re-identification (tracker.appearance, tracker.reid), ByteTracker.refind and camera motion
compensation (tracker.cmc)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from int8track.tracker import ByteTracker, TrackerState
from int8track.tracker.appearance import IMAGENET_MEAN, IMAGENET_STD, BoxEmbedder, OnnxEmbedder, crop_boxes
from int8track.tracker.cmc import CameraMotionCompensator, CmcTracker
from int8track.tracker.reid import ReidConfig, ReidTracker

from conftest import require_data

pytestmark = pytest.mark.usefixtures("one_opencv_thread")  # timings and flow as on a one-core machine


def mean_colour(crops: list[np.ndarray]) -> np.ndarray:
    """A test embedder: each crop's mean BGR colour, centred so that different colours point different ways."""
    return np.array([crop.reshape(-1, 3).mean(axis=0) - 127.5 for crop in crops]).reshape(-1, 3)


def box(cx: float, cy: float, w: float = 40, h: float = 100, score: float = 0.9) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score]


# ------------------------------------------------------------------------------------------------------------
# ByteTracker.refind
# ------------------------------------------------------------------------------------------------------------

def lose_track(tracker: ByteTracker, frames: int) -> None:
    """Track one object for 3 frames, then give it ``frames`` frames without detections."""
    for i in range(3):
        tracker.update(np.array([box(100 + 5 * i, 200)]))
    for _ in range(frames):
        tracker.update(np.empty((0, 5)))


def test_refind_reactivates_a_lost_track_and_drops_the_new_track_of_its_detection() -> None:
    tracker = ByteTracker(frame_rate=30)
    lose_track(tracker, 4)
    assert tracker.lost_tracks()[:, 4].tolist() == [1]
    far = np.array([box(400, 200)])  # too far for IoU: starts a new (unconfirmed) track
    assert len(tracker.update(far)) == 0 and tracker.num_tracks == 2
    rows = tracker.refind([1], far, [0])
    assert rows[:, 4].tolist() == [1] and rows[:, 7].tolist() == [0]
    # The state restarts at the detection (the old velocity says nothing after such a jump).
    np.testing.assert_allclose(rows[0, :4], far[0, :4])
    assert len(tracker.lost_tracks()) == 0 and tracker.num_tracks == 1
    # The next frame matches the re-found track by motion, under the same id, and no id is wasted.
    out = tracker.update(np.array([box(402, 200)]))
    assert out[:, 4].tolist() == [1]
    out = tracker.update(np.array([box(404, 200), box(50, 50)]))
    tracker.update(np.array([box(406, 200), box(50, 50)]))
    assert sorted(tracker.update(np.array([box(408, 200), box(50, 50)]))[:, 4].tolist()) == [1, 2]


def test_refind_rejects_what_it_cannot_do() -> None:
    tracker = ByteTracker(frame_rate=30)
    lose_track(tracker, 2)
    dets = np.array([box(400, 200), box(130, 200)])
    out = tracker.update(dets)
    assert out[:, 4].tolist() == [1]  # the lost track was matched by motion to row 1
    tracker.update(np.empty((0, 5)))
    tracker.update(np.empty((0, 5)))
    dets = np.array([box(600, 200), box(700, 200)])
    tracker.update(dets)
    with pytest.raises(ValueError, match="not lost"):
        tracker.refind([7], dets, [0])
    with pytest.raises(ValueError, match="valid rows"):
        tracker.refind([1], dets, [5])
    with pytest.raises(ValueError, match="one detection row per track"):
        tracker.refind([1], dets, [0, 1])
    with pytest.raises(ValueError, match="twice"):
        tracker.refind([1, 1], dets, [0, 1])
    assert tracker.refind([], dets, []).shape == (0, 8)


def test_refind_refuses_a_detection_a_tracked_track_matched() -> None:
    tracker = ByteTracker(frame_rate=30)
    tracker.update(np.array([box(100, 200), box(400, 200)]))
    tracker.update(np.array([box(100, 200)]))  # the second is lost now
    dets = np.array([box(102, 200)])
    assert tracker.update(dets)[:, 4].tolist() == [1]
    with pytest.raises(ValueError, match="matched by tracked"):
        tracker.refind([2], dets, [0])


# ------------------------------------------------------------------------------------------------------------
# Embedders
# ------------------------------------------------------------------------------------------------------------

def test_crops_are_clipped_and_tiny_boxes_get_none() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    crops, valid = crop_boxes(frame, np.array([[-10, -5, 30, 40], [190, 50, 260, 99.5], [10, 10, 15, 80],
                                               [np.nan, 0, 10, 10], [198, 0, 240, 50]]), min_side=8)
    assert valid.tolist() == [True, True, False, False, False]
    assert [c.shape[:2] for c in crops] == [(40, 30), (50, 10)]


def test_box_embedder_normalises_and_checks_the_embedder() -> None:
    frame = np.full((100, 200, 3), 200, np.uint8)
    frame[:, 100:] = (10, 20, 240)
    embedder = BoxEmbedder(mean_colour)
    out, valid = embedder.embed(frame, np.array([[0, 0, 50, 90], [120, 0, 180, 90], [0, 0, 3, 3]]))
    assert valid.tolist() == [True, True, False] and embedder.crops_embedded == 2
    np.testing.assert_allclose(np.linalg.norm(out[:2], axis=1), 1.0, rtol=1e-6)
    assert np.isnan(out[2]).all() and embedder.dim == 3

    sizes = iter([4, 5])
    changing = BoxEmbedder(lambda crops: np.ones((len(crops), next(sizes))))
    changing.embed(frame, np.array([[0, 0, 50, 90]]))
    with pytest.raises(ValueError, match="5-d embeddings after 4-d"):
        changing.embed(frame, np.array([[0, 0, 50, 90]]))
    with pytest.raises(ValueError, match=r"\(1, D\) array"):
        BoxEmbedder(lambda crops: np.ones((3, 4))).embed(frame, np.array([[0, 0, 50, 90]]))
    with pytest.raises(ValueError, match="callable"):
        BoxEmbedder("osnet.onnx")  # type: ignore[arg-type]


def test_onnx_embedder_names_a_missing_or_wrong_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        OnnxEmbedder(tmp_path / "nowhere.onnx")
    wrong = tmp_path / "wrong.onnx"
    wrong.write_text("not a model")
    with pytest.raises(ValueError, match="wrong.onnx is not a loadable ONNX model") as error:
        OnnxEmbedder(wrong)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def osnet() -> OnnxEmbedder:
    return OnnxEmbedder(require_data("weights/osnet_x0_25_msmt17.onnx"))


def test_osnet_preprocessing_matches_opencv_blob(osnet: OnnxEmbedder) -> None:
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((180, 70), (256, 128), (40, 20))]
    # Independent reference: OpenCV's blob (resize, BGR->RGB, scale, mean) then the per-channel std.
    blob = cv2.dnn.blobFromImages(crops, 1.0 / 255.0, (128, 256), swapRB=True, crop=False)
    blob = (blob - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
    np.testing.assert_allclose(osnet.preprocess(crops), blob, atol=1e-5)


def test_osnet_tells_people_apart_on_pets09(osnet: OnnxEmbedder) -> None:
    """Real crops (PETS09 gt): one person 20 frames apart is more similar than two people on one frame."""
    root = require_data("MOT15/train/PETS09-S2L1")
    gt = np.loadtxt(root / "gt" / "gt.txt", delimiter=",")

    def person(frame: int, track: int) -> np.ndarray:
        row = gt[(gt[:, 0] == frame) & (gt[:, 1] == track)][0]
        return np.array([row[2], row[3], row[2] + row[4], row[3] + row[5]])

    ids = sorted(set(gt[gt[:, 0] == 100, 1]) & set(gt[gt[:, 0] == 120, 1]))[:2]
    first, later = (cv2.imread(str(root / "img1" / f"{f:06d}.jpg")) for f in (100, 120))
    embedder = BoxEmbedder(osnet)
    a, valid_a = embedder.embed(first, np.array([person(100, t) for t in ids]))
    b, valid_b = embedder.embed(later, np.array([person(120, t) for t in ids]))
    assert valid_a.all() and valid_b.all() and embedder.dim == 512
    same = np.einsum("ij,ij->i", a, b)
    assert same.min() > float(a[0] @ a[1])
    assert same.min() > 0.6 > float(a[0] @ a[1])


# ------------------------------------------------------------------------------------------------------------
# ReidTracker
# ------------------------------------------------------------------------------------------------------------

def occlusion_scene() -> list[tuple[np.ndarray, np.ndarray]]:
    """A red person walks right at 6 px/frame, is hidden for 12 frames during which they stop for 6 (so the
    Kalman prediction runs 36 px ahead, no overlap left with a 40 px box: IoU cannot bridge it), then walks on;
    a blue person stands still far away. (frame, detections) per frame."""
    frames = []
    for i in range(30):
        image = np.full((300, 600, 3), 128, np.uint8)
        dets = [box(500, 150)]
        cv2.rectangle(image, (480, 100), (520, 200), (255, 0, 0), -1)
        cx = 60 + 6 * i - 36 * (i >= 16) - 6 * (i - 10) * (10 <= i < 16)
        if not 10 <= i < 22:
            dets.append(box(cx, 150))
            cv2.rectangle(image, (int(cx - 20), 100), (int(cx + 20), 200), (0, 0, 255), -1)
        frames.append((image, np.array(dets)))
    return frames


def run_scene(tracker) -> list[set[int]]:
    return [set(tracker.update(dets, frame)[:, 4].astype(int).tolist()) for frame, dets in occlusion_scene()]


def test_reid_keeps_the_identity_through_an_occlusion_motion_cannot_bridge() -> None:
    # The prediction ran ahead of the hidden person: the plain tracker starts a new id when they reappear.
    plain = run_scene(ByteTracker(frame_rate=30))
    assert set().union(*plain) == {1, 2, 3}
    reid = ReidTracker(ByteTracker(frame_rate=30), mean_colour, ReidConfig(min_similarity=0.9))
    ids = run_scene(reid)
    assert set().union(*ids) == {1, 2}
    assert ids[-1] == {1, 2} and reid.refound_total == 1
    # The embedder saw a handful of crops, not every box of every frame (2 boxes x 30 frames).
    assert 0 < reid.crops_embedded <= 12
    assert {"reid", "cmc", "predict"} <= set(reid.last_stage_ns)


def test_reid_does_not_merge_different_people() -> None:
    """A different-looking person appears where the lost one was going: no re-find, a new id."""
    reid = ReidTracker(ByteTracker(frame_rate=30), mean_colour, ReidConfig(min_similarity=0.9))
    for i, (frame, dets) in enumerate(occlusion_scene()):
        if i >= 22:  # recolour the returning person green
            cx = 60 + 6 * i - 36
            cv2.rectangle(frame, (cx - 20, 100), (cx + 20, 200), (0, 255, 0), -1)
        reid.update(dets, frame)
    assert reid.refound_total == 0


def test_reid_gate_refuses_a_far_detection_and_then_changes_nothing() -> None:
    """Outside the gate appearance is never used: every output row equals the plain tracker's."""
    config = ReidConfig(min_similarity=0.9, gate=0.2, gate_growth=0.0)
    reid = ReidTracker(ByteTracker(frame_rate=30), mean_colour, config)
    plain = ByteTracker(frame_rate=30)
    for frame, dets in occlusion_scene():
        np.testing.assert_array_equal(reid.update(dets, frame), plain.update(dets))
    assert reid.refound_total == 0 and reid.crops_embedded > 0


def test_reid_side_table_forgets_removed_tracks() -> None:
    reid = ReidTracker(ByteTracker(frame_rate=30, track_buffer=3), mean_colour)
    scene = occlusion_scene()
    for frame, dets in scene[:10]:
        reid.update(dets, frame)
    assert reid.appearance(2) is not None  # the red person, isolated, has an appearance
    for frame, dets in scene[10:16]:  # hidden longer than the 3-frame buffer: the track is removed
        reid.update(dets, frame)
    assert reid.appearance(2) is None and reid.appearance(1) is not None


def test_reid_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="min_similarity"):
        ReidConfig(min_similarity=2.0)
    with pytest.raises(ValueError, match="refresh_every"):
        ReidConfig(refresh_every=0)
    with pytest.raises(ValueError, match="gap_min_similarity"):
        ReidConfig(gap_min_similarity=-1.5)
    with pytest.raises(ValueError, match="gap_weight"):
        ReidConfig(gap_weight=-1.0)
    with pytest.raises(ValueError, match="return_lost"):
        ReidTracker(ByteTracker(return_lost=True), mean_colour)
    with pytest.raises(ValueError, match="frame image"):
        ReidTracker(ByteTracker(), mean_colour).update(np.empty((0, 5)), None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Camera motion compensation
# ------------------------------------------------------------------------------------------------------------

def textured(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, (height, width)).astype(np.float32)
    gray = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def test_compensator_recovers_a_pan_and_moves_the_tracks() -> None:
    world = textured(600, 900)
    compensator = CameraMotionCompensator()
    compensator.estimate(world[50:530, 100:740])
    motion = compensator.estimate(world[53:533, 108:748])  # the camera moved 8 right, 3 down
    assert motion.reliable
    np.testing.assert_allclose(motion.affine[:, 2], [-8.0, -3.0], atol=0.3)


def test_cmc_tracker_keeps_a_static_object_through_a_fast_pan() -> None:
    """The camera pans 25 px a frame over a still person (a box 30 px wide): without CMC the constant-velocity
    model lags behind the image motion while it starts up and the id breaks; with CMC it does not."""
    world = textured(600, 1400)

    def run(tracker) -> list[set[int]]:
        ids = []
        for i in range(12):
            x = 25 * i
            frame = world[60:540, x:x + 640]
            person = np.array([box(600 - x, 300, w=30, h=80)])
            output = tracker.update(person, frame) if isinstance(tracker, CmcTracker) else tracker.update(person)
            ids.append(set(output[:, 4].astype(int).tolist()))
        return ids

    plain = run(ByteTracker(frame_rate=30))
    assert plain[-1] != {1}  # lost on the second frame, never confirmed again
    assert run(CmcTracker(ByteTracker(frame_rate=30))) == [{1}] * 12


def test_cmc_on_a_static_camera_changes_nothing() -> None:
    frame = textured()
    scene = occlusion_scene()
    plain, cmc = ByteTracker(frame_rate=30), CmcTracker(ByteTracker(frame_rate=30))
    for _, dets in scene:
        expected, got = plain.update(dets), cmc.update(dets, frame)
        np.testing.assert_allclose(got, expected, atol=1e-3)
    assert "cmc" in cmc.last_stage_ns


def test_cmc_tracker_resumes_from_its_motion_state_as_if_never_stopped() -> None:
    """A fleet stream's failover: the tracker's state plus ``motion_state`` (the previous frame and boxes) on a
    new ``CmcTracker`` continue the pan exactly as the uninterrupted tracker does."""
    world = textured(600, 1400)

    def frame_and_dets(i: int) -> tuple[np.ndarray, np.ndarray]:
        x = 17 * i
        return world[60:540, x:x + 640], np.array([box(600 - x, 300, w=30, h=80), box(400 - x, 250)])

    whole = CmcTracker(ByteTracker(frame_rate=10))
    expected = [whole.update(dets, frame) for frame, dets in map(frame_and_dets, range(12))]
    first = CmcTracker(ByteTracker(frame_rate=10))
    for frame, dets in map(frame_and_dets, range(6)):
        first.update(dets, frame)
    resumed = CmcTracker(ByteTracker.from_state(TrackerState.from_bytes(first.tracker.state_dict().to_bytes())))
    resumed.load_motion_state(first.motion_state())
    for i in range(6, 12):
        frame, dets = frame_and_dets(i)
        np.testing.assert_array_equal(resumed.update(dets, frame), expected[i])
    fresh = CmcTracker(ByteTracker.from_state(TrackerState.from_bytes(first.tracker.state_dict().to_bytes())))
    fresh.load_motion_state(CmcTracker(ByteTracker()).motion_state())  # a state before any frame: nothing kept
    assert fresh.compensator.previous_frame is None
    with pytest.raises(ValueError, match="camera motion state"):
        fresh.load_motion_state(b"not a state")


def test_wrap_tracker_builds_what_the_flags_ask_for(tmp_path: Path) -> None:
    from int8track.tracker.reid import wrap_tracker

    plain = ByteTracker()
    assert wrap_tracker(plain) is plain
    assert isinstance(wrap_tracker(ByteTracker(), cmc=True), CmcTracker)
    reid = wrap_tracker(ByteTracker(), mean_colour, cmc=True)
    assert isinstance(reid, ReidTracker) and reid.compensator is not None
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        wrap_tracker(ByteTracker(), tmp_path / "missing.onnx")


def test_downscaling_by_halvings_matches_a_direct_area_resize() -> None:
    from int8track.tracker.camera_motion import downscaled_gray

    frame = textured(1080, 1920)
    direct = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (480, 270), interpolation=cv2.INTER_AREA)
    halved = downscaled_gray(frame, 4)
    assert halved.shape == direct.shape
    assert np.abs(halved.astype(int) - direct.astype(int)).max() <= 1  # rounding of the intermediate image
    assert downscaled_gray(frame, 3).shape == (360, 640)


def crossing_gap_scene(t: float) -> tuple[np.ndarray, np.ndarray]:
    """Red walks right from x=100 and blue left from x=260 at 30 px/s until t = 1.9 s (at 157 and 203), then stop;
    after a 3 s gap each stands nearer the other's constant-velocity prediction (about 247 and 113) than their
    own, and no box overlaps a prediction: motion alone swaps them. (frame, detections [red, blue])."""
    walked = min(t, 1.9)
    xs = (100 + 30 * walked, 260 - 30 * walked)
    image = np.full((300, 400, 3), 128, np.uint8)
    for cx, colour in zip(xs, ((0, 0, 255), (255, 0, 0))):
        cv2.rectangle(image, (int(cx - 20), 100), (int(cx + 20), 200), colour, -1)
    return image, np.array([box(xs[0], 150), box(xs[1], 150)])


def ids_after_crossing_gap(tracker) -> tuple[list[int], list[int]]:
    """Track ids of (red, blue) before and after a 3 s gap at 10 fps (live timestamps)."""
    for frame in range(20):
        image, dets = crossing_gap_scene(frame / 10)
        before = tracker.update(dets, image, timestamp=frame / 10)
    for t in (4.9, 5.0):
        image, dets = crossing_gap_scene(t)
        after = tracker.update(dets, image, timestamp=t)
    by_det = lambda out: [int(out[out[:, 7] == k, 4][0]) for k in (0, 1)]  # noqa: E731 (row of detection k)
    return by_det(before), by_det(after)


def test_after_an_outage_appearance_prevents_the_swap_motion_would_make() -> None:
    before, after = ids_after_crossing_gap(ByteTracker(frame_rate=10, track_buffer=300))
    assert after == before[::-1]  # motion alone: each took the other's detection
    reid = ReidTracker(ByteTracker(frame_rate=10, track_buffer=300), mean_colour, ReidConfig(min_similarity=0.9))
    before, after = ids_after_crossing_gap(reid)
    assert after == before  # the outage stage excludes pairs that look unalike (cosine below gap_min_similarity)
