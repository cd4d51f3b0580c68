"""The fleet report: one row per stream of a many-source run, as a text table, JSON and CSV.

A :class:`StreamReport` is built where the stream ran (a worker process or a Ray actor) and travels back as a
plain dict; the driver adds MOTA/IDF1 for sources that are MOT sequences with ground truth
(:func:`score_stream`) and writes the :class:`FleetReport`.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from int8track.apps.io.urls import redact_url

REPORT_JSON = "fleet_report.json"
REPORT_CSV = "fleet_report.csv"


@dataclass(frozen=True)
class StreamReport:
    """What one stream did. ``fps`` is frames over the stream's own wall time (from its first read to its last
    output); ``p95_latency_ms`` is the 95th percentile of a frame's summed stage times; ``stage_share`` the
    fraction of the summed stage time each stage took. ``error`` is None when the stream ended normally."""

    source_id: str
    location: str
    output_dir: str
    worker: str = ""
    frames: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    source_fps: float | None = None
    kept_up: bool | None = None
    dropped: int = 0
    p95_latency_ms: float | None = None
    restarts: int = 0
    error: str | None = None
    results_path: str | None = None
    mota: float | None = None
    idf1: float | None = None
    detector_calls: int = 0  # frames the detector ran on (``--detect-every``); the rest were propagated
    propagated_share: float = 0.0  # fraction of the tracked frames tracked without a detector call
    stage_share: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a report is printed and stored: a URL's credentials never get into it, whoever builds it
        object.__setattr__(self, "location", redact_url(self.location))

    @property
    def ok(self) -> bool:
        return self.error is None and self.frames > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamReport:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


#: CSV columns: every scalar field (the per-stage shares go to JSON only).
CSV_COLUMNS = [f.name for f in fields(StreamReport) if f.name != "stage_share"]


@dataclass(frozen=True)
class Failover:
    """One stream resumed after its worker died: which worker (and why it ended), the snapshot's frame it resumed
    after (0: from the start), the frames the dead worker had read past that snapshot (read and tracked again),
    and the seconds from the driver noticing the death to the stream reading its first new frame (None: it read
    none: the source had ended, or the new worker died first)."""

    worker: str
    source_id: str
    cause: str
    resumed_after_frame: int
    frames_replayed: int
    time_to_resume_s: float | None

    def describe(self) -> str:
        resumed = "-" if self.time_to_resume_s is None else f"{self.time_to_resume_s:.2f} s"
        return (f"{self.source_id}: {self.worker} died ({self.cause}); resumed after frame "
                f"{self.resumed_after_frame}, {self.frames_replayed} frames replayed, time to resume {resumed}")


@dataclass(frozen=True)
class FleetReport:
    """All streams of one run plus the run's facts (workers, backend, precision, wall time)."""

    streams: tuple[StreamReport, ...]
    info: dict[str, Any] = field(default_factory=dict)
    failovers: tuple[Failover, ...] = ()

    @property
    def failed(self) -> list[StreamReport]:
        return [stream for stream in self.streams if not stream.ok]

    @property
    def total_frames(self) -> int:
        return sum(stream.frames for stream in self.streams)

    def to_dict(self) -> dict[str, Any]:
        return {"info": dict(self.info), "streams": [stream.to_dict() for stream in self.streams],
                "failovers": [asdict(failover) for failover in self.failovers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetReport:
        return cls(tuple(StreamReport.from_dict(item) for item in data["streams"]), dict(data.get("info", {})),
                   tuple(Failover(**item) for item in data.get("failovers", [])))

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> FleetReport:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a fleet report ({exc})") from exc

    def save_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for stream in self.streams:
                row = stream.to_dict()
                writer.writerow({column: "" if row[column] is None else row[column] for column in CSV_COLUMNS})
        return path

    def save(self, folder: str | Path) -> list[Path]:
        folder = Path(folder)
        return [self.save_json(folder / REPORT_JSON), self.save_csv(folder / REPORT_CSV)]

    def format_table(self) -> str:
        """Aligned text: one line per stream, then the totals and each failed stream's error in full."""
        header = (f"{'source':<24}{'frames':>8}{'fps':>8}{'kept up':>9}{'dropped':>9}{'det/s':>7}{'prop %':>7}"
                  f"{'p95 ms':>8}{'MOTA':>7}{'IDF1':>7}  status")
        lines = [header, "-" * len(header)]
        for s in self.streams:
            kept = "-" if s.kept_up is None else ("yes" if s.kept_up else "no")
            p95 = "-" if s.p95_latency_ms is None else f"{s.p95_latency_ms:.1f}"
            mota = "-" if s.mota is None else f"{100 * s.mota:.1f}"
            idf1 = "-" if s.idf1 is None else f"{100 * s.idf1:.1f}"
            status = "ok" if s.ok else "FAILED"
            if s.restarts:
                status += f" (restarted {s.restarts}x)"
            rate = s.detector_calls / s.wall_s if s.wall_s > 0 else 0.0
            lines.append(f"{s.source_id[:23]:<24}{s.frames:>8d}{s.fps:>8.1f}{kept:>9}{s.dropped:>9d}{rate:>7.1f}"
                         f"{100 * s.propagated_share:>7.1f}{p95:>8}{mota:>7}{idf1:>7}  {status}")
        wall = self.info.get("wall_s")
        total = f"{len(self.streams)} streams, {self.total_frames} frames"
        if wall:
            total += f" in {wall:.1f} s: {self.total_frames / wall:.1f} fps aggregate"
        lines.append(total)
        lines.extend(f"failover: {failover.describe()}" for failover in self.failovers)
        lines.extend(f"{s.source_id}: {s.error or 'no frames read'}" for s in self.failed)
        return "\n".join(lines)


def stream_report_from_timing(base: StreamReport, timing: Any) -> StreamReport:
    """``base`` completed from a run's ``apps.profiler.TimingReport`` (frames, rate, drops, latency, shares)."""
    info = timing.info
    frames = timing.num_frames
    values: dict[str, Any] = {
        "frames": frames,
        "wall_s": float(info.get("wall_s", 0.0)),
        "fps": float(info.get("end_to_end_fps", 0.0)),
        "source_fps": info.get("source_fps"),
        "kept_up": info.get("kept_up"),
        "dropped": int(info.get("dropped_frames", 0)),
        "detector_calls": int(info.get("detector_calls", frames)),
        "propagated_share": float(info.get("frames_propagated", 0)) / frames if frames else 0.0,
    }
    if frames:
        totals = timing.totals_ns()
        values["p95_latency_ms"] = float(np.percentile(totals, 95)) / 1e6
        grand = float(totals.sum()) or 1.0
        values["stage_share"] = {s: float(np.sum(timing.samples_ns[s])) / grand for s in timing.stages}
    return replace(base, **values)


def score_stream(report: StreamReport) -> StreamReport:
    """``report`` with MOTA and IDF1 when its source is a MOT sequence folder with ``gt/gt.txt`` and it wrote
    results; the frames it did not reach are not scored (a ``--max-frames`` run is scored on its own frames)."""
    location = Path(report.location)
    if report.results_path is None or report.frames == 0 or not (location / "gt" / "gt.txt").is_file():
        return report
    from int8track.apps.evaluation.metrics import accumulate, protocol_for, summarize
    from int8track.apps.io.motchallenge import load_sequence, read_results

    sequence = load_sequence(location)
    gt = sequence.ground_truth()
    accumulator = accumulate(gt, read_results(report.results_path), report.frames, protocol_for(gt, sequence.name))
    metrics = summarize({sequence.name: accumulator})[sequence.name]
    return replace(report, mota=metrics.mota, idf1=metrics.idf1)
