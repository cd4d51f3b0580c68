"""Shared test fixtures: where the real data lives, and skipping when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("INT8TRACK_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def require_data(relative: str) -> Path:
    """Return ``SHARED_DATA / relative`` or skip the test, saying which file is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not found: {path} (set INT8TRACK_DATA or place shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_data("")
