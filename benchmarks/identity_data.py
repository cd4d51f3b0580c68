"""Cached detector outputs for the identity benchmark (``benchmarks/identity.py``), as MOT sequence folders.

Each variant is written once under ``runs/identity/sequences/<name>/`` as a MOTChallenge sequence without images:
``seqinfo.ini`` (frame rate, size, length), ``gt/gt.txt`` and ``det/det.txt`` holding the ByteTrack nano
detector's boxes (``frame,-1,x,y,w,h,score``, full float32 precision), so every tracker (ours, and the peers
run in their own virtual environment) reads exactly the same detections, and ``apps.evaluation`` scores them.

Variants (the detector is ``bytetrack_nano_mot17.onnx`` in ONNX Runtime, its own confidence threshold 0.1):

- ``vtest-fitted``: the frames of ``videos/vtest.avi`` (PETS09-S2L1 re-encoded, 10 fps in its header), fitted
  input (608x832), tracked at 10 fps; ground truth PETS09-S2L1's (same frames).
- ``PETS09-native``: the JPEG frames of MOT15 PETS09-S2L1, native input (608x1088), 7 fps.
- ``PETS09-pan``: a 640x480 window over the PETS09 JPEG frames whose left edge moves 7 px a frame back and forth
  across the 128 free pixels (a panning camera), top edge fixed at 48; the detector runs on the crops (fitted
  input); ground truth shifted into the window and clipped to it (boxes with less than half of their area inside
  are dropped: the gt of a person cut in half by the frame edge is not a fair target); 7 fps.
- ``PETS09-shake``: the same 640x480 window held by a shaking hand: a slow sway and a fast tremor in both
  directions (``shake_offsets``: up to about 20 px a frame, changing direction every few frames, which a
  constant-velocity model cannot follow); gt shifted and clipped as for the pan; 7 fps.
- ``MOT17-05-mini``: the 48 frames of MOT17-05 with images (moving camera), fitted input, 14 fps.

And, without a detector, the MOT17 train public detections at a third of their frame rate (``MOT17-XX-FRCNN-s3``:
frames 1, 4, 7, ... renumbered, gt and detections alike; 10 fps for the 30 fps ones): the same crowds as the
30 fps benchmark, with the motion per frame of our low-frame-rate sources, so a low-frame-rate mechanism is
checked on seven more scenes than PETS09 alone (one swap of two long tracks moves PETS09's IDF1 by 5 points).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Run as a plain script (python benchmarks/X.py), the repository root is not on sys.path: add it for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import PROJECT_ROOT, SHARED_DATA

CACHE_ROOT = PROJECT_ROOT / "runs" / "identity" / "sequences"
WEIGHTS = SHARED_DATA / "weights" / "bytetrack_nano_mot17.onnx"
PETS09 = SHARED_DATA / "MOT15" / "train" / "PETS09-S2L1"
VTEST = SHARED_DATA / "videos" / "vtest.avi"
MOT17_MINI = SHARED_DATA / "MOT17-mini" / "train" / "MOT17-05-FRCNN"
MOT17_PUBLIC = SHARED_DATA / "MOT17" / "train"
MOT17_NAMES = tuple(f"MOT17-{n:02d}-FRCNN" for n in (2, 4, 5, 9, 10, 11, 13))
SUBSAMPLE_STEP = 3
SUBSAMPLED = tuple(f"{name}-s{SUBSAMPLE_STEP}" for name in MOT17_NAMES)

PAN_SIZE = (480, 640)  # window height, width
PAN_STEP = 7           # pixels the window moves per frame
PAN_TOP = 48           # the window's fixed top edge (576 - 480 = 96 free rows: centred)
PAN_MIN_VISIBLE = 0.5  # gt boxes with less of their area inside the window are dropped


@dataclass(frozen=True)
class Variant:
    """One cached sequence: its name, the frames' source, the detector input mode and the tracking frame rate."""

    name: str
    frame_rate: float
    imgsz: str  # "fitted" or "native" (detectors.input_size)
    frames: Callable[[], Iterator[np.ndarray]]
    gt_source: Path

    def __post_init__(self) -> None:
        if self.imgsz not in ("fitted", "native"):
            raise ValueError(f"variant {self.name}: imgsz must be 'fitted' or 'native', got {self.imgsz!r}")
        if not self.frame_rate > 0:
            raise ValueError(f"variant {self.name}: frame_rate must be > 0, got {self.frame_rate}")


def pan_offsets(num_frames: int, free_width: int, step: int = PAN_STEP) -> np.ndarray:
    """Left edge of the window on each frame: a triangle wave 0 -> ``free_width`` -> 0 ... in ``step`` pixels."""
    if free_width <= 0 or step <= 0:
        raise ValueError(f"pan needs free_width > 0 and step > 0, got {free_width} and {step}")
    travel = np.arange(num_frames) * step % (2 * free_width)
    return np.where(travel <= free_width, travel, 2 * free_width - travel)


