"""Helpers shared by the benchmark scripts: where the real data lives, busy loops, result files."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("INT8TRACK_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def require_path(path: str | Path, what: str) -> Path:
    """Return ``path`` if it exists, else exit with a message naming ``what`` is missing and where."""
    resolved = Path(path)
    if not resolved.exists():
        sys.exit(f"error: {what} not found: {resolved}")
    return resolved


def write_json_and_csv(stem: Path, result: object, rows: list[dict], columns: list[str] | None = None) -> None:
    """``stem``.json holding ``result`` and ``stem``.csv with one line per row (``columns``, default the first
    row's keys; other keys are left out of the CSV), then one line naming both files."""
    json_path, csv_path = stem.with_suffix(".json"), stem.with_suffix(".csv")
    json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or (list(rows[0]) if rows else []),
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {json_path} and {csv_path}")


def busy_processes(count: int) -> list[subprocess.Popen]:
    """``count`` processes spinning a core each (``while True: pass``), for runs on a busy machine; the caller
    kills them (``stop_processes``)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop_processes(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
        process.wait()
