"""Progress output: plain lines every few seconds in logs, a tqdm bar on a terminal."""
from __future__ import annotations

import io
import os

from int8track.apps.pipeline.progress import Progress, limit_tqdm_redraws


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_plain_lines_at_the_interval():
    log = io.StringIO()
    with Progress(10, "seq", stream=log, interval_s=3600) as progress:
        for _ in range(10):
            progress.update()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "seq: started of 10 (frames)"
    assert len(lines) == 2 and lines[1].startswith("seq: done, 10/10 frames (100%)")


def test_every_update_past_the_interval_is_one_line():
    log = io.StringIO()
    with Progress(None, "cam", stream=log, interval_s=0.0) as progress:
        progress.update()
        progress.update()
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "cam: started (frames)", "cam: 1 frames", "cam: 2 frames", "cam: done"]


def test_terminal_gets_a_redrawn_bar_and_disabled_prints_nothing():
    terminal = Terminal()
    with Progress(3, "vid", stream=terminal) as progress:
        progress.update(3)
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()
    silent = io.StringIO()
    with Progress(3, "vid", stream=silent, enabled=False) as progress:
        progress.update(3)
    assert silent.getvalue() == ""


def test_tqdm_redraws_are_limited_only_off_a_terminal(monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "registered so the test's change is undone")
    monkeypatch.delenv("TQDM_MININTERVAL")
    limit_tqdm_redraws(Terminal())
    assert "TQDM_MININTERVAL" not in os.environ
    limit_tqdm_redraws(io.StringIO(), interval_s=5)
    assert os.environ["TQDM_MININTERVAL"] == "5"
