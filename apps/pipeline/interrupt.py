"""Graceful stop on SIGINT/SIGTERM: the first signal asks the pipeline to finish, a second one aborts.

A camera or stream run ends with Ctrl-C, a service with SIGTERM; both must keep what was already tracked.
:class:`StopOnSignal` turns the first signal into a flag the frame loop polls between frames (so ONNX Runtime
is never interrupted mid-call), and restores the previous handlers on exit. A second signal raises
KeyboardInterrupt at once: the pipeline then deletes its partial outputs rather than leaving files that look
complete but are not.
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

#: The shell convention: a process ended by signal N exits with 128 + N.
SIGNAL_EXIT_BASE = 128
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class StopOnSignal:
    """``with StopOnSignal() as stop:`` ... ``if stop.requested: finish()``.

    Handlers are installed only from the main thread (Python allows no other) and not for a signal that is
    ignored (SIG_IGN); elsewhere the object is inert and :attr:`requested` stays False unless :meth:`request`
    is called.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = HANDLED_SIGNALS, announce: bool = True) -> None:
        self.signals = signals
        self.announce = announce
        self.signum: int | None = None
        self._event = threading.Event()
        self._previous: dict[signal.Signals, _Handler] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def exit_code(self) -> int | None:
        """128 + the signal number once a signal arrived (130 for SIGINT, 143 for SIGTERM), else None."""
        return None if self.signum is None else SIGNAL_EXIT_BASE + self.signum

    @property
    def signal_name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask for a stop as if ``signum`` had arrived (the first request wins)."""
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: aborting")
        self.request(signum)
        if self.announce:
            print(f"\n{signal.Signals(signum).name} received: finishing the frames in flight and writing outputs "
                  "(send it again to abort without outputs)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # e.g. SIGINT of a shell's background job: the launcher chose to shield it
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
