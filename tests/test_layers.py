"""The layers: the Qt-free ones never import PySide6 (directly or through anything they import), and no
module of the package takes part in an import cycle."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

QT_FREE = ["distill_gui.config", "distill_gui.errors", "distill_gui.paths", "distill_gui.cli",
           "distill_gui.events", "distill_gui.runfolder", "distill_gui.formatting", "distill_gui.engine",
           "distill_gui.export", "distill_gui.ollama", "distill_gui.workflows", "distill_gui.commands",
           "distill_gui.chatlog"]


def _all_modules() -> list[str]:
    names = []
    for name in QT_FREE:
        names.append(name)
        module = __import__(name, fromlist=["_"])
        if hasattr(module, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(module.__path__, prefix=name + ".")]
    return names


def test_qt_free_layers_never_import_pyside6():
    modules = _all_modules()
    assert len(modules) > len(QT_FREE)  # the walk found the packages' modules
    code = (
        "import sys, importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"Qt imported by the Qt-free layers: {result.stdout.strip()}"


def test_the_check_detects_a_qt_import(tmp_path):
    """Guard against a check that cannot fail: the same probe sees PySide6 when it is imported."""
    code = "import PySide6.QtCore, sys; print(any(m.startswith('PySide6') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True"


# ---- import cycles -------------------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1] / "distill_gui"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> modules of the package it imports: every import statement, also inside functions and under
    TYPE_CHECKING (a cycle there is still a tangle to read). A package's ``__init__`` re-exporting its own
    children is not counted as their import of it."""
    top = package.name
    files = {_module_name(path, package): path for path in package.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        base = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _targets(node, base):
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith(top) and not name.startswith(target + "."):
                    found.add(target)
        graph[name] = found
    return graph


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, base: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:
            parts = base.split(".")
            parts = parts[:len(parts) - node.level + 1]
            module = ".".join(parts + ([module] if module else []))
        return [module] + [f"{module}.{alias.name}" for alias in node.names]
    return []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_anywhere_in_the_package():
    graph = import_graph(PACKAGE)
    assert len(graph) > 100 and sum(len(v) for v in graph.values()) > 200
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_inside_a_function(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..a import thing\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.sub.b"]]


# Which packages each layer may import (besides itself and the shared modules at the top of the package).
SHARED = {"distill_gui", "distill_gui.config", "distill_gui.errors", "distill_gui.events", "distill_gui.paths",
          "distill_gui.settings", "distill_gui.runfolder", "distill_gui.formatting"}
MAY_IMPORT = {
    "distill_gui.engine": {"distill_gui.ollama"},   # the Ollama teacher asks the client for its answers
    "distill_gui.export": set(),
    "distill_gui.ollama": set(),
    "distill_gui.chatlog": set(),
    "distill_gui.workflows": {"distill_gui.engine", "distill_gui.export", "distill_gui.ollama"},
}


def _layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_imports_point_down_the_layers():
    """export/ and ollama/ import no other layer, engine/ only the Ollama client; workflows/ those three."""
    wrong = []
    for module, targets in import_graph(PACKAGE).items():
        layer = _layer(module)
        if layer not in MAY_IMPORT:
            continue
        allowed = MAY_IMPORT[layer] | {layer}
        wrong += [f"{module} -> {t}" for t in targets if t not in SHARED and _layer(t) not in allowed]
    assert wrong == []
