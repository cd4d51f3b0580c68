"""MOTChallenge evaluation: protocol rules on small hand-made cases, and agreement with TrackEval on real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from int8track.apps.evaluation.metrics import (
    OVERALL,
    MotMetrics,
    accumulate,
    evaluate_sequence,
    evaluate_sequence_hota,
    summarize,
)
from int8track.apps.io.mot_results import write_results
from int8track.apps.io.motchallenge import MotAnnotations, MotSequence, load_sequence

from conftest import require_data

PED, STATIC_PERSON, CAR, NON_MOT_VEHICLE = 1, 7, 3, 6
BOX_A = (100.0, 100.0, 40.0, 100.0)  # x, y, w, h
BOX_B = (300.0, 100.0, 40.0, 100.0)


def _gt(rows: list[tuple], with_classes: bool = True) -> MotAnnotations:
    """gt rows (frame, id, box, consider, class)."""
    return MotAnnotations(
        path=Path("gt.txt"),
        frames=np.array([r[0] for r in rows], dtype=np.int64),
        ids=np.array([r[1] for r in rows], dtype=np.int64),
        boxes=np.array([r[2] for r in rows], dtype=float).reshape(-1, 4),
        scores=np.array([r[3] for r in rows], dtype=float),
        classes=np.array([r[4] for r in rows], dtype=np.int64) if with_classes else None,
        visibility=np.ones(len(rows)) if with_classes else None,
    )


def _results(rows: list[tuple]) -> MotAnnotations:
    """Tracker rows (frame, id, box)."""
    return MotAnnotations(
        path=Path("results.txt"),
        frames=np.array([r[0] for r in rows], dtype=np.int64),
        ids=np.array([r[1] for r in rows], dtype=np.int64),
        boxes=np.array([r[2] for r in rows], dtype=float).reshape(-1, 4),
        scores=np.ones(len(rows)),
        classes=None,
        visibility=None,
    )


def _score(gt: MotAnnotations, results: MotAnnotations, frames: int = 1, benchmark: str = "MOT17") -> MotMetrics:
    return summarize({"seq": accumulate(gt, results, frames, benchmark)})["seq"]


def _counts(m: MotMetrics) -> tuple[int, int, int, int]:
    """(gt boxes scored, tracker boxes scored, FP, FN)."""
    return m.num_objects, m.num_predictions, m.num_false_positives, m.num_misses


# ---------------------------------------------------------------------------------------------- protocol


def test_numpy2_shim_makes_motmetrics_iou_work() -> None:
    import motmetrics as mm

    assert np.asfarray([1, 2]).dtype == np.float64
    distance = mm.distances.iou_matrix([[0, 0, 10, 10]], [[5, 0, 10, 10]], max_iou=1.0)
    np.testing.assert_allclose(distance, [[1 - 50 / 150]])


def test_tracker_box_on_a_distractor_is_not_a_false_positive() -> None:
    gt = _gt([(1, 1, BOX_A, 1, PED), (1, 2, BOX_B, 0, STATIC_PERSON)])
    tracks = _results([(1, 1, BOX_A), (1, 2, BOX_B)])
    assert _counts(_score(gt, tracks)) == (1, 1, 0, 0)


def test_tracker_box_on_an_ignored_non_distractor_still_counts_as_false_positive() -> None:
    """TrackEval removes tracker boxes only on distractor classes; a car (or consider=0 pedestrian) box is an FP."""
    for ignored in [(1, 2, BOX_B, 0, CAR), (1, 2, BOX_B, 0, PED)]:
        gt = _gt([(1, 1, BOX_A, 1, PED), ignored])
        assert _counts(_score(gt, _results([(1, 1, BOX_A), (1, 7, BOX_B)]))) == (1, 2, 1, 0)


def test_consider_zero_and_non_pedestrian_gt_are_not_misses() -> None:
    gt = _gt([(1, 1, BOX_A, 0, PED), (1, 2, BOX_B, 1, CAR)])
    assert _counts(_score(gt, _results([]))) == (0, 0, 0, 0)
    gt = _gt([(1, 1, BOX_A, 1, PED), (1, 2, BOX_B, 1, PED)])
    assert _counts(_score(gt, _results([]))) == (2, 0, 0, 2)


def test_distractor_matching_is_one_to_one_and_prefers_the_best_iou() -> None:
    """A box overlapping a pedestrian (IoU 0.9) and a static person (IoU ~0.6) is matched to the pedestrian."""
    shifted = (102.0, 100.0, 40.0, 100.0)  # IoU 38/42 with BOX_A
    distractor = (112.0, 100.0, 40.0, 100.0)  # IoU 30/50 with `shifted`
    gt = _gt([(1, 1, BOX_A, 1, PED), (1, 2, distractor, 0, STATIC_PERSON)])
    m = _score(gt, _results([(1, 5, shifted)]))
    assert _counts(m) == (1, 1, 0, 0) and m.motp == pytest.approx(38 / 42)


def test_mot15_has_no_class_preprocessing() -> None:
    gt = _gt([(1, 1, BOX_A, 1, 0), (1, 2, BOX_B, 0, 0)], with_classes=False)
    assert _counts(_score(gt, _results([(1, 1, BOX_A), (1, 2, BOX_B)]), benchmark="MOT15")) == (1, 2, 1, 0)
    with pytest.raises(ValueError, match="MOT15"):
        _score(gt, _results([]), benchmark="MOT17")


def test_non_mot_vehicle_is_a_distractor_only_in_mot20() -> None:
    gt = _gt([(1, 1, BOX_B, 0, NON_MOT_VEHICLE)])
    tracks = _results([(1, 1, BOX_B)])
    assert _score(gt, tracks, benchmark="MOT17").num_false_positives == 1
    assert _score(gt, tracks, benchmark="MOT20").num_false_positives == 0


def test_iou_threshold_is_inclusive_at_one_half() -> None:
    gt = _gt([(1, 1, (0.0, 0.0, 10.0, 10.0), 1, PED)])
    assert _counts(_score(gt, _results([(1, 1, (0.0, 0.0, 10.0, 20.0))]))) == (1, 1, 0, 0)  # IoU = 0.5
    assert _counts(_score(gt, _results([(1, 1, (0.0, 0.0, 10.0, 20.2))]))) == (1, 1, 1, 1)  # IoU < 0.5


def test_id_switch_mota_and_overall_row() -> None:
    gt = _gt([(f, 1, BOX_A, 1, PED) for f in (1, 2, 3)] + [(f, 2, BOX_B, 1, PED) for f in (1, 2, 3)])
    tracks = _results([(1, 1, BOX_A), (2, 1, BOX_A), (3, 3, BOX_A), (1, 2, BOX_B), (2, 2, BOX_B)])
    acc = accumulate(gt, tracks, 3)
    summary = summarize({"a": acc, "b": accumulate(gt, _results([]), 3)})
    a = summary["a"]
    assert (a.num_switches, a.num_false_positives, a.num_misses, a.num_unique_objects) == (1, 0, 1, 2)
    assert a.mota == pytest.approx(1 - (1 + 1) / 6)
    overall = summary[OVERALL]
    assert (overall.num_objects, overall.num_misses, overall.num_switches) == (12, 7, 1)
    assert overall.mota == pytest.approx(1 - (7 + 1) / 12)  # pooled events, not the mean of the two MOTAs


def test_bad_evaluation_input_is_a_clear_error() -> None:
    gt = _gt([(1, 1, BOX_A, 1, PED)])
    with pytest.raises(ValueError, match="outside the sequence's frames 1..2"):
        accumulate(gt, _results([(3, 1, BOX_A)]), 2)
    with pytest.raises(ValueError, match="invalid MOTChallenge gt classes"):
        accumulate(_gt([(1, 1, BOX_A, 1, 42)]), _results([]), 1)
    with pytest.raises(ValueError, match="unknown benchmark"):
        accumulate(gt, _results([]), 1, benchmark="KITTI")


# ---------------------------------------------------------------------------------------------- TrackEval cross-check


def _track_public_detections(sequence: MotSequence, path: Path) -> Path:
    from int8track.tracker import ByteTracker

    tracker = ByteTracker(frame_rate=sequence.frame_rate)
    return write_results(path, ((frame, tracker.update(dets))
                                for frame, dets in enumerate(sequence.detections(), start=1)))


def _perturbed_ground_truth(sequence: MotSequence, path: Path, seed: int = 17) -> Path:
    """All gt rows (every class) with deterministic damage: 10% dropped, 3 px jitter, 2% false boxes, id swaps.

    From the middle frame on, the ids alive there are exchanged in pairs (identity switches).
    """
    rng = np.random.default_rng(seed)
    gt = sequence.ground_truth()
    keep = rng.random(len(gt)) > 0.1
    ids = gt.ids.copy()
    middle = sequence.length // 2
    swap = gt.frames > middle
    alive = np.sort(gt.ids[gt.frames == middle])
    for a, b in zip(alive[0::2], alive[1::2]):
        ids[swap & (gt.ids == a)], ids[swap & (gt.ids == b)] = b, a
    boxes = gt.boxes + rng.normal(0, 3, gt.boxes.shape) * [1, 1, 0.5, 0.5]
    rows = [(frame, np.column_stack([boxes[m, :2], boxes[m, :2] + boxes[m, 2:], ids[m], np.ones(m.sum())]))
            for frame in range(1, sequence.length + 1) for m in [keep & (gt.frames == frame)]]
    false_frames = rng.integers(1, sequence.length + 1, len(gt) // 50)
    for k, frame in enumerate(false_frames):
        xy = rng.uniform(0, 600, 2)
        rows[frame - 1] = (frame, np.vstack([rows[frame - 1][1], [*xy, *(xy + [30, 80]), 10_000 + k, 0.5]]))
    return write_results(path, rows)


def _trackeval_scores(gt_folder: Path, results: dict[str, Path], lengths: dict[str, int], benchmark: str) -> dict:
    """TrackEval (the official MOTChallenge evaluation) on our results files: {sequence or COMBINED_SEQ: metrics}."""
    trackeval = pytest.importorskip("trackeval")
    trackers_folder = next(iter(results.values())).parents[2]
    evaluator = trackeval.Evaluator({"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False,
                                     "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
                                     "PLOT_CURVES": False, "LOG_ON_ERROR": None})
    dataset = trackeval.datasets.MotChallenge2DBox({
        "GT_FOLDER": str(gt_folder), "TRACKERS_FOLDER": str(trackers_folder), "TRACKERS_TO_EVAL": ["ours"],
        "SKIP_SPLIT_FOL": True, "SEQ_INFO": dict(lengths), "BENCHMARK": benchmark, "PRINT_CONFIG": False})
    metrics = [trackeval.metrics.CLEAR({"PRINT_CONFIG": False}), trackeval.metrics.Identity({"PRINT_CONFIG": False}),
               trackeval.metrics.HOTA({"PRINT_CONFIG": False})]
    output, _ = evaluator.evaluate([dataset], metrics)
    return {name: {**value["pedestrian"]["CLEAR"], **value["pedestrian"]["Identity"],
                   **{key: float(np.mean(v)) for key, v in value["pedestrian"]["HOTA"].items()}}
            for name, value in output["MotChallenge2DBox"]["ours"].items()}


CROSS_CHECKS = {
    "MOT17 ByteTracker on public detections": ("MOT17/train", ["MOT17-05-FRCNN", "MOT17-09-FRCNN"], "MOT17",
                                               _track_public_detections),
    # boxes on every gt class: exercises distractor removal (MOT17-09 has ~4000 distractor/static/reflection rows)
    "MOT17 perturbed ground truth": ("MOT17/train", ["MOT17-09-FRCNN"], "MOT17", _perturbed_ground_truth),
    "MOT15 perturbed ground truth": ("MOT15/train", ["PETS09-S2L1"], "MOT15", _perturbed_ground_truth),
}


@pytest.mark.parametrize("case", list(CROSS_CHECKS))
def test_metrics_agree_with_trackeval(case: str, tmp_path: Path) -> None:
    folder, names, benchmark, make_results = CROSS_CHECKS[case]
    gt_folder = require_data(folder)
    sequences = {name: load_sequence(gt_folder / name) for name in names}
    results = {name: make_results(seq, tmp_path / "ours" / "data" / f"{name}.txt") for name, seq in sequences.items()}
    ours = summarize({name: evaluate_sequence(seq, results[name]) for name, seq in sequences.items()},
                     {name: evaluate_sequence_hota(seq, results[name]) for name, seq in sequences.items()})
    reference = _trackeval_scores(gt_folder, results, {n: s.length for n, s in sequences.items()}, benchmark)

    for name in names + [OVERALL]:
        mine, theirs = ours[name], reference[name if name != OVERALL else "COMBINED_SEQ"]
        assert mine.num_objects == theirs["CLR_TP"] + theirs["CLR_FN"], name  # same gt kept by the protocol
        assert mine.num_objects > 1000 and mine.num_switches > 0, name  # a real test: many boxes, some switches
        assert 100 * mine.mota == pytest.approx(100 * theirs["MOTA"], abs=0.1), name
        assert 100 * mine.idf1 == pytest.approx(100 * theirs["IDF1"], abs=0.1), name
        assert abs(mine.num_switches - theirs["IDSW"]) <= 1, name
        assert abs(mine.num_false_positives - theirs["CLR_FP"]) <= max(2, mine.num_objects // 2000), name
        assert abs(mine.num_misses - theirs["CLR_FN"]) <= max(2, mine.num_objects // 2000), name
        for ours_value, key in ((mine.hota, "HOTA"), (mine.deta, "DetA"), (mine.assa, "AssA")):
            assert 100 * ours_value == pytest.approx(100 * theirs[key], abs=0.01), (name, key)


def test_command_line_scores_a_results_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from int8track.apps.evaluation.metrics import main

    data = require_data("MOT17-mini/train")
    sequence = load_sequence(data / "MOT17-05-FRCNN")
    results = _track_public_detections(sequence, tmp_path / "res" / "MOT17-05-FRCNN.txt")
    assert main(["--data", str(data), "--results", str(tmp_path / "res"), "--json", str(tmp_path / "m.json")]) == 0
    expected = summarize({sequence.name: evaluate_sequence(sequence, results)},
                         {sequence.name: evaluate_sequence_hota(sequence, results)})
    assert json.loads((tmp_path / "m.json").read_text()) == {k: v.to_dict() for k, v in expected.items()}
    assert "MOT17-05-FRCNN" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(data), "--results", str(tmp_path / "missing")])
    assert exit_info.value.code == 1 and "no results for sequence MOT17-05-FRCNN" in capsys.readouterr().err
