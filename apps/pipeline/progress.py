"""Progress for the frame loop: a tqdm bar on a terminal, one plain line every few seconds elsewhere.

A log file or CI console cannot render tqdm's carriage-return redraws; it stores every one of them (megabytes
for one run). When the stream is not a terminal, :class:`Progress` writes a start line, then one line at most
every ``interval_s`` seconds, then a last line, so logs stay short and readable.
"""
from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import TextIO

DEFAULT_INTERVAL_S = 5.0


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Progress:
    """``with Progress(total, "vtest") as progress: ... progress.update()``; disabled: prints nothing."""

    def __init__(self, total: int | None, desc: str, *, enabled: bool = True, stream: TextIO | None = None,
                 interval_s: float = DEFAULT_INTERVAL_S, unit: str = "frame") -> None:
        self.total = total
        self.desc = desc
        self.count = 0
        self.unit = unit
        self.interval_s = interval_s
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._bar = None
        self._start = self._last = time.monotonic()
        if enabled and is_terminal(self._stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, file=self._stream)
        elif enabled:
            of = f" of {total}" if total else ""
            self._line(f"started{of} ({unit}s)")

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self._enabled and now - self._last >= self.interval_s:
            self._last = now
            self._line(self._status(now))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._enabled:
            self._enabled = False
            self._line(f"done, {self._status(time.monotonic())}")

    def _status(self, now: float) -> str:
        elapsed = now - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        percent = f" ({100.0 * self.count / self.total:.0f}%)" if self.total else ""
        return f"{done} {self.unit}s{percent}, {rate:.1f} {self.unit}s/s, {elapsed:.0f} s"

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=self._stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def limit_tqdm_redraws(stream: TextIO | None = None, interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """When ``stream`` (default stderr) is not a terminal, make every tqdm bar of this process (calibration,
    downloads: code that uses tqdm directly) redraw at most every ``interval_s`` seconds, through tqdm's
    ``TQDM_MININTERVAL`` environment default. A value the user set is kept."""
    if not is_terminal(stream if stream is not None else sys.stderr):
        os.environ.setdefault("TQDM_MININTERVAL", f"{interval_s:g}")
