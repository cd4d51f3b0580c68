"""The driver's record of what each stream has done, so a stream whose worker dies resumes where it was.

Both fleet backends (the process pool and the Ray actors) feed every message of their workers through one
:class:`FailoverLedger`. It keeps each stream's last snapshot with every MOT line up to it (the lines in an
anonymous temporary file, not in memory: a day of one live camera is hundreds of MB), and how far each stream has
read; when a worker dies it hands back the jobs to start again (each from its last snapshot, at most
``MAX_RESTARTS`` times a stream) and keeps one :class:`~int8track.apps.fleet.report.Failover` per resumption for the
fleet report.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import IO

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


class _Spool:
    """One stream's last snapshot: its frame and tracker state in memory, the MOT lines up to it on disk."""

    def __init__(self) -> None:
        # closed when the stream ends (or gives up); an unlinked file, so nothing stays behind even on a crash
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="int8track-mot-")  # noqa: SIM115
        self._length = 0
        self.frame_id = 0
        self.tracker_state = b""
        self.motion_state = b""

    def add(self, snapshot: Snapshot) -> None:
        self._file.seek(self._length)
        self._length += self._file.write(snapshot.mot_lines.encode())
        self.frame_id, self.tracker_state = snapshot.frame_id, snapshot.tracker_state
        self.motion_state = snapshot.motion_state

    def resume_point(self) -> ResumePoint:
        """The snapshot with every MOT line up to it (read back now, for the job that resumes from it)."""
        self._file.seek(0)
        return ResumePoint(self.frame_id, self.tracker_state, self._file.read(self._length).decode(),
                           self.motion_state)

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class Lost:
    """What a worker's death leaves: the jobs to start again (resume points set) and those out of restarts."""

    again: tuple[StreamJob, ...]
    given_up: tuple[StreamJob, ...]


class FailoverLedger:
    """Snapshots, read positions and restarts of every stream of one fleet run, and its failovers."""

    def __init__(self) -> None:
        self._snapshots: dict[str, _Spool] = {}  # each stream's last snapshot, with all MOT lines up to it
        self._read: dict[str, int] = {}  # the last frame each stream reported reading (its current worker)
        self._pending: dict[str, _Pending] = {}
        self.restarts: dict[str, int] = {}
        self.failovers: list[Failover] = []

    def note(self, message: FleetMessage) -> FleetMessage:
        """Take in one worker message; returns it (a ``Done`` of a restarted stream with its restart count)."""
        if isinstance(message, Snapshot):
            self._snapshots.setdefault(message.source_id, _Spool()).add(message)
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
            self._forget_snapshots(source_id)  # a stream ends once
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
                self._forget_snapshots(job.source_id)
                continue
            self.restarts[job.source_id] = self.restarts.get(job.source_id, 0) + 1
            spool = self._snapshots.get(job.source_id)
            resume = spool.resume_point() if spool is not None else job.resume
            after = resume.frame_id if resume is not None else 0
            # frames the dead worker had read past its last snapshot: the new worker reads and tracks them again
            replayed = max(0, self._read.get(job.source_id, after) - after)
            record = Failover(worker, job.source_id, cause, after, replayed, None)
            self._pending[job.source_id] = _Pending(record, noticed)
            self._read[job.source_id] = after
            again.append(replace(job, resume=resume))
        return Lost(tuple(again), tuple(given_up))

    def _forget_snapshots(self, source_id: str) -> None:
        """A stream that will not resume again: its snapshot file is closed (and so deleted)."""
        spool = self._snapshots.pop(source_id, None)
        if spool is not None:
            spool.close()

    def _close(self, source_id: str, time_to_resume_s: float | None) -> None:
        pending = self._pending.pop(source_id)
        self.failovers.append(replace(pending.record, time_to_resume_s=time_to_resume_s))

    def report_failovers(self) -> tuple[Failover, ...]:
        """Every failover of the run, those whose stream never read again included (no time to resume)."""
        return tuple(self.failovers) + tuple(pending.record for pending in self._pending.values())