def shake_offsets(num_frames: int, free: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Left and top edges of a hand-held window on each frame, inside the free margins ``free`` (x, y): a slow
    sway (periods of 37 and 53 frames) plus a fast tremor (5.3 and 3.7 frames), the periods chosen not to be
    multiples of each other so that the motion does not repeat within a sequence."""
    free_x, free_y = free
    if free_x <= 0 or free_y <= 0:
        raise ValueError(f"shake needs free margins > 0, got {free}")
    t = np.arange(num_frames, dtype=np.float64)
    x = free_x * (0.5 + 0.39 * np.sin(2 * np.pi * t / 37) + 0.09 * np.sin(2 * np.pi * t / 5.3))
    y = free_y * (0.5 + 0.375 * np.sin(2 * np.pi * t / 53 + 1.0) + 0.08 * np.sin(2 * np.pi * t / 3.7))
    return (np.clip(np.rint(x), 0, free_x).astype(np.int64), np.clip(np.rint(y), 0, free_y).astype(np.int64))


#: PETS09-S2L1's frame size (width, height): the windows' free margins follow from it.
PETS09_SIZE = (768, 576)


def window_offsets(name: str, num_frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(left edges, top edges) of a window variant's crop on each frame; None for a variant without a window."""
    free = (PETS09_SIZE[0] - PAN_SIZE[1], PETS09_SIZE[1] - PAN_SIZE[0])
    if name == "PETS09-pan":
        return pan_offsets(num_frames, free[0]), np.full(num_frames, PAN_TOP, dtype=np.int64)
    if name == "PETS09-shake":
        return shake_offsets(num_frames, free)
    return None


def _image_frames(sequence_dir: Path) -> Iterator[np.ndarray]:
    from int8track.apps.io.motchallenge import load_sequence
    from int8track.frames import read_image

    for path in load_sequence(sequence_dir).image_paths():
        yield read_image(path)


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def _window_frames(name: str) -> Iterator[np.ndarray]:
    """The PETS09 frames cropped to a window variant's window."""
    height, width = PAN_SIZE
    paths_count = len(list((PETS09 / "img1").glob("*.jpg")))
    offsets = window_offsets(name, paths_count)
    assert offsets is not None
    for index, frame in enumerate(_image_frames(PETS09)):
        left, top = int(offsets[0][index]), int(offsets[1][index])
        yield frame[top:top + height, left:left + width]


VARIANTS = {
    "vtest-fitted": Variant("vtest-fitted", 10.0, "fitted", lambda: _video_frames(VTEST), PETS09),
    "PETS09-native": Variant("PETS09-native", 7.0, "native", lambda: _image_frames(PETS09), PETS09),
    "PETS09-pan": Variant("PETS09-pan", 7.0, "fitted", lambda: _window_frames("PETS09-pan"), PETS09),
    "PETS09-shake": Variant("PETS09-shake", 7.0, "fitted", lambda: _window_frames("PETS09-shake"), PETS09),
    "MOT17-05-mini": Variant("MOT17-05-mini", 14.0, "fitted", lambda: _image_frames(MOT17_MINI), MOT17_MINI),
}


def frame_source(name: str) -> dict[str, object]:
    """Where a variant's frames come from, as plain JSON data for a process that cannot import int8track (the
    peers' venv, ``identity_peers.py --frames``): ``{"video": path}`` or ``{"images": [paths], "crops": [[x, y,
    w, h] per frame] or None}``, the same frames, crops included, that the variant's ``frames`` yield."""
    if name == "vtest-fitted":
        return {"video": str(VTEST)}
    folders = {"PETS09-native": PETS09, "PETS09-pan": PETS09, "PETS09-shake": PETS09, "MOT17-05-mini": MOT17_MINI}
    if name not in folders:
        raise ValueError(f"{name!r} has no frames; expected one of {sorted(folders)} or vtest-fitted")
    paths = sorted(str(path) for path in (folders[name] / "img1").glob("*.jpg"))
    crops = None
    offsets = window_offsets(name, len(paths))
    if offsets is not None:
        height, width = PAN_SIZE
        crops = [[left, top, width, height] for left, top in zip(offsets[0].tolist(), offsets[1].tolist())]
    return {"images": paths, "crops": crops}


def shift_ground_truth(gt_rows: np.ndarray, offsets_x: np.ndarray, top: int | np.ndarray, size: tuple[int, int],
                       min_visible: float = PAN_MIN_VISIBLE) -> np.ndarray:
    """MOT gt rows (frame, id, x, y, w, h, ...) moved into a window at (offsets_x[frame - 1], top) of ``size``
    (h, w), clipped to it (``top``: one edge for all frames, or one per frame like ``offsets_x``); rows with
    less than ``min_visible`` of their area inside are dropped."""
    rows = gt_rows.copy()
    frame_index = rows[:, 0].astype(np.int64) - 1
    left = offsets_x[frame_index]
    top_edge = np.asarray(top)[frame_index] if np.ndim(top) else top
    x1, y1 = rows[:, 2] - left, rows[:, 3] - top_edge
    x2, y2 = x1 + rows[:, 4], y1 + rows[:, 5]
    cx1, cy1 = np.clip(x1, 0, size[1]), np.clip(y1, 0, size[0])
    cx2, cy2 = np.clip(x2, 0, size[1]), np.clip(y2, 0, size[0])
    inside = (cx2 - cx1) * (cy2 - cy1)
    keep = inside >= min_visible * rows[:, 4] * rows[:, 5]
    rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5] = cx1, cy1, cx2 - cx1, cy2 - cy1
    return rows[keep]


