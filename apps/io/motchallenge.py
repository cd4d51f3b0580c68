"""Read MOTChallenge data (MOT15/16/17/20): sequence folders, detections, ground truth, results
(written by ``apps.io.mot_results``).

A sequence folder holds ``seqinfo.ini``, ``det/det.txt``, ``gt/gt.txt`` and ``img1/``. Text files are parsed
with numpy in one call; only when that fails (or a value is invalid) is the file re-scanned line by line, so the
error can name the exact 1-based line and what is wrong with it.
"""
from __future__ import annotations

import configparser
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from int8track.frames import FALLBACK_FRAME_RATE, list_images

SEQINFO = "seqinfo.ini"
DEFAULT_IMAGE_DIR = "img1"

DET_MIN_COLUMNS = 7  # frame,-1,x,y,w,h,score[,...]
GT_COLUMNS_WITH_CLASSES = 9  # MOT16/17/20: frame,id,x,y,w,h,consider,class,visibility
GT_COLUMNS_MOT15 = 10  # MOT15: frame,id,x,y,w,h,consider,wx,wy,wz (no classes, no visibility)
RESULT_MIN_COLUMNS = 6  # frame,id,x,y,w,h[,score,...]


# ----------------------------------------------------------------------------------------------------------------
# Parsing text tables
# ----------------------------------------------------------------------------------------------------------------

def _line_problem(fields: list[str], allowed_columns: tuple[int, int | None]) -> str | None:
    """What is wrong with one split line, or None. Mirrors the vectorised checks in :func:`_validate_rows`."""
    low, high = allowed_columns
    if len(fields) < low or (high is not None and len(fields) > high):
        wanted = f"{low}" if high == low else f"{low} to {high}" if high is not None else f"at least {low}"
        return f"expected {wanted} comma-separated columns, found {len(fields)}"
    try:
        values = [float(field) for field in fields]
    except ValueError:
        bad = next(field for field in fields if not _is_float(field))
        return f"non-numeric value {bad.strip()!r}"
    if not all(np.isfinite(values)):
        return "non-finite value (nan/inf)"
    if values[0] < 1 or values[0] != int(values[0]):
        return f"frame must be an integer >= 1, found {fields[0].strip()}"
    if values[4] < 0 or values[5] < 0:
        return f"negative box width/height ({fields[4].strip()}, {fields[5].strip()})"
    return None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _raise_for_bad_line(path: Path, allowed_columns: tuple[int, int | None], fallback: str) -> NoReturn:
    """Re-scan ``path`` line by line and raise ValueError naming the first bad line; ``fallback`` if none found."""
    columns: int | None = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.strip().split(",")
            problem = _line_problem(fields, allowed_columns)
            if problem is None and columns is not None and len(fields) != columns:
                problem = f"found {len(fields)} columns but earlier lines have {columns}"
            if problem is not None:
                raise ValueError(f"{path}:{number}: {problem}: {line.strip()!r}")
            columns = len(fields)
    raise ValueError(f"{path}: {fallback}")


def _validate_rows(table: np.ndarray) -> bool:
    """True when every row has a finite value everywhere, an integer frame >= 1 and non-negative w/h."""
    frames = table[:, 0]
    return bool(
        np.isfinite(table).all()
        and (frames >= 1).all()
        and (frames == np.round(frames)).all()
        and (table[:, 4:6] >= 0).all()
    )


