"""What a run of a live source reports: frames received, tracked and dropped (and why), latency, outages.

Latency is measured per frame from receipt (the reader got the decoded frame, :attr:`Frame.received_ns`) to
its tracks being written; :func:`reception_info` adds it to the run's ``info`` with the reader's counts.
"""
from __future__ import annotations

import time

import numpy as np

from int8track.apps.io.read_ahead import ReadAhead, wrapped_attribute
from int8track.apps.io.reconnect import outage_info


class LatencyRecorder:
    """Receipt-to-written latency of each frame, in milliseconds."""

    def __init__(self) -> None:
        self._ms: list[float] = []

    def written(self, received_ns: int | None) -> None:
        """Record a frame whose tracks were just written; ``received_ns`` None (unknown) is skipped."""
        if received_ns is not None:
            self._ms.append((time.perf_counter_ns() - received_ns) / 1e6)

    def summary(self) -> dict:
        """``{"frames", "p50_ms", "p95_ms", "max_ms"}`` (the percentiles None when nothing was recorded)."""
        if not self._ms:
            return {"frames": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
        values = np.asarray(self._ms)
        return {"frames": len(values), "p50_ms": round(float(np.percentile(values, 50)), 3),
                "p95_ms": round(float(np.percentile(values, 95)), 3), "max_ms": round(float(values.max()), 3)}


def reception_info(reader: ReadAhead, tracked: int, latency: LatencyRecorder) -> dict:
    """Frames received / tracked / dropped by reason, latency from receipt to written, and outages."""
    outages = wrapped_attribute(reader.source, "outages")  # a reconnecting source, under any wrapper
    received = reader.counts.received
    return {
        "frames_received": received,
        "frames_tracked": tracked,
        "frames_dropped": {"buffer_full": reader.counts.dropped_buffer_full, "decode_error": reader.decode_errors,
                           # received but neither tracked nor dropped: still in the buffer when a stop came
                           "not_processed": max(0, received - tracked - reader.counts.dropped_buffer_full)},
        "tracked_fraction": round(tracked / received, 4) if received else None,
        "latency_ms": latency.summary(),
        "outages": outage_info(list(outages or []), [*reader.frames_before_outage, received]),
    }
