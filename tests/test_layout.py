"""The package's layout: no module imports another that, directly or through others, imports it back.

A loop of imports means two rooms that cannot be understood (or changed) apart, and it breaks as soon
as one side imports the other at module level. Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where each installed package's modules live in the checkout (pyproject.toml's package-dir).
FOLDERS = {"streamdream": ROOT / "streamdream", "streamdream.apps": ROOT / "apps", "streamdream.samples": ROOT / "samples"}


def modules() -> dict[str, Path]:
    """Every module of the installed packages by its dotted name."""
    found = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = [part for part in path.relative_to(folder).with_suffix("").parts if part != "__init__"]
            found[".".join([prefix, *parts])] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's own modules that module `name` imports (a name imported from a module counts as the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([package.rsplit(".", node.level - 1)[0], *([base] if base else [])])
            targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    own = set()
    for target in targets:
        while target and target not in known:  # a name inside a module: the module
            target = target.rpartition(".")[0]
        if target and target != name:
            own.add(target)
    return own


def test_no_modules_import_each_other_in_a_loop():
    known = modules()
    assert {"streamdream.carry", "streamdream.apps.cli", "streamdream.samples.make"} <= set(known)
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert "streamdream.scheduler" in graph["streamdream.engine"]  # the walk sees imports
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail("modules import each other in a loop: " + " -> ".join(error.args[1]))
