"""One detector shared by a worker's streams, granted by deadline: the stream whose detection is most overdue
(it has waited longest since its last detector call) runs next.

Without it, every stream's thread calls ONNX Runtime at once and they split the cores; a stream that has been
tracking by propagation for a while waits as long as one that was detected a moment ago. With it, calls run
one at a time (each with all the worker's threads) in order of how long each stream has gone without a
detection, so under load the detections spread evenly over the streams and no stream starves.
"""
from __future__ import annotations

import copy
import heapq
import itertools
import threading
import time
from collections.abc import Callable

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


class DeadlineGate:
    """Grants the detector to one caller at a time, the one with the earliest deadline first."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._waiting: list[tuple[float, int]] = []
        self._busy = False
        self._order = itertools.count()  # ties: first come, first served
        self.grants = 0

    def run(self, deadline: float, call: Callable[[], np.ndarray]) -> np.ndarray:
        """``call()`` once every caller with an earlier ``deadline`` that is waiting has run."""
        ticket = (deadline, next(self._order))
        with self._condition:
            heapq.heappush(self._waiting, ticket)
            while self._busy or self._waiting[0] != ticket:
                self._condition.wait()
            heapq.heappop(self._waiting)
            self._busy = True
            self.grants += 1
        try:
            return call()
        finally:
            with self._condition:
                self._busy = False
                self._condition.notify_all()


class StreamRunner:
    """One stream's view of the shared runner: its deadline is the time of its own last detector call."""

    def __init__(self, runner: Runner, gate: DeadlineGate) -> None:
        self._runner = runner
        self._gate = gate
        self.last_call = float("-inf")  # a stream that never ran is the most overdue

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        result = self._gate.run(self.last_call, lambda: self._runner(blob))
        self.last_call = time.perf_counter()
        return result


def shared_by_deadline(detector: object, gate: DeadlineGate) -> object:
    """A copy of ``detector`` (same session, same settings) whose inference waits its turn at ``gate``."""
    stream_detector = copy.copy(detector)
    stream_detector.runner = StreamRunner(detector.runner, gate)  # type: ignore[attr-defined]
    return stream_detector
