"""benchmarks/live_capacity.py's driver side: waiting on worker processes without hanging on a dead one."""
from __future__ import annotations

import multiprocessing
import sys

import pytest

from benchmarks import live_capacity


def test_collect_gets_one_answer_per_process_and_reports_a_dead_one():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    answering = [context.Process(target=queue.put, args=(f"answer {i}",)) for i in range(2)]
    for process in answering:
        process.start()
    assert sorted(live_capacity.collect(queue, answering)) == ["answer 0", "answer 1"]
    dead = context.Process(target=sys.exit, args=(3,))  # exits without putting anything
    dead.start()
    with pytest.raises(RuntimeError, match="exited with code 3"):
        live_capacity.collect(queue, [dead])
    for process in (*answering, dead):
        process.join()