def read_mot_table(path: str | Path, min_columns: int, max_columns: int | None = None) -> np.ndarray:
    """Read a MOTChallenge comma-separated file as an (N, C) float64 array, checking every line.

    Raises FileNotFoundError when the file is missing and ValueError naming the file, the 1-based line number
    and the problem for a wrong column count, a non-numeric value, a frame < 1 or a negative width/height.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOTChallenge file not found: {path}")
    allowed = (min_columns, max_columns)
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    if not text.strip():
        return np.empty((0, min_columns))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (instead of failing) on some malformed input
            table = np.loadtxt(text.splitlines(), delimiter=",", ndmin=2, dtype=np.float64)
    except (ValueError, UserWarning):
        table = None
    if table is None:
        _raise_for_bad_line(path, allowed, "could not be parsed as a numeric table")
    columns = table.shape[1]
    if columns < min_columns or (max_columns is not None and columns > max_columns) or not _validate_rows(table):
        _raise_for_bad_line(path, allowed, "invalid values")
    return table


# ----------------------------------------------------------------------------------------------------------------
# Ground truth and tracker results
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MotAnnotations:
    """Rows of a gt.txt or a results file as parallel columns (one entry per box).

    ``boxes`` are (N,4) x,y,w,h (top-left corner, MOTChallenge layout). ``classes`` is None for MOT15 ground truth
    and for tracker results, which carry no class; ``consider`` is all ones where the file has no such flag.
    """

    path: Path
    frames: np.ndarray  # (N,) int64
    ids: np.ndarray  # (N,) int64
    boxes: np.ndarray  # (N,4) float64 x,y,w,h
    scores: np.ndarray  # (N,) float64: consider flag for gt, confidence for results (1 when absent)
    classes: np.ndarray | None  # (N,) int64, None when the layout has no class column
    visibility: np.ndarray | None  # (N,) float64, None when absent

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def consider(self) -> np.ndarray:
        """Boolean mask of gt rows to score (the MOTChallenge 'conf' column is a 0/1 consider flag in gt)."""
        return self.scores != 0

    def rows_by_frame(self) -> dict[int, np.ndarray]:
        """Map frame number to the row indices of that frame (sorted frames; file order within a frame)."""
        order = np.argsort(self.frames, kind="stable")
        frames, starts = np.unique(self.frames[order], return_index=True)
        return dict(zip(frames.tolist(), np.split(order, starts[1:])))


def read_ground_truth(path: str | Path) -> MotAnnotations:
    """Read a gt.txt: 9 columns (MOT16/17/20, with class and visibility) or 10 columns (MOT15, world coords)."""
    table = read_mot_table(path, GT_COLUMNS_WITH_CLASSES, GT_COLUMNS_MOT15)
    has_classes = table.shape[1] == GT_COLUMNS_WITH_CLASSES
    annotations = MotAnnotations(
        path=Path(path),
        frames=table[:, 0].astype(np.int64),
        ids=_integer_column(table, 1, path, "track id"),
        boxes=table[:, 2:6].copy(),
        scores=table[:, 6].copy(),
        classes=_integer_column(table, 7, path, "class") if has_classes else None,
        visibility=table[:, 8].copy() if has_classes else None,
    )
    _check_unique_ids_per_frame(annotations)
    return annotations


def read_results(path: str | Path) -> MotAnnotations:
    """Read a tracker results file ``frame,id,x,y,w,h[,score,...]`` (MOTChallenge submission layout)."""
    table = read_mot_table(path, RESULT_MIN_COLUMNS)
    annotations = MotAnnotations(
        path=Path(path),
        frames=table[:, 0].astype(np.int64),
        ids=_integer_column(table, 1, path, "track id"),
        boxes=table[:, 2:6].copy(),
        scores=table[:, 6].copy() if table.shape[1] > 6 else np.ones(len(table)),
        classes=None,
        visibility=None,
    )
    _check_unique_ids_per_frame(annotations)
    return annotations


def _line_number(path: str | Path, data_row: int) -> int:
    """1-based line number of the ``data_row``-th (0-based) non-blank line of ``path``."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        data_lines = (number for number, line in enumerate(handle, start=1) if line.strip())
        return next(number for row, number in enumerate(data_lines) if row == data_row)


def _integer_column(table: np.ndarray, column: int, path: str | Path, what: str) -> np.ndarray:
    values = table[:, column]
    bad = np.flatnonzero(values != np.round(values))
    if len(bad):
        raise ValueError(f"{path}:{_line_number(path, bad[0])}: {what} must be an integer, found {values[bad[0]]}")
    return values.astype(np.int64)


def _check_unique_ids_per_frame(annotations: MotAnnotations) -> None:
    order = np.lexsort((annotations.ids, annotations.frames))
    repeated = (np.diff(annotations.frames[order]) == 0) & (np.diff(annotations.ids[order]) == 0)
    if repeated.any():
        row = order[np.argmax(repeated) + 1]
        raise ValueError(f"{annotations.path}:{_line_number(annotations.path, row)}: track id "
                         f"{annotations.ids[row]} appears more than once in frame {annotations.frames[row]}")


# ----------------------------------------------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MotSequence:
    """One MOTChallenge sequence folder. ``width``/``height`` are None when neither seqinfo nor images give them."""

    name: str
    root: Path
    frame_rate: float
    length: int
    width: int | None
    height: int | None
    image_dir: str = DEFAULT_IMAGE_DIR
    image_ext: str = ".jpg"

    @property
    def det_path(self) -> Path:
        return self.root / "det" / "det.txt"

    @property
    def gt_path(self) -> Path:
        return self.root / "gt" / "gt.txt"

    @property
    def has_images(self) -> bool:
        return (self.root / self.image_dir).is_dir()

    def image_paths(self) -> list[Path]:
        """Paths of frames 1..length (``000001.jpg`` ...); FileNotFoundError if the folder or a frame is missing."""
        folder = self.root / self.image_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"sequence {self.name} has no image folder: {folder}")
        paths = [folder / f"{frame:06d}{self.image_ext}" for frame in range(1, self.length + 1)]
        missing = [path for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"sequence {self.name}: {len(missing)} of {self.length} frames missing, "
                                    f"first {missing[0]}")
        return paths

    def detections(self) -> list[np.ndarray]:
        """Public detections per frame: element ``f - 1`` is an (N,5) float64 x1,y1,x2,y2,score array of frame f.

        Every frame 1..length has an entry (empty (0,5) arrays where there are no detections); within a frame
        the file's row order is kept. A detection on a frame outside 1..length is a ValueError.
        """
        table = read_mot_table(self.det_path, DET_MIN_COLUMNS)
        frames = table[:, 0].astype(np.int64)
        if len(frames) and frames.max() > self.length:
            raise ValueError(f"{self.det_path}: detection on frame {frames.max()} but the sequence has "
                             f"{self.length} frames")
        boxes = np.empty((len(table), 5))
        boxes[:, 0:2] = table[:, 2:4]
        boxes[:, 2:4] = table[:, 2:4] + table[:, 4:6]
        boxes[:, 4] = table[:, 6]
        order = np.argsort(frames, kind="stable")
        counts = np.bincount(frames, minlength=self.length + 1)[1:]
        return np.split(boxes[order], np.cumsum(counts)[:-1])

    def ground_truth(self) -> MotAnnotations:
        """The sequence's gt/gt.txt (FileNotFoundError for test sequences, which have none)."""
        gt = read_ground_truth(self.gt_path)
        if len(gt) and gt.frames.max() > self.length:
            raise ValueError(f"{self.gt_path}: gt on frame {gt.frames.max()} but the sequence has "
                             f"{self.length} frames")
        return gt


