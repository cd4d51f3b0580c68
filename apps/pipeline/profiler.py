"""Per-frame, per-stage timing of the tracking pipeline, its statistics, files and plots.

Every stage of every frame is timed with ``time.perf_counter_ns`` (tens of nanoseconds of overhead), so the
report shows where a frame's time goes: median, p95 and mean per stage, each stage's share of the frame's
total work, and the frame rate that stage alone could sustain. Reports are saved as JSON (full samples,
reloadable) and CSV (the summary table) and drawn as stacked bars (one report, or fp32 vs int8 side by side).
"""
from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Columns of the summary table, in order (times in milliseconds).
SUMMARY_COLUMNS = ("stage", "median_ms", "p95_ms", "mean_ms", "share", "fps")
TOTAL_ROW = "total"


@dataclass
class StageStats:
    """Summary statistics of one stage over all frames."""

    stage: str
    median_ms: float
    p95_ms: float
    mean_ms: float
    share: float  # fraction of the mean total frame time spent in this stage
    fps: float  # frames per second this stage alone could sustain (1 / mean)

    def as_row(self) -> dict[str, float | str]:
        return {name: getattr(self, name) for name in SUMMARY_COLUMNS}


def stage_stats(stage: str, samples_ns: np.ndarray, total_mean_ns: float) -> StageStats:
    """Statistics of one stage's per-frame durations (nanoseconds)."""
    samples = np.asarray(samples_ns, dtype=np.float64)
    if samples.size == 0:
        raise ValueError(f"stage {stage!r} has no samples")
    mean = float(samples.mean())
    return StageStats(
        stage=stage,
        median_ms=float(np.median(samples)) / 1e6,
        p95_ms=float(np.percentile(samples, 95)) / 1e6,
        mean_ms=mean / 1e6,
        share=mean / total_mean_ns if total_mean_ns > 0 else 0.0,
        fps=1e9 / mean if mean > 0 else float("inf"),
    )


@dataclass
class TimingReport:
    """Per-frame stage durations of one run plus facts about the run.

    ``samples_ns[stage][i]`` is frame ``i``'s time in ``stage``; a stage a frame skipped counts 0 ns.
    ``info`` holds run facts (source, precision, wall time, source fps, drops...), all JSON-serialisable.
    """

    stages: list[str]
    samples_ns: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(len(next(iter(self.samples_ns.values())))) if self.samples_ns else 0

    def totals_ns(self) -> np.ndarray:
        """Each frame's total work: the sum of its stage durations."""
        return np.sum([self.samples_ns[s] for s in self.stages], axis=0).astype(np.float64)

    def summary(self) -> list[StageStats]:
        """One row per stage, then the ``total`` row."""
        if self.num_frames == 0:
            raise ValueError("timing report has no frames")
        totals = self.totals_ns()
        total_mean = float(totals.mean())
        rows = [stage_stats(s, self.samples_ns[s], total_mean) for s in self.stages]
        rows.append(stage_stats(TOTAL_ROW, totals, total_mean))
        return rows

    def mean_ms(self, stage: str) -> float:
        return float(np.mean(self.samples_ns[stage])) / 1e6

    def format_table(self, title: str | None = None) -> str:
        """The summary as an aligned text table, followed by the run facts."""
        lines = [title] if title else []
        lines.append(f"{'stage':<22}{'median ms':>11}{'p95 ms':>10}{'mean ms':>10}{'share':>8}{'fps':>10}")
        for row in self.summary():
            lines.append(
                f"{row.stage:<22}{row.median_ms:>11.3f}{row.p95_ms:>10.3f}{row.mean_ms:>10.3f}"
                f"{row.share * 100:>7.1f}%{row.fps:>10.1f}"
            )
        lines += [f"{key}: {info_text(value)}" for key, value in self.info.items()]
        return "\n".join(lines)

    # ---- files ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "info": self.info,
            "stages": list(self.stages),
            "summary": [row.as_row() for row in self.summary()],
            "samples_ns": {s: [int(v) for v in self.samples_ns[s]] for s in self.stages},
        }

    @classmethod
    def from_dict(cls, data: dict) -> TimingReport:
        stages = list(data["stages"])
        samples = {s: np.asarray(data["samples_ns"][s], dtype=np.int64) for s in stages}
        return cls(stages=stages, samples_ns=samples, info=dict(data.get("info", {})))

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> TimingReport:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a timing report ({exc})") from exc

    def save_csv(self, path: str | Path) -> Path:
        """The summary table (one row per stage plus ``total``)."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
            writer.writeheader()
            for row in self.summary():
                writer.writerow(row.as_row())
        return path


def read_summary_csv(path: str | Path) -> list[StageStats]:
    """Read a summary CSV written by :meth:`TimingReport.save_csv`."""
    with Path(path).open(newline="") as handle:
        return [
            StageStats(row["stage"], *(float(row[c]) for c in SUMMARY_COLUMNS[1:]))
            for row in csv.DictReader(handle)
        ]


def info_text(value: object) -> str:
    """One run fact for the terminal: a number, a text, or a small flat record inline (``p50_ms 12.3, p95_ms
    20.1``); nested records (the int8 report, the list of outages) are for the JSON, not a terminal."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict) and value and all(isinstance(v, (int, float, str)) for v in value.values()):
        return ", ".join(f"{k} {info_text(v)}" for k, v in value.items())
    if isinstance(value, (dict, list)):
        return "see the timing JSON"
    return str(value)


