"""The package's shape: no import circles (function-local imports counted), no private names taken from another
module, small modules in apps/ and small functions everywhere outside benchmarks/."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "int8track"
NOT_PACKAGE = {"benchmarks", "tests", ".venv", "build", "runs", ".git"}
MAX_APPS_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _package_modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (the repository root is ``int8track``)."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in NOT_PACKAGE or any(part.startswith(".") for part in parts):
            continue
        names = [PACKAGE, *parts[:-1]] + ([] if parts[-1] == "__init__.py" else [parts[-1][:-3]])
        modules[".".join(names)] = path
    return modules


MODULES = _package_modules()


def _imported_modules(module: str, path: Path) -> list[tuple[str, int, list[str]]]:
    """(imported module, line, names taken from it) for every import of a package module, at any depth."""
    found = []
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, []) for alias in node.names if alias.name.startswith(PACKAGE)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # ``from package import module``
                    found.append((submodule, node.lineno, []))
                else:
                    found.append((base, node.lineno, [alias.name]))
    return found


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, path in MODULES.items():
        for target, _line, _names in _imported_modules(module, path):
            # importing a.b.c runs a/__init__ and a/b/__init__ too; a package's own parents are not a circle
            parts = target.split(".")
            for depth in range(2, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                if prefix in MODULES and prefix != module and not module.startswith(prefix + "."):
                    graph[module].add(prefix)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_function_local_imports_and_finds_a_circle(tmp_path):
    # the checker itself: a made-up pair that imports each other is a circle, and an import inside a function
    # counts
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from int8track.tracker import byte_tracker, config\n    from int8track.x import _y\n")
    assert _imported_modules("int8track.x", probe) == [("int8track.tracker.byte_tracker", 2, []),
                                                       ("int8track.tracker.config", 2, []), ("int8track.x", 3, ["_y"])]


def test_no_import_circles_in_the_package():
    assert "int8track.apps.cli.track" in MODULES and "int8track.tracker.byte_tracker" in MODULES
    assert _cycles(_import_graph()) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_is_taken_from_another_module(module):
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    for target, line, names in _imported_modules(module, path):
        private = [name for name in names if name.startswith("_") and not name.startswith("__")]
        assert not private, f"{path}:{line} imports {private} from {target}"
    aliases = {alias.asname or alias.name.split(".")[-1] for node in ast.walk(tree)
               if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
               if f"{getattr(node, 'module', None) or ''}.{alias.name}".lstrip(".") in MODULES or alias.name in MODULES}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            raise AssertionError(f"{path}:{node.lineno} uses {node.value.id}.{node.attr}")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(f"{PACKAGE}.apps")))
def test_apps_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_APPS_MODULE_LINES, f"{MODULES[module]} has {lines} lines"


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in {"benchmarks", ".venv", "build", "runs", ".git"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
