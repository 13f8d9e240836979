"""Guard tests: ``nbflow.__all__`` is sorted and complete; ``import nbflow`` is light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import nbflow

#: nbflow's dependencies (pyproject.toml), by import name: none is loaded by
#: ``import nbflow``, though all are installed.
HEAVY = ("IPython", "bokeh", "cloudpickle", "dask", "distributed", "ipykernel",
         "ipywidgets", "nbformat", "networkx")


def _public_names(path: Path) -> set[str]:
    """The names ``path`` binds at module level that have no leading underscore."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith(
                "nbflow"
            ):
                continue  # typing helpers and the like are not the API
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


def test_all_is_sorted():
    assert nbflow.__all__ == sorted(nbflow.__all__)


def test_all_is_complete():
    assert set(nbflow.__all__) == _public_names(Path(nbflow.__file__))
    for name in nbflow.__all__:
        assert getattr(nbflow, name) is not None


@pytest.mark.parametrize("module", ["nbflow", "nbflow.cli"])
def test_import_leaves_heavy_packages_out(module):
    code = (
        f"import sys, {module}\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(' '.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import {module} loaded {result.stdout}"
