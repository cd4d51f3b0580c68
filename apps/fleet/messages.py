"""What workers and the pool driver tell each other, as small typed messages (pickled across processes)."""
from __future__ import annotations

import signal
from dataclasses import dataclass

import numpy as np

from int8track.apps.fleet.report import StreamReport


@dataclass(frozen=True)
class Started:
    """The driver started worker ``worker_index`` (process ``pid``) for these streams."""

    worker_index: int
    pid: int | None
    source_ids: tuple[str, ...]


@dataclass(frozen=True)
class Progress:
    """A stream has read ``frames_read`` frames."""

    source_id: str
    frames_read: int


@dataclass(frozen=True)
class Tracks:
    """One frame's tracks of a stream (``track_many``: nothing is written to disk)."""

    source_id: str
    frame_index: int
    tracks: np.ndarray


@dataclass(frozen=True)
class WorkerDied:
    """A worker ended with streams unfinished; ``restarting`` says whether they run again in a fresh worker.
    ``cause`` says how it ended where there is no exit code (a Ray actor)."""

    worker_index: int
    pid: int | None
    exitcode: int | None
    source_ids: tuple[str, ...]
    restarting: bool
    cause: str | None = None
    kind: str = "worker"  # "worker" (a pool process) or "ray actor"

    @property
    def worker(self) -> str:
        return f"{self.kind} {self.worker_index} (pid {self.pid})"

    @property
    def reason(self) -> str:
        return self.cause or exit_reason(self.exitcode)

    def describe(self) -> str:
        return (f"{self.worker} died ({self.reason}) serving {', '.join(self.source_ids)}; "
                + ("restarted" if self.restarting else "not restarted"))


def exit_reason(exitcode: int | None) -> str:
    """How a worker process ended, in words."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass(frozen=True)
class Snapshot:
    """A stream's tracker state after ``frame_id`` and the MOT lines it wrote since its previous snapshot, so a
    stream whose worker dies resumes from here on another worker (``config.ResumePoint``)."""

    source_id: str
    frame_id: int
    tracker_state: bytes
    mot_lines: str
    motion_state: bytes = b""  # ``CmcTracker.motion_state`` where the stream compensates camera motion


@dataclass(frozen=True)
class Done:
    """A stream finished (exactly once per stream), with its report."""

    report: StreamReport


FleetMessage = Started | Progress | Tracks | WorkerDied | Snapshot | Done
