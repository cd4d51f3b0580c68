"""Measured speed of int8 candidates, kept per machine so the speed plan is measured once and then reused.

Which convs are worth int8 is a property of the graph and the machine, not of the calibration frames. The
measurement itself is made to not depend on the machine's load (``quant.speed``), but it is still a measurement,
and it takes many timed runs: the first quantization of a graph on a machine stores the timings, and every later one
(another video, a cleared model cache) reads them back, so the same weights and frames give the same plan without
measuring again. Delete the folder to measure again.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort

from int8track.files import write_text_atomically

#: in the key, so that timings measured the way older code measured them (fastest of 9 rounds) are not reused
TIMING_METHOD = "median ratio to fp32 of interleaved rounds"


def machine_id() -> dict[str, str]:
    """What the timings depend on besides the graph: CPU model, core count and ONNX Runtime version."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "machine": platform.machine(), "onnxruntime": ort.__version__}


class SpeedTable:
    """Timings by key in ``folder`` (one JSON file each); ``folder`` None keeps nothing (measure every time)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.reused = False

    def key(self, graph: bytes, candidates: dict[str, list[str]], input_shape: tuple[int, ...],
            num_threads: int) -> str:
        digest = hashlib.sha256(graph)
        digest.update(json.dumps({"candidates": candidates, "shape": list(input_shape), "threads": num_threads,
                                  "machine": machine_id(), "timing": TIMING_METHOD}, sort_keys=True).encode())
        return digest.hexdigest()[:20]

    def timings(self, key: str, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
        """The stored timings under ``key``, or ``measure()``'s, stored."""
        path = None if self.folder is None else self.folder / f"{key}.json"
        if path is not None and path.is_file():
            try:
                stored = {k: float(v) for k, v in json.loads(path.read_text())["timings_ms"].items()}
                if not stored:
                    raise ValueError("no timings")
                self.reused = True
                return stored
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # measure again and overwrite
                print(f"warning: speed table entry {path} is unreadable ({type(exc).__name__}); measuring again",
                      file=sys.stderr)
                self.reused = False
        timings = measure()
        if path is not None:
            write_text_atomically(path, json.dumps({"timings_ms": timings, "machine": machine_id()}, indent=1) + "\n")
        return timings
