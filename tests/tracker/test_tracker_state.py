"""Tracker snapshots (tracker.state): a run restored mid-sequence continues byte for byte; bad snapshots are refused."""
from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest

from benchmarks.tracker_memory import churn_frames
from int8track.apps.io.motchallenge import load_sequence
from int8track.tracker import ByteTracker, TrackerConfig
from int8track.tracker.state import HEADER_KEY, STATE_VERSION, StateHeader, TrackerState

from conftest import require_data

FRAMES = 300  # MOT17-04 public detections: ~40 per frame, tracks lost and refound, ids in the hundreds
CUTS = (1, 2, 97, 211, 299)
PARITY = {"track_high_thresh": 0.5, "new_track_thresh": 0.6, "iou_inclusive": True, "id_mode": "official"}


@pytest.fixture(scope="module")
def mot17_04() -> tuple[list[np.ndarray], float]:
    sequence = load_sequence(require_data("MOT17/train/MOT17-04-FRCNN"))
    return sequence.detections()[:FRAMES], sequence.frame_rate


def _through_bytes(state: TrackerState) -> TrackerState:
    return TrackerState.from_bytes(state.to_bytes())


RESTORES = {
    "load_state_dict": lambda tracker: _fresh_like(tracker, tracker.state_dict()),
    "bytes": lambda tracker: ByteTracker.from_state(_through_bytes(tracker.state_dict())),
    "pickle": lambda tracker: pickle.loads(pickle.dumps(tracker)),
}


def _fresh_like(tracker: ByteTracker, state: TrackerState) -> ByteTracker:
    fresh = ByteTracker(tracker.config)
    fresh.load_state_dict(state)
    return fresh


@pytest.mark.parametrize("settings", [{}, PARITY, {"return_lost": True, "track_buffer": 10}],
                         ids=["default", "official-parity", "return-lost"])
def test_restored_run_is_byte_identical_to_uninterrupted(mot17_04, settings) -> None:
    frames, frame_rate = mot17_04
    config = TrackerConfig(frame_rate=frame_rate, **settings)
    whole = ByteTracker(config)
    expected = [whole.update(dets).tobytes() for dets in frames]

    # One pass takes a snapshot at every cut; each snapshot then finishes the sequence in a new tracker
    # (a different restore route per cut, so every route is exercised on a real, crowded state).
    prefix = ByteTracker(config)
    snapshots = {}
    for index, dets in enumerate(frames):
        if index in CUTS:
            snapshots[index] = RESTORES[list(RESTORES)[len(snapshots) % len(RESTORES)]](prefix)
        prefix.update(dets)
    for cut, resumed in snapshots.items():
        got = [resumed.update(dets).tobytes() for dets in frames[cut:]]
        assert got == expected[cut:], f"output differs after restoring at frame {cut}"
        assert resumed.num_tracks == whole.num_tracks and resumed.frame_id == whole.frame_id


def test_every_restore_route_keeps_the_whole_state(mot17_04) -> None:
    frames, frame_rate = mot17_04
    tracker = ByteTracker(frame_rate=frame_rate)
    for dets in frames[:120]:
        tracker.update(dets)
    state = tracker.state_dict()
    assert state.num_tracks == tracker.num_tracks > 0
    assert (state.tracks["state"] != 1).any(), "the snapshot should hold lost tracks too"
    for name, restore in RESTORES.items():
        again = restore(tracker).state_dict()
        assert again == state, name
        for field, array in state.tracks.items():
            assert array.dtype == again.tracks[field].dtype, field
    tracker.update(frames[120])
    assert tracker.state_dict() != state


def _walkers(frame: int) -> np.ndarray:
    x = 10.0 + 4.0 * frame + np.array([0.0, 300.0])
    return np.column_stack((x, [50.0, 60.0], x + 40, [150.0, 160.0], [0.9, 0.8]))


