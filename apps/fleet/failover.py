"""The driver's record of what each stream has done, so a stream whose worker dies resumes where it was.

Both fleet backends (the process pool and the Ray actors) feed every message of their workers through one
:class:`FailoverLedger`. It keeps each stream's last snapshot with every MOT line up to it, and how far each
stream has read; when a worker dies it hands back the jobs to start again (each from its last snapshot, at most
``MAX_RESTARTS`` times a stream) and keeps one :class:`~int8track.apps.fleet.report.Failover` per resumption for the
fleet report.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from int8track.apps.fleet.config import ResumePoint, StreamJob
from int8track.apps.fleet.messages import Done, FleetMessage, Progress, Snapshot
from int8track.apps.fleet.report import Failover

#: A stream resumes from its last snapshot after its worker dies, at most this many times.
MAX_RESTARTS = 3


@dataclass
class _Pending:
    """A failover whose stream has not read a new frame yet."""

    record: Failover
    noticed: float  # time.perf_counter() when the driver saw the worker die


@dataclass(frozen=True)
class Lost:
    """What a worker's death leaves: the jobs to start again (resume points set) and those out of restarts."""

    again: tuple[StreamJob, ...]
    given_up: tuple[StreamJob, ...]


class FailoverLedger:
    """Snapshots, read positions and restarts of every stream of one fleet run, and its failovers."""

    def __init__(self) -> None:
        self._resume: dict[str, ResumePoint] = {}  # each stream's last snapshot, with all MOT lines up to it
        self._read: dict[str, int] = {}  # the last frame each stream reported reading (its current worker)
        self._pending: dict[str, _Pending] = {}
        self.restarts: dict[str, int] = {}
        self.failovers: list[Failover] = []

    def note(self, message: FleetMessage) -> FleetMessage:
        """Take in one worker message; returns it (a ``Done`` of a restarted stream with its restart count)."""
        if isinstance(message, Snapshot):
            before = self._resume.get(message.source_id)
            text = (before.mot_text if before is not None else "") + message.mot_lines
            self._resume[message.source_id] = ResumePoint(message.frame_id, message.tracker_state, text)
        elif isinstance(message, Progress):
            self._read[message.source_id] = message.frames_read
            pending = self._pending.get(message.source_id)
            if pending is not None and message.frames_read > pending.record.resumed_after_frame:
                self._close(message.source_id, time.perf_counter() - pending.noticed)
        elif isinstance(message, Done):
            source_id = message.report.source_id
            if source_id in self._pending:  # it ended without reading a new frame (the source had no more)
                self._close(source_id, None)
            if self.restarts.get(source_id):
                message = Done(replace(message.report, restarts=self.restarts[source_id]))
        return message

    def lost(self, worker: str, cause: str, jobs: Sequence[StreamJob]) -> Lost:
        """``worker`` died (``cause``) with ``jobs`` unfinished: the jobs to start again, each from its stream's
        last snapshot (or where it was resumed from before), and those that have used up their restarts."""
        again, given_up = [], []
        noticed = time.perf_counter()
        for job in jobs:
            if job.source_id in self._pending:  # it died again before it read a new frame: that one never resumed
                self._close(job.source_id, None)
            if self.restarts.get(job.source_id, 0) >= MAX_RESTARTS:
                given_up.append(job)
                continue
            self.restarts[job.source_id] = self.restarts.get(job.source_id, 0) + 1
            resume = self._resume.get(job.source_id, job.resume)
            after = resume.frame_id if resume is not None else 0
            # frames the dead worker had read past its last snapshot: the new worker reads and tracks them again
            replayed = max(0, self._read.get(job.source_id, after) - after)
            record = Failover(worker, job.source_id, cause, after, replayed, None)
            self._pending[job.source_id] = _Pending(record, noticed)
            self._read[job.source_id] = after
            again.append(replace(job, resume=resume))
        return Lost(tuple(again), tuple(given_up))

    def _close(self, source_id: str, time_to_resume_s: float | None) -> None:
        pending = self._pending.pop(source_id)
        self.failovers.append(replace(pending.record, time_to_resume_s=time_to_resume_s))

    def report_failovers(self) -> tuple[Failover, ...]:
        """Every failover of the run, those whose stream never read again included (no time to resume)."""
        return tuple(self.failovers) + tuple(pending.record for pending in self._pending.values())
