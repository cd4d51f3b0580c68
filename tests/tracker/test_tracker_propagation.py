"""Camera motion and optical-flow propagation between detector calls (tracker.camera_motion, tracker.propagation)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from int8track.apps.io.motchallenge import load_sequence
from int8track.tracker import ByteTracker
from int8track.tracker.camera_motion import (
    CameraMotion,
    CameraMotionConfig,
    estimate_camera_motion,
    fit_camera_motion,
    to_gray,
)
from int8track.tracker.propagation import FlowPropagator, IntervalTracker, PropagationConfig

from conftest import require_data

pytestmark = pytest.mark.usefixtures("one_opencv_thread")  # timings and flow as on a one-core machine


def textured(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """Smooth random texture: every window has gradients in both directions, as Lucas-Kanade needs."""
    noise = np.random.default_rng(seed).uniform(0, 255, (height, width)).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1],
                          flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


BOXES = np.array([[100.0, 100, 160, 250], [300, 220, 350, 340], [480, 40, 580, 190]])


@pytest.mark.parametrize("dx, dy", [(3.5, -2.25), (-6.0, 4.75), (0.0, 0.0)])
def test_flow_moves_boxes_by_the_image_shift(dx: float, dy: float) -> None:
    image = textured()
    propagator = FlowPropagator()
    result = propagator.propagate(propagator.prepare(image), propagator.prepare(shift(image, dx, dy)), BOXES)
    np.testing.assert_allclose(result.boxes, BOXES + [dx, dy, dx, dy], atol=0.5)
    report = result.report
    assert report.flowed == 3 and report.fallback == 0 and report.kept_ratio > 0.9
    assert report.median_fb_error < 0.5
    assert report.camera is not None and report.camera.reliable
    np.testing.assert_allclose(report.camera.affine[:, 2], [dx, dy], atol=0.3)


def test_interval_tracker_step_follows_a_shifted_frame_and_corrects_the_tracker() -> None:
    image = textured()
    tracker = ByteTracker(frame_rate=30)
    stepper = IntervalTracker(tracker, FlowPropagator())
    detections = np.column_stack((BOXES, np.full(3, 0.9)))
    first = stepper.update(image, detections)
    moved_image = shift(image, 5.0, 3.0)
    tracks = stepper.step(moved_image)
    np.testing.assert_array_equal(tracks[:, 4], first[:, 4])  # same tracks, same order
    np.testing.assert_allclose(tracks[:, :4], BOXES + [5, 3, 5, 3], atol=0.5)
    assert (tracks[:, 7] == -1).all() and tracker.last_predicted.all()
    assert stepper.last_report is not None and stepper.last_report.flowed == 3
    # The tracker's state moved toward the flow (Kalman update), not only the output.
    state_boxes = tracker.predict()[:, :4]
    assert (state_boxes[:, 0] - BOXES[:, 0] > 2.5).all()


def test_boxes_on_a_flat_image_fall_back_to_the_kalman_prediction() -> None:
    flat = np.full((480, 640), 128, np.uint8)
    propagator = FlowPropagator()
    result = propagator.propagate(propagator.prepare(flat), propagator.prepare(flat), BOXES)
    assert np.isnan(result.boxes).all() and result.report.fallback == 3 and result.report.kept_ratio == 0.0
    assert result.report.camera is not None and not result.report.camera.reliable

    tracker, plain = ByteTracker(), ByteTracker()
    stepper = IntervalTracker(tracker, propagator)
    detections = np.column_stack((BOXES, np.full(3, 0.9)))
    stepper.update(flat, detections)
    plain.update(detections)
    assert stepper.step(flat).tobytes() == plain.predict(frame_size=(640, 480)).tobytes()


def test_interval_tracker_without_propagator_is_frame_gap_exact() -> None:
    walkers = [np.array([[10.0 + 4 * t, 20, 50 + 4 * t, 120, 0.9], [300 - 3 * t, 40, 340 - 3 * t, 150, 0.8]])
               for t in range(20)]
    stepper, reference = IntervalTracker(ByteTracker()), ByteTracker()
    frame = np.zeros((480, 640, 3), np.uint8)
    for t in range(0, 20, 3):
        expected = reference.update(walkers[t], frame_gap=1 if t == 0 else 3)
        if t:
            stepper.step(frame)
            stepper.step(frame)
        assert stepper.update(None, walkers[t]).tobytes() == expected.tobytes()


def gt_boxes(sequence, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and x1, y1, x2, y2 boxes of the scored pedestrians of one frame."""
    gt = sequence.ground_truth()
    rows = gt.rows_by_frame()[frame]
    keep = gt.consider[rows] if gt.classes is None else gt.consider[rows] & (gt.classes[rows] == 1)
    rows = rows[keep]
    boxes = gt.boxes[rows].copy()
    boxes[:, 2:] += boxes[:, :2]
    return gt.ids[rows], boxes


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (N, 4) x1, y1, x2, y2 arrays."""
    inter = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None).prod(axis=1)
    area = (a[:, 2:] - a[:, :2]).prod(axis=1) + (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / (area - inter)


@pytest.mark.parametrize("sequence_dir, start", [("MOT15/train/PETS09-S2L1", 100),
                                                 ("MOT17-mini/train/MOT17-05-FRCNN", 10)])
def test_flow_moves_real_tracks_toward_the_next_frames_ground_truth(sequence_dir: str, start: int) -> None:
    """Tracks started from 3 frames of gt boxes, then one frame without detections: the flow-corrected boxes
    overlap that frame's gt more than the Kalman prediction does (7 fps PETS09; MOT17-05's camera moves)."""
    sequence = load_sequence(require_data(sequence_dir))
    paths = sequence.image_paths()
    mean_iou = {}
    for name, propagator in (("kalman", None), ("flow", FlowPropagator())):
        stepper = IntervalTracker(ByteTracker(frame_rate=sequence.frame_rate), propagator)
        for frame in range(start, start + 3):
            ids, boxes = gt_boxes(sequence, frame)
            tracks = stepper.update(cv2.imread(str(paths[frame - 1])), np.column_stack((boxes, np.full(len(boxes), 0.9))))
            gt_of_track = {int(t[4]): int(ids[int(t[7])]) for t in tracks}
        tracks = stepper.step(cv2.imread(str(paths[start + 2])))
        ids, boxes = gt_boxes(sequence, start + 3)
        row_of_id = {int(i): r for r, i in enumerate(ids)}
        pairs = [(k, row_of_id[gt_of_track[int(t[4])]]) for k, t in enumerate(tracks)
                 if row_of_id.get(gt_of_track.get(int(t[4]), -1)) is not None]
        assert len(pairs) >= 3
        mean_iou[name] = iou(tracks[[k for k, _ in pairs], :4], boxes[[r for _, r in pairs]]).mean()
    assert mean_iou["flow"] > mean_iou["kalman"] + 0.02, mean_iou


def test_camera_motion_recovers_a_known_warp_of_a_real_frame() -> None:
    frame = cv2.imread(str(require_data("MOT17-mini/train/MOT17-05-FRCNN/img1/000001.jpg")))
    gray = to_gray(frame)
    height, width = gray.shape
    truth = cv2.getRotationMatrix2D((width / 2, height / 2), 1.0, 1.02)
    truth[:, 2] += [5.5, -3.25]
    warped = cv2.warpAffine(gray, truth, (width, height))
    motion = estimate_camera_motion(frame, warped)
    assert motion.reliable and motion.residual < 0.5
    np.testing.assert_allclose(motion.affine[:, :2], truth[:, :2], atol=2e-3)
    # Judge the translation where it matters: points of the frame map within 0.3 px of the truth.
    corners = np.array([[0.0, 0.0], [width, 0.0], [0.0, height], [width, height], [width / 2, height / 2]])
    np.testing.assert_allclose(motion.transform_points(corners), corners @ truth[:, :2].T + truth[:, 2], atol=0.3)


def test_fit_camera_motion_ignores_independent_movers() -> None:
    rng = np.random.default_rng(3)
    source = rng.uniform(0, 600, (100, 2))
    truth = np.array([[0.99, -0.02, 4.0], [0.02, 0.99, -1.0]])
    target = source @ truth[:, :2].T + truth[:, 2]
    target[:20] += rng.uniform(5, 20, (20, 2))  # people walking
    motion = fit_camera_motion(source, target)
    np.testing.assert_allclose(motion.affine, truth, atol=1e-4)
    assert motion.inliers == 80 and motion.points == 100
    assert not fit_camera_motion(source[:2], target[:2]).reliable


def test_camera_motion_moves_boxes_and_tracker_states() -> None:
    motion = CameraMotion(affine=np.array([[1.0, 0, 10], [0, 1.0, -4]]), inliers=50, points=60)
    np.testing.assert_allclose(motion.transform_boxes(BOXES[:1]), [[110, 96, 170, 246]])
    tracker = ByteTracker()
    tracker.update(np.column_stack((BOXES, np.full(3, 0.9))))
    motion.apply_to(tracker)
    np.testing.assert_allclose(tracker.predict()[:, :4], BOXES + [10, -4, 10, -4])


@pytest.mark.parametrize("bad", [dict(downscale=0), dict(points_per_side=1), dict(min_points=17),
                                 dict(fb_thresh=0.0), dict(inner_width=1.5), dict(max_scale_change=1.0)])
def test_propagation_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        PropagationConfig(**bad)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="grid"):
        CameraMotionConfig(grid=(1, 5))
    with pytest.raises(ValueError, match="uint8"):
        to_gray(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="2x3"):
        CameraMotion(affine=np.eye(3))
    with pytest.raises(ValueError, match="needs the frame"):
        IntervalTracker(ByteTracker(), FlowPropagator()).update(None, np.empty((0, 5)))


def moving_patch_scene(frames: int, speed: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A textured 40x100 patch moving right over a different textured background; frames and its boxes."""
    background, patch = textured(seed=1), textured(100, 40, seed=2)
    images, boxes = [], []
    for t in range(frames):
        x = 100 + int(round(speed * t))
        image = background.copy()
        image[200:300, x:x + 40] = patch
        images.append(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        boxes.append(np.array([[x, 200.0, x + 40, 300, 0.9]]))
    return images, boxes


@pytest.mark.parametrize("propagate", [False, True])
def test_flow_lets_a_fast_new_track_confirm_between_detector_calls(propagate: bool) -> None:
    """A new track is unconfirmed until the next detection frame and not predicted (official): 3 frames at
    12 px/frame put its box 36 px off a 40 px wide object, too far to match. The flow follows it."""
    images, boxes = moving_patch_scene(7, 12.0)
    stepper = IntervalTracker(ByteTracker(frame_rate=30), FlowPropagator() if propagate else None)
    stepper.update(images[0], np.empty((0, 5)))  # the first update confirms at once: start with an empty one
    shown = []
    for t in range(1, 7):
        tracks = stepper.update(images[t], boxes[t]) if t % 3 == 1 else stepper.step(images[t])
        shown.append(len(tracks))
    # Detection frames t = 1, 4: confirmed at t = 4 only when the unconfirmed box followed the object.
    assert (shown[3] == 1) == propagate, shown


def test_unconfirmed_corrections_need_fresh_rows() -> None:
    tracker = ByteTracker()
    tracker.update(np.empty((0, 5)))
    tracker.update(np.column_stack((BOXES, np.full(3, 0.9))))
    with pytest.raises(ValueError, match="unconfirmed_boxes"):
        tracker.correct_unconfirmed(BOXES)
    np.testing.assert_allclose(tracker.unconfirmed_boxes(), BOXES)
    assert tracker.correct_unconfirmed(BOXES + [5, 0, 5, 0]) == 3
    np.testing.assert_allclose(tracker.unconfirmed_boxes(), BOXES + [5, 0, 5, 0])  # moved there: no model to blend
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        tracker.correct_unconfirmed(BOXES[:2])


def test_tracks_last_seen_by_a_low_score_detection_keep_the_kalman_prediction() -> None:
    """ByteTrack's low-score matches are mostly occluded people: the flow in their box follows the occluder."""
    images, boxes = moving_patch_scene(6, 6.0)
    results = {}
    for propagate in (False, True):
        stepper = IntervalTracker(ByteTracker(frame_rate=30), FlowPropagator() if propagate else None)
        for t in range(4):
            stepper.update(images[t], boxes[t])
        low = boxes[4].copy()
        low[:, 4] = 0.3  # matched in ByteTrack's second stage
        stepper.update(images[4], low)
        results[propagate] = stepper.step(images[5])
    # The same up to the camera motion the flow mode applies (static background: a tiny estimate).
    np.testing.assert_allclose(results[True], results[False], atol=0.1)
    assert abs(results[True][0, 0] - boxes[5][0, 0]) > 1.0  # the prediction lags: the flow was not used


def test_propagate_answers_nan_for_unusable_boxes_and_rejects_bad_shapes() -> None:
    image = textured()
    propagator = FlowPropagator()
    boxes = np.vstack((BOXES, [[np.nan, 0, 10, 10], [50, 50, 40, 60]]))
    result = propagator.propagate(propagator.prepare(image), propagator.prepare(shift(image, 2.0, 1.0)), boxes)
    np.testing.assert_allclose(result.boxes[:3], BOXES + [2, 1, 2, 1], atol=0.5)
    assert np.isnan(result.boxes[3:]).all()
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        propagator.propagate(propagator.prepare(image), propagator.prepare(image), BOXES[:, :3])
    empty = propagator.propagate(propagator.prepare(image), propagator.prepare(image), np.empty((0, 4)))
    assert empty.boxes.shape == (0, 4) and empty.report.boxes == 0


def test_a_track_the_last_detector_call_missed_is_followed_but_not_shown_or_corrected_by_flow() -> None:
    """No detection says the person is still in a missed track's box: its flow is the occluder's or the
    background's, so with images the track keeps its Kalman prediction and is not shown until detected again;
    without images a miss is mostly a flicker, and the prediction is shown."""
    images, boxes = moving_patch_scene(6, 6.0)
    shown, lost = {}, {}
    for propagate in (False, True):
        stepper = IntervalTracker(ByteTracker(frame_rate=30), FlowPropagator() if propagate else None)
        assert stepper.include_missed == (not propagate)
        for t in range(4):
            stepper.update(images[t], boxes[t])
        stepper.update(images[4], np.empty((0, 5)))  # the detector misses the patch
        shown[propagate] = stepper.step(images[5])
        lost[propagate] = stepper.tracker.lost_tracks()
    assert len(shown[False]) == 1 and len(shown[True]) == 0
    # The lost track's state is the Kalman prediction in both (up to the flow mode's camera motion estimate).
    np.testing.assert_allclose(lost[True][:, :4], lost[False][:, :4], atol=0.1)
    assert abs(lost[True][0, 0] - boxes[5][0, 0]) > 1.0  # not moved onto the patch by the flow

    stepper = IntervalTracker(ByteTracker(frame_rate=30), FlowPropagator(), include_missed=True)
    for t in range(4):
        stepper.update(images[t], boxes[t])
    stepper.update(images[4], np.empty((0, 5)))
    np.testing.assert_allclose(stepper.step(images[5])[:, :4], lost[True][:, :4])  # shown on request, as predicted


@pytest.mark.parametrize("camera_motion", [True, False])
def test_detector_frames_are_compensated_for_the_camera_too(camera_motion: bool) -> None:
    """A still person under a camera panning 24 px a frame (their box is 30 px wide), detected every other
    frame: the detector frames must move the tracks by the camera's motion as the frames between do, or the
    person's detection lands a camera step off their track and a new id starts."""
    world = textured(600, 1600)
    stepper = IntervalTracker(ByteTracker(frame_rate=30),
                              FlowPropagator(PropagationConfig(camera_motion=camera_motion)))
    ids = []
    for i in range(16):
        x = 24 * i
        frame = world[60:540, x:x + 640]
        person = np.array([[600.0 - x, 260.0, 630.0 - x, 340.0, 0.9]])
        tracks = stepper.update(frame, person) if i % 2 == 0 else stepper.step(frame)
        ids.append(tuple(tracks[:, 4].astype(int).tolist()))
    if camera_motion:
        assert ids[1:] == [(1,)] * 15  # confirmed on the second frame, the same id to the end
    else:
        assert ids[-1] != (1,)  # without the camera's motion the id breaks
