"""The output folder of a run: created and proved writable before any work starts."""
from __future__ import annotations

import tempfile
from pathlib import Path

from int8track.apps.errors import UserError


def prepare_output_dir(path: Path) -> Path:
    """Create the folder and prove it is writable, or raise UserError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{path}: output folder is not writable ({exc.strerror or exc})") from exc
    return path
