"""Installing int8track adds exactly one import name, and the code imports the project only through it."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD_NAMES = {"tracker", "detectors", "quant", "apps"}


def _python_files() -> list[Path]:
    return [p for folder in ("tracker", "detectors", "quant", "apps", "benchmarks", "tests")
            for p in sorted((ROOT / folder).rglob("*.py"))] + sorted(ROOT.glob("*.py"))


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_of_the_old_top_level_names(path):
    """``import quant`` or ``from tracker import`` would load a second copy of a module under another name."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        assert not {n.split(".")[0] for n in names} & OLD_NAMES, f"{path}:{node.lineno} imports {names}"


def test_wheel_installs_one_top_level_name_and_no_benchmarks(tmp_path):
    # built from a copy: setuptools keeps a build/ folder beside the sources, whose stale files would end up in
    # the wheel (and a test should not leave one in the checkout)
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "runs", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache", ".hypothesis"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("int8track-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"int8track", wheel.name.split("-")[0] + "-" +
                                                wheel.name.split("-")[1] + ".dist-info"}
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("__init__.py")}
    # every package folder of the tree ships (a subpackage missing from pyproject.toml would import from a
    # checkout but not from the wheel), and nothing else
    in_tree = {"int8track/" + str(init.parent.relative_to(ROOT)) for init in ROOT.glob("*/**/__init__.py")
               if init.parts[len(ROOT.parts)] not in ("benchmarks", "tests", ".venv", "build", "runs")}
    assert packages == {"int8track"} | in_tree
    assert {"int8track/apps/cli", "int8track/apps/fleet"} <= packages
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "track = int8track.apps.cli.track:main" in entry_points
    assert "quantize = int8track.apps.cli.quantize:main" in entry_points
    assert "int8track/frames.py" in names  # the shared frame reader ships with the package


def test_public_api_is_listed_and_resolves():
    import int8track

    assert set(int8track.__all__) == set(int8track._EXPORTS) | {"__version__"}
    for name in int8track.__all__:
        assert getattr(int8track, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        int8track.nope  # noqa: B018


def test_tracker_import_does_not_load_torch():
    code = "import sys; from int8track import ByteTracker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