class StageProfiler:
    """Collects stage durations frame by frame.

    ``begin_frame()`` opens a frame, ``add(stage, ns)`` adds time to a stage of the open frame (durations
    measured elsewhere, e.g. on the reader thread), ``with profiler.stage(name):`` times a block, and
    ``end_frame()`` closes it. Stages are reported in the order they were first seen unless given upfront.
    """

    def __init__(self, stages: Sequence[str] = ()) -> None:
        self._stages: list[str] = list(stages)
        self._frames: list[dict[str, int]] = []
        self._current: dict[str, int] | None = None
        self._late: dict[int, dict[str, int]] = {}

    def begin_frame(self) -> None:
        self._current = {}

    def add(self, stage: str, duration_ns: int) -> None:
        if self._current is None:
            raise RuntimeError("add() outside a frame: call begin_frame() first")
        if stage not in self._stages:
            self._stages.append(stage)
        self._current[stage] = self._current.get(stage, 0) + int(duration_ns)

    def stage(self, name: str) -> _StageTimer:
        return _StageTimer(self, name)

    def end_frame(self) -> None:
        if self._current is None:
            raise RuntimeError("end_frame() without begin_frame()")
        self._frames.append(self._current)
        self._current = None

    def add_to_frame(self, frame_index: int, stage: str, duration_ns: int) -> None:
        """Add time to frame ``frame_index`` from another thread (e.g. the video writer's encode time).

        The frame may still be open; additions are merged when the report is made.
        """
        if stage not in self._stages:
            self._stages.append(stage)
        late = self._late.setdefault(frame_index, {})
        late[stage] = late.get(stage, 0) + int(duration_ns)

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    def report(self, info: dict | None = None) -> TimingReport:
        """The frames recorded so far (closed frames only) as a :class:`TimingReport`."""
        frames = [dict(f) for f in self._frames]
        for index, extra in list(self._late.items()):
            if index < len(frames):
                for stage, ns in extra.items():
                    frames[index][stage] = frames[index].get(stage, 0) + ns
        stages = [s for s in self._stages if any(s in f for f in frames)]  # declared but never run: left out
        samples = {s: np.fromiter((f.get(s, 0) for f in frames), dtype=np.int64, count=len(frames)) for s in stages}
        return TimingReport(stages=stages, samples_ns=samples, info=dict(info or {}))


class _StageTimer:
    """Context manager adding the elapsed time of its block to one stage."""

    __slots__ = ("_profiler", "_name", "_start")

    def __init__(self, profiler: StageProfiler, name: str) -> None:
        self._profiler = profiler
        self._name = name
        self._start = 0

    def __enter__(self) -> _StageTimer:
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc) -> None:
        self._profiler.add(self._name, time.perf_counter_ns() - self._start)


# ---- plots -----------------------------------------------------------------------------------------------
def plot_reports(reports: dict[str, TimingReport], path: str | Path, title: str = "Per-frame time by stage") -> Path:
    """Stacked bars of mean time per stage, one bar per report (e.g. ``{"fp32": a, "int8": b}``), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not reports:
        raise ValueError("plot_reports needs at least one report")
    stages = _union_in_order(r.stages for r in reports.values())
    labels = list(reports)
    fig, ax = plt.subplots(figsize=(3 + 1.6 * len(labels), 5))
    bottoms = np.zeros(len(labels))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(stages), 2)))
    for stage, colour in zip(stages, colours):
        heights = np.array([r.mean_ms(stage) if stage in r.samples_ns else 0.0 for r in reports.values()])
        ax.bar(labels, heights, bottom=bottoms, label=stage, color=colour, width=0.6)
        bottoms += heights
    for x, (total, report) in enumerate(zip(bottoms, reports.values())):
        fps = report.info.get("end_to_end_fps")
        text = f"{total:.1f} ms" + (f"\n{fps:.1f} fps" if isinstance(fps, (int, float)) else "")
        ax.annotate(text, (x, total), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("mean time per frame (ms)")
    ax.set_ylim(0, bottoms.max() * 1.2 if bottoms.max() > 0 else 1)
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _union_in_order(stage_lists: Iterable[list[str]]) -> list[str]:
    seen: list[str] = []
    for stages in stage_lists:
        seen.extend(s for s in stages if s not in seen)
    return seen
