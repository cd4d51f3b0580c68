"""MOTChallenge reading and writing, checked against plain line-by-line parsing of the real files."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from int8track.apps.io.mot_results import MotResultWriter, format_tracks, write_results
from int8track.apps.io.motchallenge import (
    find_sequences,
    load_sequence,
    read_ground_truth,
    read_mot_table,
    read_results,
)

from conftest import require_data

MOT17_05 = "MOT17/train/MOT17-05-FRCNN"
MINI_05 = "MOT17-mini/train/MOT17-05-FRCNN"
PETS = "MOT15/train/PETS09-S2L1"


def _csv_rows(path: Path) -> list[list[float]]:
    with open(path, newline="") as handle:
        return [[float(value) for value in row] for row in csv.reader(handle) if row]


# ---------------------------------------------------------------------------------------------- sequences


def test_find_sequences_lists_every_sequence_and_accepts_a_sequence_root() -> None:
    root = require_data("")
    names = [(s.root.parent.parent.name, s.name) for s in find_sequences(root)]
    assert ("MOT15", "PETS09-S2L1") in names and ("MOT17-mini", "MOT17-05-FRCNN") in names
    assert sorted(n for d, n in names if d == "MOT17") == [f"MOT17-{k}-FRCNN" for k in
                                                           ("02", "04", "05", "09", "10", "11", "13")]
    single = find_sequences(require_data(MOT17_05))
    assert [s.root for s in single] == [require_data(MOT17_05)]


def test_find_sequences_without_sequences_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no MOTChallenge sequence"):
        find_sequences(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        find_sequences(tmp_path / "missing")


def test_seqinfo_values() -> None:
    seq = load_sequence(require_data(MOT17_05))
    assert (seq.name, seq.frame_rate, seq.length, seq.width, seq.height) == ("MOT17-05-FRCNN", 14.0, 837, 640, 480)
    pets = load_sequence(require_data(PETS))
    assert (pets.name, pets.frame_rate, pets.length, pets.width, pets.height) == ("PETS09-S2L1", 7.0, 795, 768, 576)


def test_image_paths() -> None:
    mini = load_sequence(require_data(MINI_05)).image_paths()
    assert len(mini) == 48 and mini[0].name == "000001.jpg" and mini[-1].name == "000048.jpg"
    assert all(p.is_file() for p in mini)
    assert len(load_sequence(require_data(PETS)).image_paths()) == 795
    with pytest.raises(FileNotFoundError, match="no image folder"):
        load_sequence(require_data(MOT17_05)).image_paths()


def _link_sequence_without_seqinfo(source: Path, target: Path, with_images: bool) -> None:
    """A MOT15-style folder (no seqinfo.ini) made of links to the real files."""
    (target / "det").mkdir(parents=True)
    (target / "det" / "det.txt").symlink_to(source / "det" / "det.txt")
    if with_images:
        (target / "img1").symlink_to(source / "img1")


def test_missing_seqinfo_is_inferred_from_images(tmp_path: Path) -> None:
    _link_sequence_without_seqinfo(require_data(MINI_05), tmp_path / "seq", with_images=True)
    with pytest.warns(UserWarning, match="assuming 30 fps"):
        seq = load_sequence(tmp_path / "seq")
    assert (seq.name, seq.length, seq.width, seq.height, seq.frame_rate) == ("seq", 48, 640, 480, 30.0)
    assert len(seq.image_paths()) == 48


def test_missing_seqinfo_without_images_uses_last_annotated_frame(tmp_path: Path) -> None:
    _link_sequence_without_seqinfo(require_data(MOT17_05), tmp_path / "seq", with_images=False)
    with pytest.warns(UserWarning):
        seq = load_sequence(tmp_path / "seq")
    last_det_frame = max(int(row[0]) for row in _csv_rows(require_data(MOT17_05) / "det" / "det.txt"))
    assert seq.length == last_det_frame and seq.width is None and seq.height is None


def test_folder_with_nothing_to_infer_from_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "img1").mkdir()
    with pytest.raises(ValueError, match="cannot tell the sequence length"):
        load_sequence(tmp_path)


def test_bad_seqinfo_value_is_named(tmp_path: Path) -> None:
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nname=x\nframeRate=fast\nseqLength=10\n")
    with pytest.raises(ValueError, match=r"seqinfo.ini: frameRate='fast'"):
        load_sequence(tmp_path)


# ---------------------------------------------------------------------------------------------- detections / gt


@pytest.mark.parametrize("relative", [MOT17_05, PETS])
def test_detections_grouped_per_frame_match_line_by_line_parse(relative: str) -> None:
    seq = load_sequence(require_data(relative))
    rows = _csv_rows(seq.det_path)
    assert [int(r[0]) for r in rows] != sorted(int(r[0]) for r in rows) or relative == PETS  # MOT17: unsorted
    per_frame = seq.detections()
    assert len(per_frame) == seq.length
    expected: dict[int, list[list[float]]] = {}
    for r in rows:
        expected.setdefault(int(r[0]), []).append([r[2], r[3], r[2] + r[4], r[3] + r[5], r[6]])
    for frame in range(1, seq.length + 1):
        got = per_frame[frame - 1]
        assert got.shape == (len(expected.get(frame, [])), 5)
        np.testing.assert_allclose(got, np.array(expected.get(frame, [])).reshape(-1, 5))


def test_mot17_ground_truth_columns() -> None:
    gt = load_sequence(require_data(MOT17_05)).ground_truth()
    rows = np.array(_csv_rows(gt.path))
    assert len(gt) == len(rows) == 8013
    np.testing.assert_array_equal(gt.frames, rows[:, 0])
    np.testing.assert_array_equal(gt.ids, rows[:, 1])
    np.testing.assert_array_equal(gt.boxes, rows[:, 2:6])
    np.testing.assert_array_equal(gt.consider, rows[:, 6] != 0)
    np.testing.assert_array_equal(gt.classes, rows[:, 7])
    np.testing.assert_array_equal(gt.visibility, rows[:, 8])
    by_frame = gt.rows_by_frame()
    assert sorted(by_frame) == sorted(set(rows[:, 0].astype(int)))
    assert all((gt.frames[index] == frame).all() for frame, index in by_frame.items())


def test_mot15_ground_truth_has_no_classes() -> None:
    gt = load_sequence(require_data(PETS)).ground_truth()
    rows = np.array(_csv_rows(gt.path))
    assert len(gt) == 4650 and gt.classes is None and gt.visibility is None
    np.testing.assert_array_equal(gt.consider, rows[:, 6] != 0)  # 174 rows of PETS09-S2L1 have consider=0
    assert (~gt.consider).sum() == 174


# ---------------------------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("bad_line, message", [
    ("3,-1,1,2,3", "expected at least 7 comma-separated columns, found 5"),
    ("3,-1,1,2,abc,4,0.9", "non-numeric value 'abc'"),
    ("3,-1,1,2,-3,4,0.9", "negative box width/height"),
    ("0,-1,1,2,3,4,0.9", "frame must be an integer >= 1"),
    ("2.5,-1,1,2,3,4,0.9", "frame must be an integer >= 1"),
    ("3,-1,1,2,3,4,0.9,1", "found 8 columns but earlier lines have 7"),
])
def test_malformed_detection_line_is_named(tmp_path: Path, bad_line: str, message: str) -> None:
    (tmp_path / "det").mkdir()
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nname=t\nframeRate=10\nseqLength=5\n")
    (tmp_path / "det" / "det.txt").write_text(f"1,-1,1,2,3,4,0.9\n\n{bad_line}\n2,-1,1,2,3,4,0.9\n")
    with pytest.raises(ValueError) as error:
        load_sequence(tmp_path).detections()
    assert f"det.txt:3: {message}" in str(error.value)


def test_detection_beyond_sequence_length_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "det").mkdir()
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nname=t\nframeRate=10\nseqLength=5\n")
    (tmp_path / "det" / "det.txt").write_text("6,-1,1,2,3,4,0.9\n")
    with pytest.raises(ValueError, match="frame 6 but the sequence has 5 frames"):
        load_sequence(tmp_path).detections()


def test_ground_truth_with_wrong_column_count_and_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_text("1,1,0,0,5,5,1,1,1\n1,2,0,0,5,5,1,1\n")
    with pytest.raises(ValueError, match=r"gt.txt:2: expected 9 to 10 comma-separated columns, found 8"):
        read_ground_truth(path)
    path.write_text("1,1,0,0,5,5,1,1,1\n2,1,0,0,5,5,1,1,1\n1,1,9,9,5,5,1,1,1\n")
    with pytest.raises(ValueError, match=r"gt.txt:3: track id 1 appears more than once in frame 1"):
        read_ground_truth(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_ground_truth(tmp_path / "none.txt")


# ---------------------------------------------------------------------------------------------- writing


def _tracks(rng: np.random.Generator, count: int, first_id: int) -> np.ndarray:
    xy = rng.uniform(0, 500, (count, 2))
    wh = rng.uniform(5, 80, (count, 2))
    ids = np.arange(first_id, first_id + count)
    return np.column_stack([xy, xy + wh, ids, rng.uniform(0, 1, count), -np.ones(count), np.arange(count)])


def test_result_line_format() -> None:
    tracks = np.array([[10.0, 20.0, 40.5, 80.25, 7, 0.91234, -1, 0]])
    assert format_tracks(3, tracks) == "3,7,10.00,20.00,30.50,60.25,0.9123,-1,-1,-1\n"
    assert format_tracks(3, np.empty((0, 8))) == ""
    with pytest.raises(ValueError, match="frame id"):
        format_tracks(0, tracks)
    with pytest.raises(ValueError, match=r"\(M,8\)"):
        format_tracks(1, np.zeros((2, 4)))


def test_written_results_read_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [(frame, _tracks(rng, frame % 4, 10 * frame)) for frame in range(1, 30)]
    path = write_results(tmp_path / "out" / "seq.txt", frames)
    back = read_results(path)
    expected = np.concatenate([t for _, t in frames])
    np.testing.assert_array_equal(back.frames, np.concatenate([[f] * len(t) for f, t in frames]))
    np.testing.assert_array_equal(back.ids, expected[:, 4])
    np.testing.assert_allclose(back.boxes[:, :2], expected[:, :2], atol=0.005)
    np.testing.assert_allclose(back.boxes[:, :2] + back.boxes[:, 2:], expected[:, 2:4], atol=0.01)
    np.testing.assert_allclose(back.scores, expected[:, 5], atol=5e-5)
    (tmp_path / "plain.txt").write_text("")
    assert path.stat().st_mode == (tmp_path / "plain.txt").stat().st_mode  # usual permissions, not mkstemp's 0600


def test_writer_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    path.write_text("1,1,0,0,1,1,1,-1,-1,-1\n")  # an earlier complete file
    rng = np.random.default_rng(1)
    with pytest.raises(KeyboardInterrupt), MotResultWriter(path) as writer:
        writer.write(1, _tracks(rng, 3, 1))
        assert path.read_text() == "1,1,0,0,1,1,1,-1,-1,-1\n"  # unchanged while writing
        raise KeyboardInterrupt
    assert path.read_text() == "1,1,0,0,1,1,1,-1,-1,-1\n"
    assert os.listdir(tmp_path) == ["seq.txt"]  # no temporary file left behind
    with MotResultWriter(path) as writer:
        writer.write(2, _tracks(rng, 2, 5))
    assert len(read_results(path)) == 2 and os.listdir(tmp_path) == ["seq.txt"]
    with pytest.raises(RuntimeError, match="outside"):
        writer.write(3, _tracks(rng, 1, 1))


def test_duplicate_id_appended_to_real_gt_is_named_by_line(tmp_path: Path) -> None:
    shutil.copy(require_data(MOT17_05) / "gt" / "gt.txt", tmp_path / "gt.txt")
    with open(tmp_path / "gt.txt", "a") as handle:
        handle.write("1,1,0,0,5,5,1,1,1\n")
    with pytest.raises(ValueError, match=r"gt.txt:8014: track id 1 appears more than once in frame 1"):
        read_ground_truth(tmp_path / "gt.txt")


# ---------------------------------------------------------------------------------------------- fast path vs line rules

_VALUES = st.sampled_from(["1", "2", "0", "-1", "3.5", "-2.5", "12", "x", "nan", ""])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_VALUES, min_size=6, max_size=8), min_size=1, max_size=6))
def test_any_file_is_either_read_exactly_or_rejected_at_its_first_bad_line(tmp_path_factory, rows) -> None:
    """The one-call numpy parse and the line-by-line diagnosis agree with plain rules written out here."""
    path = tmp_path_factory.mktemp("t") / "det.txt"
    path.write_text("".join(",".join(row) + "\n" for row in rows))

    def first_problem() -> int | None:
        width = len(rows[0])
        for number, row in enumerate(rows, start=1):
            try:
                values = [float(v) for v in row]
            except ValueError:
                return number
            if (len(row) != width or len(row) < 7 or any(np.isnan(values)) or values[0] < 1
                    or values[0] != int(values[0]) or values[4] < 0 or values[5] < 0):
                return number
        return None

    bad_line = first_problem()
    if bad_line is None:
        np.testing.assert_array_equal(read_mot_table(path, 7), np.array(rows, dtype=float))
    else:
        with pytest.raises(ValueError, match=rf"det.txt:{bad_line}: "):
            read_mot_table(path, 7)