def test_timestamps_and_gaps_continue_after_restore() -> None:
    times = np.cumsum([0.0, 0.1, 0.1, 0.3, 0.1, 0.2, 0.1, 0.1])
    whole, first = ByteTracker(frame_rate=10), ByteTracker(frame_rate=10)
    expected = [whole.update(_walkers(i), timestamp=t) for i, t in enumerate(times)]
    for i, t in enumerate(times[:4]):
        first.update(_walkers(i), timestamp=t)
    second = ByteTracker.from_state(_through_bytes(first.state_dict()))
    assert second.state_dict().header.last_timestamp == pytest.approx(times[3])
    got = [second.update(_walkers(i), timestamp=t) for i, t in enumerate(times[4:], start=4)]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected[4:]))
    with pytest.raises(ValueError, match="timestamp must increase"):  # the restored clock is enforced
        second.update(_walkers(9), timestamp=times[2])


def test_snapshot_is_a_copy() -> None:
    tracker = ByteTracker()
    tracker.update(_walkers(0))
    state = tracker.state_dict()
    before = {name: array.copy() for name, array in state.tracks.items()}
    for frame in range(1, 5):
        tracker.update(_walkers(frame))
    assert all(np.array_equal(before[name], state.tracks[name]) for name in before)
    with pytest.raises(ValueError, match="read-only"):
        state.tracks["mean"][0, 0] = 1.0


def test_empty_tracker_round_trips(tmp_path) -> None:
    path = tmp_path / "snapshot.bin"
    ByteTracker(track_buffer=12).state_dict().save(path)
    state = TrackerState.load(path)
    assert state.num_tracks == 0 and state.header.config.track_buffer == 12
    tracker = ByteTracker.from_state(state)
    assert tracker.update(_walkers(0)).shape == (2, 8)  # first update after restore still confirms at once


# ---------------------------------------------------------------------------------------------------------------
# Refused snapshots
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    tracker = ByteTracker()
    for frame in range(6):
        tracker.update(_walkers(frame) if frame != 3 else _walkers(frame)[:1])
    return tracker.state_dict().to_arrays()


def _with_header(arrays: dict[str, np.ndarray], **changes) -> dict[str, np.ndarray]:
    header = json.loads(str(arrays[HEADER_KEY]))
    header.update(changes)
    return {**arrays, HEADER_KEY: np.array(json.dumps(header))}


def test_other_config_is_refused_naming_the_field() -> None:
    state = ByteTracker(match_thresh=0.7, track_buffer=50).state_dict()
    tracker = ByteTracker(match_thresh=0.8)
    with pytest.raises(ValueError, match=r"match_thresh: state has 0\.7, tracker has 0\.8.*track_buffer"):
        tracker.load_state_dict(state)


def test_other_format_version_is_refused(arrays) -> None:
    with pytest.raises(ValueError, match=f"version {STATE_VERSION + 1} is not supported"):
        TrackerState.from_arrays(_with_header(arrays, version=STATE_VERSION + 1))
    with pytest.raises(ValueError, match="format is 'other'"):
        TrackerState.from_arrays(_with_header(arrays, format="other"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.pop("cov"), r"missing key\(s\) \['cov'\]"),
    (lambda a: a.pop(HEADER_KEY), "missing key 'header'"),
    (lambda a: a.update(extra=np.zeros(2)), r"unexpected key\(s\) \['extra'\]"),
    (lambda a: a.update(track_id=a["track_id"].astype(np.int32)), "'track_id' has dtype int32, expected int64"),
    (lambda a: a.update(mean=a["mean"][:, :7]), r"'mean' has shape \(2, 7\), expected \(T, 8\)"),
    (lambda a: a.update(last_frame=a["last_frame"][:1]), r"'last_frame' has shape \(1,\), expected \(T\)"),
    (lambda a: a.update(state=np.full_like(a["state"], 7)), "values other than"),
    (lambda a: a.update(cov=np.full_like(a["cov"], np.nan)), "'cov' holds NaN"),
], ids=["missing-cov", "missing-header", "extra-key", "dtype", "shape", "count", "state-value", "nan"])
def test_corrupted_arrays_are_refused(arrays, change, message) -> None:
    change(arrays)
    with pytest.raises(ValueError, match=message):
        TrackerState.from_arrays(arrays)


