"""When the detector runs: fixed intervals, auto's time cap and reliability triggers, the live budget."""
from __future__ import annotations

import pytest

from int8track.tracker.propagation import PropagationReport
from int8track.tracker.schedule import DetectionSchedule, DetectionScheduler, min_every_for_budget

GOOD = PropagationReport(boxes=10, flowed=10, fallback=0, kept_ratio=0.9, median_fb_error=0.2)
LOST = PropagationReport(boxes=10, flowed=3, fallback=7, kept_ratio=0.3, median_fb_error=2.0)


def _pattern(scheduler: DetectionScheduler, reports, frames: int) -> list[bool]:
    out = []
    for index in range(frames):
        detected = scheduler.due(reports(index))
        scheduler.record(detected, 0.01)
        out.append(detected)
    return out


@pytest.mark.parametrize("every", [1, 2, 3, 5])
def test_a_fixed_interval_detects_on_frames_0_k_2k(every):
    pattern = _pattern(DetectionScheduler(DetectionSchedule(every=every), fps=30), lambda i: LOST, 20)
    assert [i for i, d in enumerate(pattern) if d] == list(range(0, 20, every))  # unreliable flow changes nothing


def test_dropped_frames_count_toward_the_interval():
    scheduler = DetectionScheduler(DetectionSchedule(every=3), fps=10)
    assert scheduler.due(None)
    scheduler.record(True, 0.02)
    assert not scheduler.due(GOOD, frames_advanced=1)
    scheduler.record(False, 0.002)
    assert scheduler.due(GOOD, frames_advanced=2)  # a live reader dropped a frame: 3 frames since the detection


@pytest.mark.parametrize("fps, longest", [(7, 1), (10, 2), (14, 2), (25, 5), (30, 6), (None, 3)])
def test_auto_caps_the_gap_by_time(fps, longest):
    schedule = DetectionSchedule.parse("auto")
    assert schedule.max_interval(fps) == longest
    pattern = _pattern(DetectionScheduler(schedule, fps=fps), lambda i: GOOD, 30)
    detected = [i for i, d in enumerate(pattern) if d]
    assert detected[0] == 0 and all(b - a == longest for a, b in zip(detected, detected[1:]))


def test_auto_detects_sooner_when_the_flow_loses_the_boxes():
    scheduler = DetectionScheduler(DetectionSchedule.parse("auto"), fps=30)  # at most every 6th frame
    reports = {3: LOST}
    pattern = _pattern(scheduler, lambda i: reports.get(i - 1, GOOD), 12)
    # the flow was unreliable on frame 3, so frame 4 is detected; then the cap counts from there
    assert [i for i, d in enumerate(pattern) if d] == [0, 4, 10]


def test_budget_interval_keeps_a_live_source_current():
    assert min_every_for_budget(detect_s=0.05, step_s=0.002, fps=10) == 1  # 50 ms fits a 100 ms period
    # 250 ms detector, 5 ms propagation, 10 fps: K frames cost 250 + 5 (K - 1) ms <= 100 K ms from K = 3
    k = min_every_for_budget(detect_s=0.25, step_s=0.005, fps=10)
    assert k == 3 and 0.25 + 0.005 * (k - 1) <= k * 0.1 and 0.25 + 0.005 * (k - 2) > (k - 1) * 0.1
    assert min_every_for_budget(detect_s=0.25, step_s=0.2, fps=10) > 100  # propagation alone is too slow


def test_on_a_live_source_auto_never_detects_sooner_than_the_budget():
    scheduler = DetectionScheduler(DetectionSchedule.parse("auto"), fps=30, live=True)
    detected = []
    for index in range(40):
        due = scheduler.due(LOST if index else None)  # the flow always asks for a detection
        scheduler.record(due, 0.1 if due else 0.005)  # 100 ms detector at 30 fps: budget K = 4
        if due:
            detected.append(index)
    assert detected[:2] == [0, 4]  # the first call measures the detector: 4 frames' budget from then on
    assert {b - a for a, b in zip(detected, detected[1:])} == {4}


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", ""])
def test_bad_intervals_are_one_line_errors(text):
    with pytest.raises(ValueError, match="whole number >= 1 or 'auto'"):
        DetectionSchedule.parse(text)
    assert DetectionSchedule.parse(" AUTO ").every is None and DetectionSchedule.parse("4").every == 4


def test_on_a_live_source_the_budget_stretches_the_accuracy_cap():
    # 7 fps allows no gap for accuracy (cap 1), but a 350 ms detector cannot run on every 143 ms frame: the
    # pipeline keeps every frame by detecting on every third one (350 + 2 x 5 ms <= 3 x 143 ms)
    scheduler = DetectionScheduler(DetectionSchedule.parse("auto"), fps=7, live=True)
    detected = []
    for index in range(30):
        due = scheduler.due(GOOD if index else None)
        scheduler.record(due, 0.35 if due else 0.005)
        if due:
            detected.append(index)
    assert scheduler.max_interval == 1 and {b - a for a, b in zip(detected, detected[1:])} == {3}


def test_on_a_live_source_auto_detects_every_frame_the_machine_affords():
    """A file at 10 fps is detected on every other frame (the 0.2 s cap); a live camera whose detector fits the
    100 ms period is detected on every frame: a propagated frame there would only cost accuracy."""
    patterns = {}
    for live in (False, True):
        scheduler = DetectionScheduler(DetectionSchedule.parse("auto"), fps=10, live=live)
        detected = []
        for index in range(20):
            due = scheduler.due(GOOD if index else None)
            scheduler.record(due, 0.04 if due else 0.003)
            detected.append(due)
        patterns[live] = detected
    assert sum(patterns[False]) == 10 and all(patterns[True])


@pytest.mark.parametrize(("text", "cmc", "expected"), [
    ("1", None, True), ("1", True, True), ("1", False, False),
    # between detector calls the flow follows the camera: the tracker's own compensation never runs there
    ("2", None, False), ("2", True, False), ("auto", True, False)])
def test_the_tracker_compensates_the_camera_only_where_the_detector_runs_on_every_frame(text, cmc, expected):
    assert DetectionSchedule.parse(text).tracker_cmc(cmc) is expected
