"""Cache of int8-quantized detectors, so calibration runs once per model and setting.

An entry is the int8 ONNX file that ``quant`` saves (with its ``int8track_spec`` metadata), stored under
``$INT8TRACK_HOME/int8/`` (default ``~/.cache/int8track/int8/``) with a name made from a hash of the weights
file's bytes, the input size, the quantization settings (``quant.QuantConfig.key``, which carries the algorithm
version, so a model made by older quantization code is not reused) and the calibration description, which names the
calibration source by :func:`source_fingerprint`: change any of them (e.g. track another video) and a new
model is made. Beside each model a ``.json`` file records what went into its key, for a user who wonders what
a cached file was calibrated on. Entries are written to temporary names and renamed, so a crash never leaves
a broken model behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from int8track.apps.io.urls import redact_url
from int8track.files import write_atomically

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from int8track.detectors.detector import Detector
    from int8track.quant.config import QuantConfig

KEY_LENGTH = 20  # hex characters of the sha256 used in file names


def cache_root() -> Path:
    """``$INT8TRACK_HOME/int8`` or ``~/.cache/int8track/int8``."""
    home = Path(os.environ.get("INT8TRACK_HOME", Path.home() / ".cache" / "int8track")).expanduser()
    return home / "int8"


def speed_table_root() -> Path:
    """Where the speed plan's timings per graph and machine are kept (``quant.speed_table``):
    ``$INT8TRACK_SPEED_TABLE``, else ``$INT8TRACK_HOME/speed`` (default ``~/.cache/int8track/speed``)."""
    if os.environ.get("INT8TRACK_SPEED_TABLE"):
        return Path(os.environ["INT8TRACK_SPEED_TABLE"]).expanduser()
    return cache_root().parent / "speed"


def resolve_weights(model: str, weights: str | Path | None = None) -> Path:
    """The weights file to load: ``weights`` if given, else the zoo model's cached copy (downloaded when
    possible). FileNotFoundError with a one-line explanation when neither is available."""
    if weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"{weights}: weights file not found")
        return Path(weights)
    from int8track.detectors.zoo import zoo_spec, zoo_weights

    try:
        return zoo_weights(zoo_spec(model))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc} (or pass --weights PATH)") from exc


def source_fingerprint(location: str | Path, live: bool = False) -> dict:
    """A cheap identity of a calibration source, for the cache key (no frame is read).

    A file: its resolved path, size and modification time. A folder (image folder, MOT sequence): its resolved
    path, the number and total size of the files under it and the latest modification time of anything under
    it, so adding, removing, renaming or rewriting an image changes it. A live source (camera index, URL): the
    string as given (credentials removed), since its frames change without trace. FileNotFoundError when a path
    does not exist.
    """
    if live:
        return {"live": redact_url(str(location))}  # the record is stored: never with credentials
    path = Path(location)
    if path.is_file():
        info = path.stat()
        return {"path": str(path.resolve()), "bytes": info.st_size, "mtime_ns": info.st_mtime_ns}
    if not path.is_dir():
        raise FileNotFoundError(f"{location}: calibration source not found")
    infos = [entry.stat() for entry in (path, *path.rglob("*"))]
    files = [info for info in infos if stat.S_ISREG(info.st_mode)]
    return {"path": str(path.resolve()), "files": len(files), "bytes": sum(info.st_size for info in files),
            "mtime_ns": max(info.st_mtime_ns for info in infos)}


def cache_key(weights: str | Path, input_size: Sequence[int], settings: dict) -> str:
    """Hash of the weights file's bytes, the (h, w) input size and the JSON of ``settings``."""
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(json.dumps({"input_size": [int(v) for v in input_size], "settings": settings},
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()[:KEY_LENGTH]


@dataclass
class CachedModel:
    """A cache lookup's answer: the int8 detector, its file, whether it was already cached and the calibration
    description it was made with (the key guarantees that a reused model was made with the one asked for)."""

    detector: Detector
    path: Path
    reused: bool
    calibration: dict
    #: the quantizer's report stored in the model (``quant.QuantReport.to_dict``), {} when it has none
    quant_report: dict
    #: wall seconds this lookup spent making the model (reading frames, starting the calibration process and
    #: calibrating); 0 when it was reused
    make_seconds: float = 0.0


class Int8ModelCache:
    """Find or make the int8 version of a detector.

    ``quantize(detector, frames, config=QuantConfig)`` and ``load(path, num_threads)`` default to
    ``quant.quantize_detector`` and ``detectors.load_detector``; they are parameters so a caller can use
    other implementations of the same contract.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        quantize: Callable | None = None,
        load: Callable | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self._quantize = quantize
        self._load = load

    def path_for(self, model_name: str, key: str) -> Path:
        return self.root / f"{model_name}-int8-{key}.onnx"

    def get(
        self,
        detector,
        weights: str | Path,
        calibration_frames: Callable[[], list[np.ndarray]],
        config: QuantConfig | None = None,
        calibration: dict | None = None,
        num_threads: int | None = None,
        refresh: bool = False,
    ) -> CachedModel:
        """The int8 model of ``detector`` (loaded from ``weights``), with the detector's score and NMS thresholds
        and class list.

        ``config`` (default ``QuantConfig()``) goes to the quantizer; ``calibration`` describes the calibration
        data (name its source with :func:`source_fingerprint`). Both are part of the cache key.
        ``calibration_frames()`` is called, and the model quantized, only when the cache has no entry for that
        key (or ``refresh``).
        """
        from int8track.quant.config import QuantConfig
        from int8track.quant.runtime_int8 import FULL_WEIGHT_QMAX, runtime_weight_qmax

        config = config or QuantConfig()
        settings: dict[str, Any] = {"quant": config.key(), "calibration": calibration or {}}
        weight_qmax = runtime_weight_qmax()
        if weight_qmax != FULL_WEIGHT_QMAX:  # a model made for int32 sums must not be reused where pairs saturate
            settings["int8_weight_qmax"] = weight_qmax
        key = cache_key(weights, detector.spec.input_size, settings)
        path = self.path_for(detector.spec.name, key)
        loaded = self._load_or_discard(path, detector, num_threads) if path.is_file() and not refresh else None
        reused = loaded is not None
        if loaded is None:
            record = {"weights": str(Path(weights).resolve()), "input_size": list(detector.spec.input_size),
                      "settings": settings}
            start = time.perf_counter()
            self._make(detector, calibration_frames, config, path, record)
            made = time.perf_counter() - start
            loaded = self._load_entry(path, detector, num_threads)
        return CachedModel(loaded, path, reused, settings["calibration"], stored_report(path),
                           0.0 if reused else made)

    def _load_entry(self, path: Path, detector, num_threads: int | None):
        return self._loader()(str(path), num_threads=num_threads, conf_thresh=detector.conf_thresh,
                              nms_thresh=detector.nms_thresh, classes=detector.classes)

    def _load_or_discard(self, path: Path, detector, num_threads: int | None):
        """The cached detector, or None after reporting and deleting an entry that does not load (a truncated
        copy, a disk error): otherwise every later run would fail on it until the user found --recalibrate."""
        try:
            return self._load_entry(path, detector, num_threads)
        except Exception as exc:  # whatever the loader raises on a bad file, the entry is unusable
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"warning: cached int8 model {path} does not load ({reason[:200]}); removing it and "
                  "calibrating again", file=sys.stderr)
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            return None

    def _make(self, detector, frames: Callable[[], list[np.ndarray]], config: QuantConfig, path: Path,
              record: dict) -> None:
        """Quantize and write the model and its ``.json`` record (the record first: no model without one)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"{path.parent}: cannot create the int8 model cache ({exc.strerror}); "
                          "set INT8TRACK_HOME to a writable folder") from exc
        write_record = partial(write_atomically, path.with_suffix(".json"), lambda temp: temp.write_text(
            json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"))
        if self._quantize is None:  # the library's quantizer, in a child process (``quantize_in_child``)
            quantize_in_child(detector, frames, config, path, before=write_record)
        else:
            quantized = self._quantize(detector, frames(), config=config, speed_table=speed_table_root())
            write_record()
            quantized.save(path)

    def _loader(self) -> Callable:
        if self._load is None:
            from int8track.detectors import load_detector

            self._load = load_detector
        return self._load


def quantize_in_child(detector, frames: Callable[[], list[np.ndarray]], config: QuantConfig, path: Path,
                      before: Callable[[], object] = lambda: None) -> None:
    """``quant.quantize_detector`` in a fresh (spawned) process that writes the model to ``path``; ``frames()``
    is called here while the child starts (its imports overlap the frame reading), then ``before()``.

    A separate process because the calibration's threads and memory end with it: the same model file inferred
    markedly slower in a process that had calibrated (``benchmarks/README.md``, "Calibration in a child
    process"). Frames and the float model travel by pickle; the steps still print to the same stderr. A plain
    ``multiprocessing.Process`` rather than a pool, so that an interrupted run stops the child with the public
    ``terminate()`` and a child killed from outside is noticed by its exit code.
    """
    import copy
    import multiprocessing

    portable = copy.copy(detector)
    portable.runner = None  # an ONNX Runtime session does not pickle; the quantizer makes its own
    portable.runner_factory = None
    context = multiprocessing.get_context("spawn")
    job_out, job_in = context.Pipe(duplex=False)
    result_out, result_in = context.Pipe(duplex=False)
    child = context.Process(target=_calibration_child, args=(job_out, result_in), name="int8-calibration")
    child.start()  # the child imports the quantizer now, then waits for its job
    job_out.close()  # the child's ends: closed here, so that a child that dies shows as a broken pipe or EOF
    result_in.close()
    try:
        calibration_frames = frames()
        before()
        try:
            job_in.send((portable, calibration_frames, config, str(path)))
            while not result_out.poll(0.25):  # short waits, so that Ctrl-C / SIGTERM reach this process meanwhile
                pass
            failure = result_out.recv()
        except (BrokenPipeError, EOFError) as exc:
            child.join(5)
            raise RuntimeError(f"the int8 calibration process ended before writing {path} (exit code "
                               f"{child.exitcode}: killed or out of memory?)") from exc
        child.join(10)  # it exits after sending the result: let it, rather than terminate it below
        if failure is not None:
            raise failure
    finally:  # done, interrupted, or the frames could not be read: the child ends here
        if child.is_alive():
            child.terminate()
        child.join()
        job_in.close()
        result_out.close()


def _calibration_child(jobs: Connection, results: Connection) -> None:
    """The calibration process: set up, import the quantizer, run the one job and send back None or its error."""
    _calibration_child_setup()
    import int8track.quant  # noqa: F401  (while the parent reads the frames)

    try:
        quantize_in_process(*jobs.recv())
    except Exception as exc:  # every error goes back to the parent, which raises it
        try:
            results.send(exc)
        except Exception:  # an exception that does not pickle: its text still reaches the parent
            results.send(RuntimeError(f"{type(exc).__name__}: {exc}"))
        return
    results.send(None)


def _calibration_child_setup() -> None:
    """In the calibration process: leave Ctrl-C to the parent (it stops this process), and die with the parent
    (Linux ``PR_SET_PDEATHSIG``), so a killed ``track`` leaves no calibration running."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux / no glibc: the parent's terminate() still applies
        pass


def quantize_in_process(detector, frames: list[np.ndarray], config: QuantConfig, path: str | Path) -> None:
    """``quantize_in_child``'s work in this process: ``quant.quantize_detector``, the model written to ``path``."""
    from int8track.quant import quantize_detector

    quantized = quantize_detector(detector, frames, config=config, speed_table=speed_table_root())
    quantized.save(path)


def stored_report(path: str | Path) -> dict:
    """The quantization report in an int8 ONNX model's metadata ({} when there is none)."""
    import onnx

    from int8track.quant.onnx_export import QUANT_KEY

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[QUANT_KEY]) if QUANT_KEY in props else {}
