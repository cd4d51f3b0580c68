"""Shared test fixtures: where the real data lives, and skipping when it is absent."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

import onnx
import pytest

# A shell's background job (`nohup .ci/run &`) starts with SIGINT ignored, and child processes inherit an ignored
# signal: the Ctrl-C tests would then fail for the launcher's reason, not the code's. Restore Python's handler, so
# this process sees SIGINT and the processes it starts get the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Tests never write into the user's home: the model cache ($INT8TRACK_HOME, default ~/.cache/int8track) and what
# Ray keeps in ~/.ray (an auth token an earlier run left there broke a user's `track --ray ADDRESS`) go to a
# folder of this run. The shared data path is resolved before HOME changes.
_TEST_HOME = Path(tempfile.mkdtemp(prefix="int8track-test-home-"))
atexit.register(shutil.rmtree, _TEST_HOME, ignore_errors=True)
os.environ.setdefault("INT8TRACK_HOME", str(_TEST_HOME / ".cache" / "int8track"))
os.environ["HOME"] = str(_TEST_HOME)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("INT8TRACK_DATA", PROJECT_ROOT.parent / "shared" / "data"))
#: CI has the real data: there a missing file is a failure, not a skip (``.ci/run`` sets it).
DATA_REQUIRED = os.environ.get("INT8TRACK_REQUIRE_DATA", "") not in ("", "0")


def require_data(relative: str) -> Path:
    """Return ``SHARED_DATA / relative``; when it is missing, skip the test naming the file, or fail under
    ``INT8TRACK_REQUIRE_DATA=1``."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"real data not found: {path} (set INT8TRACK_DATA or place shared/data beside the project)"
        if DATA_REQUIRED:
            pytest.fail(message + "; INT8TRACK_REQUIRE_DATA is set, so this is a failure", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_data("")


@pytest.fixture(scope="module")
def single_torch_thread():
    """One torch thread for a module: on the shared 2-core CI machine, 2 spinning OpenMP threads are many times
    slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_opencv_thread():
    """OpenCV on one thread for the test (flow and camera-motion costs are specified per core)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


class SavedProto:
    """A quantizer's result stand-in: ``save(path)`` writes ``proto`` (as ``QuantizedDetector.save`` does)."""

    def __init__(self, proto) -> None:
        self.proto = proto

    def save(self, path):
        onnx.save(self.proto, str(path))
        return path