def _write_seqinfo(folder: Path, name: str, frame_rate: float, length: int, width: int, height: int) -> None:
    (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nimDir=img1\nframeRate={frame_rate:g}\n"
                                        f"seqLength={length}\nimWidth={width}\nimHeight={height}\nimExt=.jpg\n")


def build_variant(variant: Variant, threads: int = 2, root: Path = CACHE_ROOT) -> Path:
    """Run the detector over ``variant``'s frames and write its sequence folder (skipped when it exists)."""
    folder = root / variant.name
    if (folder / "det" / "det.txt").is_file():
        return folder
    from int8track import load_detector

    detector = None
    lines: list[str] = []
    shape = None
    count = 0
    for count, frame in enumerate(variant.frames(), start=1):
        if detector is None:
            shape = frame.shape
            detector = load_detector(WEIGHTS, backend="onnxruntime", num_threads=threads, imgsz=variant.imgsz,
                                     frame_shape=frame.shape[:2])
        for x1, y1, x2, y2, score, _ in detector(frame).tolist():
            lines.append(f"{count},-1,{x1!r},{y1!r},{x2 - x1!r},{y2 - y1!r},{score!r}\n")
        if count % 100 == 0:
            print(f"{variant.name}: {count} frames", file=sys.stderr)
    if detector is None or shape is None:
        raise ValueError(f"variant {variant.name}: no frames")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "det").mkdir(parents=True)
    (staging / "gt").mkdir()
    (staging / "det" / "det.txt").write_text("".join(lines))
    gt_text = (variant.gt_source / "gt" / "gt.txt").read_text()
    offsets = window_offsets(variant.name, count)
    if offsets is not None:
        gt = np.loadtxt(variant.gt_source / "gt" / "gt.txt", delimiter=",", ndmin=2)
        gt = shift_ground_truth(gt[gt[:, 0] <= count], offsets[0], offsets[1], PAN_SIZE)
        gt_text = "".join(",".join(f"{v:g}" if k < 2 else f"{v:.3f}" for k, v in enumerate(row)) + "\n"
                          for row in gt.tolist())
    (staging / "gt" / "gt.txt").write_text(gt_text)
    _write_seqinfo(staging, variant.name, variant.frame_rate, count, shape[1], shape[0])
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def keep_every(lines: list[str], step: int) -> str:
    """MOT rows of frames 1, 1 + step, ... renumbered 1, 2, ... (the rest of each row unchanged)."""
    kept = []
    for line in lines:
        frame, rest = line.split(",", 1)
        if (int(float(frame)) - 1) % step == 0:
            kept.append(f"{(int(float(frame)) - 1) // step + 1},{rest}")
    return "".join(kept)


def build_subsampled(name: str, step: int = SUBSAMPLE_STEP, root: Path = CACHE_ROOT) -> Path:
    """A MOT17 public-detection sequence at 1/``step`` of its frame rate (see the module doc); cached."""
    from int8track.apps.io.motchallenge import load_sequence

    folder = root / f"{name}-s{step}"
    if (folder / "det" / "det.txt").is_file():
        return folder
    source = load_sequence(MOT17_PUBLIC / name)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for part in ("det", "gt"):
        (staging / part).mkdir(parents=True)
        lines = (source.root / part / f"{part}.txt").read_text().splitlines(keepends=True)
        (staging / part / f"{part}.txt").write_text(keep_every(lines, step))
    _write_seqinfo(staging, folder.name, source.frame_rate / step, (source.length - 1) // step + 1,
                   source.width or 1920, source.height or 1080)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cache the identity benchmark's detections as MOT sequence folders "
                                                 f"under {CACHE_ROOT} (existing ones are kept).")
    parser.add_argument("variants", nargs="*", help=f"some of {', '.join((*VARIANTS, *SUBSAMPLED))} (default: all)")
    names = parser.parse_args(argv).variants or [*VARIANTS, *SUBSAMPLED]
    for name in names:
        if name in VARIANTS:
            print(build_variant(VARIANTS[name]))
        elif name in SUBSAMPLED:
            print(build_subsampled(name.rsplit("-s", 1)[0]))
        else:
            sys.exit(f"error: unknown variant {name!r}; expected some of {[*VARIANTS, *SUBSAMPLED]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