@pytest.mark.parametrize(("changes", "message"), [
    ({"lost_start": 5}, r"lost_start \(5\) exceeds the 2 tracks"),
    ({"lost_start": 0}, "rows before lost_start"),
    ({"created": 1}, r"'track_id' outside 1..created \(1\)"),
    ({"frame_id": -1}, "frame_id must be an integer >= 0"),
    ({"shown": "2"}, "shown must be an integer"),
])
def test_inconsistent_header_is_refused(arrays, changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrackerState.from_arrays(_with_header(arrays, **changes))


def test_header_config_must_be_complete_and_valid(arrays) -> None:
    config = json.loads(str(arrays[HEADER_KEY]))["config"]
    with pytest.raises(ValueError, match=r"config keys differ.*missing \['match_thresh'\]"):
        TrackerState.from_arrays(_with_header(arrays, config={k: v for k, v in config.items() if k != "match_thresh"}))
    with pytest.raises(ValueError, match="track_buffer must be an integer"):
        TrackerState.from_arrays(_with_header(arrays, config={**config, "track_buffer": -3}))


def test_bytes_that_are_not_a_snapshot_are_refused(arrays) -> None:
    with pytest.raises(ValueError, match="not an npz archive"):
        TrackerState.from_bytes(b"definitely not a zip file")
    buffer = io.BytesIO()
    np.savez(buffer, **{**arrays, "mean": np.array([object()] * 2)})  # would need pickle to load
    with pytest.raises(ValueError, match="pickle"):
        TrackerState.from_bytes(buffer.getvalue())


def test_header_rejects_wrong_types() -> None:
    with pytest.raises(ValueError, match="config must be a TrackerConfig"):
        StateHeader(config={}, frame_id=0, update_count=0, lost_start=0, created=0, shown=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_state_dict takes a TrackerState"):
        ByteTracker().load_state_dict({})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Bounded memory
# ---------------------------------------------------------------------------------------------------------------

def test_table_stays_bounded_under_churn() -> None:
    """5,000 frames of people entering, walking 40-80 frames and leaving, 20% of detections missed: the
    table and the snapshot never grow past what the live and recently lost tracks need."""
    people = 12
    tracker = ByteTracker(frame_rate=30)  # lost tracks kept 30 frames
    largest = 0
    for dets in churn_frames(5000, people, seed=7):
        tracker.update(dets)
        largest = max(largest, tracker.num_tracks)
    # A track is dropped max_time_lost + 1 frames after its last match at the latest and each person lives
    # >= 40 frames, so the table holds about the people on screen plus those who left in the last 31 frames
    # (24 here), with some slack for broken tracks; a leak would grow towards the > 1,000 tracks created.
    assert largest <= 3 * people
    state = tracker.state_dict()
    assert state.num_tracks == tracker.num_tracks <= 3 * people
    assert state.header.created > 5000 * people / 80  # the churn really created many tracks
    assert len(state.to_bytes()) < 20_000


def test_memory_benchmark_reports_rows(tmp_path, capsys) -> None:
    from benchmarks import tracker_memory

    assert tracker_memory.main(["--frames", "1000", "--every", "500", "--json", str(tmp_path / "mem")]) == 0
    rows = json.loads((tmp_path / "mem.json").read_text())["rows"]
    assert [row["frame"] for row in rows] == [1, 500, 1000]
    assert all(row["rss_mib"] > 0 and 0 < row["tracks"] <= row["max_tracks"] for row in rows)
    assert "snapshot B" in capsys.readouterr().out
