"""Every benchmark runs as a plain script (``python benchmarks/X.py``), as README.md tells users to run them.

Run that way, ``benchmarks/`` is first on ``sys.path``, so a benchmark module named like a project package
(``quant``, ``tracker``, ...) would shadow it and break the imports; ``--help`` imports everything.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name not in {"__init__.py", "common.py"})
PACKAGES = {"tracker", "detectors", "quant", "apps"}


def test_no_benchmark_shadows_a_project_package():
    assert not {Path(name).stem for name in SCRIPTS} & PACKAGES


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_imports_and_prints_help(script):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
