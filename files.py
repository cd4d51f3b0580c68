"""The one way the project writes a file: to a temporary name beside it, then renamed into place (whole files with
:func:`write_atomically`, files written line by line with :class:`AtomicTextFile`).

A reader (another run, a later session) sees either the old file or the whole new one, never a truncated copy
that a full disk, a crash or a killed process left behind; a failed write leaves no temporary file.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TextIO, TypeVar


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    partial = Path(name)
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda temp: temp.write_text(text))


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    return write_atomically(path, lambda temp: temp.write_bytes(data))


class AtomicTextFile:
    """A text file written under a hidden temporary name beside ``path``; only a clean exit from the ``with``
    block syncs it and renames it to ``path`` (``os.replace``), so an interrupted run never leaves a truncated
    file that looks complete. Subclasses write through :meth:`write_text`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handle: TextIO | None = None
        self._temp_path: Path | None = None

    def __enter__(self: _Atomic) -> _Atomic:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a unique name opened exclusively ("x"): unlike mkstemp, the file gets the usual umask permissions
        self._temp_path = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.part")
        self._handle = open(self._temp_path, "x", encoding="utf-8", newline="\n")
        return self

    def write_text(self, text: str) -> None:
        if self._handle is None:
            raise RuntimeError(f"{type(self).__name__}: written outside its `with` block")
        self._handle.write(text)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        assert self._handle is not None and self._temp_path is not None
        try:
            if exc_type is None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            self._handle.close()
            if exc_type is None:
                os.replace(self._temp_path, self.path)
        finally:
            self._temp_path.unlink(missing_ok=True)
            self._handle = None


_Atomic = TypeVar("_Atomic", bound=AtomicTextFile)
