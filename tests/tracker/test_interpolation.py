"""Offline gap filling (tracker.interpolation): hand-computed fills, untouched tracks, the bend/jitter gate, GSI."""
from __future__ import annotations

import numpy as np
import pytest

from int8track.apps.io.mot_results import write_results
from int8track.apps.io.motchallenge import read_results
from int8track.tracker.interpolation import (
    InterpolationConfig,
    bridge_error,
    duplicates,
    interpolate_results,
    interpolate_table,
    smooth_track,
)

BLIND = InterpolationConfig(max_error=None, max_overlap=None)


def mot_rows(track_id: int, frames, boxes, score: float = 0.9) -> np.ndarray:
    """MOT result rows ``frame, id, x, y, w, h, score, -1, -1, -1``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    return np.column_stack((np.asarray(frames, float), np.full(n, track_id), boxes, np.full(n, score),
                            -np.ones((n, 3))))


def walker(track_id: int, frames, x0: float = 100.0, vx: float = 2.0, w: float = 40.0, h: float = 100.0):
    frames = np.asarray(frames, float)
    return mot_rows(track_id, frames, np.column_stack((x0 + vx * frames, np.full(frames.size, 50.0),
                                                       np.full(frames.size, w), np.full(frames.size, h))))


def test_gap_filled_with_hand_computed_values() -> None:
    rows = np.concatenate((mot_rows(7, [10], [[100, 50, 40, 100]], score=0.8),
                           mot_rows(7, [14], [[120, 70, 48, 108]], score=0.4)))
    out = interpolate_results(rows, BLIND)
    expected = np.array([
        [10, 7, 100, 50, 40, 100, 0.8, -1, -1, -1],
        [11, 7, 105, 55, 42, 102, 0.7, -1, -1, -1],
        [12, 7, 110, 60, 44, 104, 0.6, -1, -1, -1],
        [13, 7, 115, 65, 46, 106, 0.5, -1, -1, -1],
        [14, 7, 120, 70, 48, 108, 0.4, -1, -1, -1],
    ])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_tracks_without_gaps_are_unchanged_and_output_is_sorted() -> None:
    a, b = walker(1, range(1, 30)), walker(2, range(5, 20), x0=400, vx=-1)
    rows = np.concatenate((b, a))[::-1]  # any input order
    out = interpolate_results(rows, InterpolationConfig())
    reference = np.concatenate((a, b))
    np.testing.assert_array_equal(out, reference[np.lexsort((reference[:, 1], reference[:, 0]))])
    assert (np.diff(out[:, 0]) >= 0).all()


def test_gaps_longer_than_max_gap_are_untouched() -> None:
    frames = [*range(1, 11), *range(16, 26), *range(47, 60)]  # gaps of 5 and 21 frames missing
    rows = walker(3, frames)
    out = interpolate_results(rows, InterpolationConfig(max_gap=20))
    assert set(out[:, 0].astype(int)) == set(range(1, 26)) | set(range(47, 60))
    # the filled frames lie on the walker's straight line, exactly
    np.testing.assert_allclose(out, walker(3, sorted(set(range(1, 26)) | set(range(47, 60)))), atol=1e-9)
    assert len(interpolate_results(rows, InterpolationConfig(max_gap=4))) == len(rows)
    assert len(interpolate_results(rows, InterpolationConfig(max_gap=21))) == 59


def test_output_is_mot_format(tmp_path) -> None:
    rows = np.concatenate((walker(1, [1, 2, 3, 6, 7, 8]), walker(2, [2, 3, 5, 6], x0=500)))
    out = interpolate_results(rows)
    assert out.shape[1] == rows.shape[1] and out.dtype == np.float64
    assert (out[:, :2] == np.round(out[:, :2])).all()
    path = write_results(tmp_path / "seq.txt", [(int(f), _as_tracks(out[out[:, 0] == f]))
                                                for f in np.unique(out[:, 0])])
    back = read_results(path)  # the project's own MOT reader accepts it
    assert len(back) == len(out) == 13  # 10 rows + 2 + 1 filled
    np.testing.assert_allclose(back.boxes, out[:, 2:6], atol=0.005)


def _as_tracks(rows: np.ndarray) -> np.ndarray:
    """MOT rows back to tracker output columns x1, y1, x2, y2, id, score (for write_results)."""
    return np.column_stack((rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6], rows[:, 1], rows[:, 6]))


def test_empty_and_six_column_input() -> None:
    assert interpolate_results(np.empty((0, 10))).shape == (0, 10)
    six = walker(1, [1, 4])[:, :6]
    assert interpolate_results(six, BLIND).shape == (4, 6)


@pytest.mark.parametrize(("rows", "message"), [
    (np.zeros((3, 5)), r"\(N, >=6\)"),
    (np.array([[1.5, 1, 0, 0, 1, 1]]), "frame column must hold integers"),
    (np.array([[0, 1, 0, 0, 1, 1]]), "frames start at 1"),
    (np.array([[1, 1, 0, 0, 1, 1], [1, 1, 5, 5, 1, 1]]), "twice on the same frame"),
    (np.array([[1, 1, np.nan, 0, 1, 1]]), "must be finite"),
    (np.array([[1, 1, 0, 0, -1, 1]]), "width and height must be >= 0"),
    ([["a", "b", "c", "d", "e", "f"]], "must be numeric"),
])
def test_bad_rows_raise(rows, message) -> None:
    with pytest.raises(ValueError, match=message):
        interpolate_results(rows)


def test_config_must_be_an_interpolation_config() -> None:
    with pytest.raises(ValueError, match="InterpolationConfig"):
        interpolate_results(walker(1, [1, 3]), {"max_gap": 5})  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [
    ("method", "cubic"), ("max_gap", 0), ("max_gap", 2.5), ("tau", 0.0), ("tau", float("nan")),
    ("max_error", -0.1), ("window", 1), ("max_overlap", 0),
])
def test_config_is_validated(field, value) -> None:
    with pytest.raises(ValueError, match=field if field != "method" else "method"):
        InterpolationConfig(**{field: value})


# ---------------------------------------------------------------------------------------------------------------
# The gate: a straight line only where the track moved straight
# ---------------------------------------------------------------------------------------------------------------

def test_straight_walker_is_bridged_turning_one_is_not() -> None:
    frames = np.array([*range(1, 11), *range(30, 40)])  # 19 frames missing
    assert len(interpolate_results(walker(1, frames))) == 39
    # The path turns in the gap (a turn, or a panning camera): 2 px/frame right up to frame 10, 2 px/frame down
    # from frame 30, and the ends 20 px apart on each axis. Chord velocity (1, 1), so per bridge_error the bend
    # is |(2, 0) - (1, 1)| * 20 / 4 = 5 px on each axis: 5 / 40 = 0.125 box widths is within max_error 0.15,
    # 5 / 24 = 0.21 is not. Blind interpolation fills both.
    t = frames.astype(float)
    centres = np.where((t <= 10)[:, None], np.column_stack((2 * t, 0 * t)), np.column_stack((40 + 0 * t, 2 * t - 40)))
    for width, bridged in ((40.0, True), (24.0, False)):
        size = np.column_stack((np.full(t.size, width), np.full(t.size, 100.0)))
        rows = mot_rows(2, frames, np.column_stack((centres - size / 2, size)))
        assert bridge_error(t, centres, size, 9, 5) == pytest.approx(5 / width)
        assert (len(interpolate_results(rows)) == 39) is bridged
        assert len(interpolate_results(rows, BLIND)) == 39


def test_jittery_small_box_is_not_bridged() -> None:
    rng = np.random.default_rng(0)
    frames = np.array([*range(1, 11), *range(14, 24)])
    rows = walker(4, frames, w=20, h=50)
    assert len(interpolate_results(rows)) == 23  # the same walker without noise is bridged
    rows[:, 2] += rng.normal(0, 4.0, len(rows))  # 4 px of detector noise on a 20 px wide box
    assert len(interpolate_results(rows)) == 20
    assert len(interpolate_results(rows, InterpolationConfig(max_error=1.0))) == 23


def test_filled_boxes_on_another_tracks_box_are_left_out() -> None:
    """Two tracks holding one walker in turn: each one's gap is where the other has the detection."""
    a = walker(1, [*range(1, 11), *range(16, 26)])
    b = walker(2, range(11, 16))
    b[:, 2] += 4.0  # 4 px to the right: IoU (36 / 44) = 0.82 with track 1's filled box
    c = walker(3, range(1, 26), x0=400)  # someone else, far away
    rows = np.concatenate((a, b, c))
    out = interpolate_results(rows)
    assert len(out) == len(rows)  # track 1's gap 11-15 not filled: track 2 is there
    kept = interpolate_results(rows, InterpolationConfig(max_overlap=0.9))
    assert len(kept) == len(rows) + 5
    # with track 2 elsewhere, the gap is filled
    b[:, 3] += 300.0
    assert len(interpolate_results(np.concatenate((a, b, c)))) == len(rows) + 5


