"""Which sources a fleet serves: lists, globs and folders expanded, one job (id and output folder) per source."""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from int8track.apps.fleet.config import FleetError, StreamJob
from int8track.apps.io.sources import IMAGE_EXTENSIONS
from int8track.apps.io.urls import STREAM_SCHEMES, stream_name
from int8track.frames import VIDEO_EXTENSIONS


def expand_sources(specs: Iterable[str], sources_file: str | Path | None = None) -> list[str]:
    """The sources named by ``specs`` and ``sources_file``, in order.

    ``@FILE`` (and ``sources_file``) is a text file with one source per line (blank lines and ``#`` comments
    skipped); a glob pattern is its sorted matches; a folder that holds videos or MOT sequences (and no images
    of its own) is those videos and sequences; anything else (a file, image folder, MOT sequence, camera index,
    URL) is one source. FleetError names the list file or pattern that gave nothing.
    """
    expanded: list[str] = []
    listed = [f"@{sources_file}"] if sources_file is not None else []
    for spec in [*specs, *listed]:
        if spec.startswith("@"):
            expanded.extend(expand_sources(_read_source_list(Path(spec[1:]))))
        elif is_glob(spec) and not spec.lower().startswith(STREAM_SCHEMES):
            matches = sorted(glob.glob(os.path.expanduser(spec)))
            if not matches:
                raise FleetError(f"{spec}: no file matches this pattern")
            expanded.extend(expand_sources(matches))
        else:
            expanded.extend(folder_members(Path(spec).expanduser()) or [spec])
    return expanded


def _read_source_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FleetError(f"{path}: cannot read the source list ({exc.strerror or exc})") from exc
    sources = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not sources:
        raise FleetError(f"{path}: the source list names no source")
    return sources


def is_glob(spec: str) -> bool:
    return any(char in spec for char in "*?[")


def folder_members(path: Path) -> list[str]:
    """A folder's videos and MOT sequences, when it is a collection rather than one image folder or sequence."""
    if not path.is_dir() or (path / "img1").is_dir():
        return []
    children = sorted(path.iterdir())
    if any(child.suffix.lower() in IMAGE_EXTENSIONS and child.is_file() for child in children):
        return []
    return [str(child) for child in children
            if (child.is_file() and child.suffix.lower() in VIDEO_EXTENSIONS) or (child / "img1").is_dir()]


def source_name(location: str) -> str:
    """A short name for a source's output folder, as ``open_source`` names it (without opening it)."""
    if location.isdigit():
        return f"camera{location}"
    if location.lower().startswith(STREAM_SCHEMES):
        return stream_name(location)
    path = Path(location)
    return path.name if path.is_dir() else path.stem


def plan_jobs(locations: Sequence[str], output_dir: str | Path) -> list[StreamJob]:
    """One job per source with a unique id (``name``, ``name-2``, ... for sources of the same name) and its own
    folder ``output_dir/<id>``."""
    jobs = []
    seen: dict[str, int] = {}
    for location in locations:
        name = source_name(location)
        seen[name] = seen.get(name, 0) + 1
        source_id = name if seen[name] == 1 else f"{name}-{seen[name]}"
        jobs.append(StreamJob(source_id, location, str(Path(output_dir) / source_id)))
    return jobs
