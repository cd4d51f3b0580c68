"""The worker's streams share one detector by deadline: the most overdue stream runs next."""
from __future__ import annotations

import threading
import time

import numpy as np

from int8track.apps.fleet.sharing import DeadlineGate, StreamRunner


def test_waiting_callers_run_earliest_deadline_first():
    gate = DeadlineGate()
    order: list[float] = []
    release = threading.Event()

    def hold() -> np.ndarray:
        release.wait(5)
        return np.zeros(1)

    holder = threading.Thread(target=gate.run, args=(0.0, hold))
    holder.start()
    time.sleep(0.05)  # the gate is busy: everyone below waits
    waiters = []
    for deadline in (5.0, 1.0, 3.0, 2.0):
        thread = threading.Thread(target=gate.run, args=(deadline, lambda d=deadline: order.append(d) or np.zeros(1)))
        thread.start()
        waiters.append(thread)
        time.sleep(0.02)
    release.set()
    for thread in [holder, *waiters]:
        thread.join(5)
    assert order == [1.0, 2.0, 3.0, 5.0] and gate.grants == 5


def test_a_stream_that_waited_longest_since_its_last_call_goes_first():
    gate = DeadlineGate()
    calls: list[str] = []
    fresh = StreamRunner(lambda blob: calls.append("fresh") or blob, gate)
    starved = StreamRunner(lambda blob: calls.append("starved") or blob, gate)
    fresh(np.zeros(1))  # fresh just ran; starved never did
    release = threading.Event()
    holder = threading.Thread(target=gate.run, args=(-1e18, lambda: release.wait(5) or np.zeros(1)))
    holder.start()
    time.sleep(0.05)
    first = threading.Thread(target=fresh, args=(np.zeros(1),))
    first.start()
    time.sleep(0.02)
    second = threading.Thread(target=starved, args=(np.zeros(1),))  # asks later, but is more overdue
    second.start()
    time.sleep(0.02)
    release.set()
    for thread in (holder, first, second):
        thread.join(5)
    assert calls == ["fresh", "starved", "fresh"]
    assert starved.last_call > fresh.last_call - 1.0  # both stamped with the time of their call