def test_duplicates_compares_filled_rows_with_real_rows_of_other_ids() -> None:
    rows = np.concatenate((walker(1, [1, 2]), walker(2, [1, 2])))  # two tracks on the same boxes
    is_new = np.array([False, True, False, False])
    assert duplicates(rows, is_new, 0.5).tolist() == [False, True, False, False]
    assert not duplicates(rows[:2], is_new[:2], 0.5).any()  # its own real rows do not count


def test_zero_size_box_is_never_an_end_of_a_bridge() -> None:
    rows = walker(6, [1, 2, 3, 4, 8, 9, 10, 11])
    rows[3, 4] = 0.0  # a results file rounds a tiny box to width 0.00
    out = interpolate_results(rows)
    assert len(out) == len(rows)
    assert len(interpolate_results(rows, BLIND)) == 11


def test_isolated_ends_are_not_trusted() -> None:
    """A gap between single rows (no motion known at either end) is left open unless the gate is off."""
    rows = walker(5, [1, 8])
    assert len(interpolate_results(rows)) == 2
    assert len(interpolate_results(rows, BLIND)) == 8


# ---------------------------------------------------------------------------------------------------------------
# GSI
# ---------------------------------------------------------------------------------------------------------------

def test_gsi_reduces_jitter_of_a_noisy_straight_track() -> None:
    rng = np.random.default_rng(0)
    frames = np.arange(1, 121)
    clean = walker(1, frames)
    noisy = clean.copy()
    noisy[:, 2:6] += rng.normal(0, 2.0, (len(frames), 4))
    out = interpolate_results(noisy, InterpolationConfig(method="gsi", tau=5.0))
    error_before = np.sqrt(np.mean(np.square(noisy[:, 2:6] - clean[:, 2:6])))
    error_after = np.sqrt(np.mean(np.square(out[:, 2:6] - clean[:, 2:6])))
    assert error_after < 0.5 * error_before
    # frame-to-frame jitter of x (second difference) drops too
    assert np.std(np.diff(out[:, 2], 2)) < 0.3 * np.std(np.diff(noisy[:, 2], 2))
    np.testing.assert_array_equal(out[:, [0, 1, 6, 7, 8, 9]], noisy[:, [0, 1, 6, 7, 8, 9]])


