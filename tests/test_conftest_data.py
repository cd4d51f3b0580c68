"""Missing real data skips on a developer's machine and fails under CI (INT8TRACK_REQUIRE_DATA=1)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

PROBE = """
from conftest import require_data

def test_missing():
    require_data("no/such/file.bin")
"""


def _run_probe(tmp_path: Path, require: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    env = {"PATH": "/usr/bin:/bin", "INT8TRACK_REQUIRE_DATA": require}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_missing_data_skips_by_default(tmp_path):
    result = _run_probe(tmp_path, "")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout


def test_missing_data_fails_when_required(tmp_path):
    result = _run_probe(tmp_path, "1")
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout and "no/such/file.bin" in result.stdout


def test_tests_keep_out_of_the_users_home():
    from pathlib import Path

    assert Path.home().name.startswith("int8track-test-home-")  # ~/.ray, ~/.cache land in this run's folder
