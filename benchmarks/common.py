"""Helpers shared by the benchmark scripts: where the real data lives."""
from __future__ import annotations

import os
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