def test_gsi_keeps_parabolas_and_fills_gaps() -> None:
    frames = np.array([*range(1, 30), *range(36, 60)], dtype=float)
    x = 100 + 3 * frames + 0.05 * frames ** 2  # accelerating: a weighted mean would lag, a parabola fit does not
    np.testing.assert_allclose(smooth_track(frames, x[:, None], 5.0)[:, 0], x, atol=1e-7)
    rows = mot_rows(1, frames, np.column_stack((x, np.full(frames.size, 50.0), np.full(frames.size, 40.0),
                                                np.full(frames.size, 100.0))))
    out = interpolate_results(rows, InterpolationConfig(method="gsi", max_error=None))
    assert out[:, 0].tolist() == list(range(1, 60))


def test_propagated_rows_are_redrawn_between_detections_and_kept_elsewhere() -> None:
    """``track --detect-every 2 --interpolate``: a box no detection placed is redrawn from the detected boxes on
    both sides; where there is no later detection (the track's end) or the gap is too long, it stays."""
    truth = walker(4, range(1, 12))  # detector frames 1, 3, 5, 7, 9, 11: the truth there
    rows = truth.copy()
    between = (rows[:, 0] - 1) % 2 == 1
    rows[between, 2] += 7.0  # flow boxes 7 px off on the frames between detector calls
    tail = walker(4, [12])
    tail[:, 2] += 7.0  # after the last detection: nothing to redraw it from
    rows = np.concatenate((rows, tail))
    propagated = np.concatenate((between, [True]))
    out = interpolate_results(rows, InterpolationConfig(), propagated)
    np.testing.assert_allclose(out[:11], truth, rtol=0, atol=1e-9)  # redrawn onto the straight walk
    np.testing.assert_array_equal(out[11], tail[0])  # kept as it was
    counts = interpolate_table(rows, InterpolationConfig(), propagated)
    assert (counts.added, counts.redrawn) == (0, 5) and np.array_equal(counts.rows, out)  # frames 2, 4, ..., 10
    # a gap longer than max_gap keeps its propagated boxes as they were
    only_ends = np.ones(len(rows), bool)
    only_ends[[0, 10]] = False  # detections on frames 1 and 11 only: 9 frames between
    np.testing.assert_array_equal(interpolate_results(rows, InterpolationConfig(max_gap=5), only_ends), rows)
    with pytest.raises(ValueError, match="propagated"):
        interpolate_results(rows, InterpolationConfig(), propagated[:-1])


def test_a_redrawn_box_on_another_tracks_box_keeps_the_propagated_one() -> None:
    """The duplicate rule holds for redrawn boxes: landing on another track, the propagated box stays."""
    a = walker(1, [1, 2, 3])
    b = walker(2, [2], x0=104.0)  # another track's detected box where a's line passes on frame 2
    a_prop = a.copy()
    a_prop[1, 2] += 30.0  # the flow box off to the side
    rows = np.concatenate((a_prop, b))
    out = interpolate_results(rows, InterpolationConfig(), np.array([False, True, False, False]))
    np.testing.assert_array_equal(out[out[:, 1] == 1], a_prop)