def _is_sequence_dir(path: Path) -> bool:
    return (path / SEQINFO).is_file() or (path / "det" / "det.txt").is_file() or (path / "gt" / "gt.txt").is_file()


def _read_seqinfo(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep camelCase keys (configparser's way)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as error:
        raise ValueError(f"{path}: not a valid ini file: {error}") from error
    if "Sequence" not in parser:
        raise ValueError(f"{path}: missing [Sequence] section")
    return dict(parser["Sequence"])


def _ini_number(info: dict[str, str], key: str, path: Path, kind: type) -> int | float | None:
    if key not in info:
        return None
    try:
        value = kind(info[key])
    except ValueError:
        raise ValueError(f"{path}: {key}={info[key]!r} is not a valid {kind.__name__}") from None
    if value <= 0:
        raise ValueError(f"{path}: {key} must be positive, found {info[key]!r}")
    return value


def _ini_int(info: dict[str, str], key: str, path: Path) -> int | None:
    value = _ini_number(info, key, path, int)
    return None if value is None else int(value)


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return list_images(folder, numbered_only=True)


def _last_annotated_frame(root: Path) -> int | None:
    frames = [int(read_mot_table(path, minimum)[:, 0].max(initial=0))
              for path, minimum in ((root / "det" / "det.txt", DET_MIN_COLUMNS),
                                    (root / "gt" / "gt.txt", GT_COLUMNS_WITH_CLASSES)) if path.is_file()]
    return max(frames) if frames and max(frames) > 0 else None


def load_sequence(root: str | Path) -> MotSequence:
    """Describe the sequence folder ``root`` from its seqinfo.ini, filling what is missing from the folder.

    Without seqinfo.ini (MOT15 style) the length, image extension and size come from ``img1/``; without images
    the length is the last frame in det/gt; the frame rate falls back to 30 fps with a warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sequence folder not found: {root}")
    ini_path = root / SEQINFO
    info = _read_seqinfo(ini_path) if ini_path.is_file() else {}
    image_dir = info.get("imDir", DEFAULT_IMAGE_DIR)
    images = [] if {"seqLength", "imExt", "imWidth", "imHeight"} <= info.keys() else _list_images(root / image_dir)

    length = _ini_int(info, "seqLength", ini_path)
    if length is None:
        length = int(images[-1].stem) if images else _last_annotated_frame(root)
    if length is None:
        raise ValueError(f"{root}: cannot tell the sequence length: no {SEQINFO} with seqLength, no images in "
                         f"{image_dir}/ and no det/det.txt or gt/gt.txt with rows")
    width = _ini_int(info, "imWidth", ini_path)
    height = _ini_int(info, "imHeight", ini_path)
    if (width is None or height is None) and images:
        height, width = _image_size(images[0])
    frame_rate = _ini_number(info, "frameRate", ini_path, float)
    if frame_rate is None:
        warnings.warn(f"{root}: no frameRate in {SEQINFO}; assuming {FALLBACK_FRAME_RATE:g} fps", stacklevel=2)
        frame_rate = FALLBACK_FRAME_RATE
    image_ext = info.get("imExt", images[0].suffix if images else ".jpg")
    return MotSequence(name=info.get("name", root.name), root=root, frame_rate=float(frame_rate), length=length,
                       width=width, height=height, image_dir=image_dir, image_ext=image_ext)


def _image_size(path: Path) -> tuple[int, int]:
    import cv2  # only needed for folders without seqinfo.ini

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path} to find the sequence's frame size")
    return image.shape[0], image.shape[1]


def find_sequences(root: str | Path, max_depth: int = 3) -> list[MotSequence]:
    """All sequence folders at or below ``root`` (a root that is itself a sequence gives one), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MOTChallenge folder not found: {root}")
    found: list[Path] = []
    level = [root]
    for _ in range(max_depth + 1):
        next_level = []
        for folder in level:
            if _is_sequence_dir(folder):
                found.append(folder)
            else:
                next_level += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        level = next_level
    if not found:
        raise FileNotFoundError(f"no MOTChallenge sequence (folder with {SEQINFO}, det/det.txt or gt/gt.txt) "
                                f"found under {root}")
    return [load_sequence(path) for path in sorted(found)]
