"""DESIGN.md's layer table, enforced: an AST scan of every import in nbflow.

A layer imports the layers above it in :data:`LAYERS`, never below; the model
and the states and events use the standard library only; the executors import
dask and distributed only inside the code that needs them; the notebook layer
(but ``magics``) never imports IPython or the widgets' packages.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import nbflow

PACKAGE = Path(nbflow.__file__).parent

#: Top to bottom: each layer may import the ones before it.
LAYERS = ("model", "events", "executors", "engine", "notebook", "cli", "widgets", "magics")

#: The one documented way up the table: ``Flow.run`` imports the runner when called.
EXCEPTIONS = {("nbflow.core.flow", "nbflow.engine.runner")}
#: Prefect's defaults of a task, read when asked for (``Task.trigger``,
#: ``Task.cache_validator``): the same way down as ``Flow.run``.
EXCEPTIONS |= {("nbflow.core.task", "nbflow.triggers"),
               ("nbflow.core.task", "nbflow.engine.cache_validators")}
#: Private modules that other modules import only inside the code that needs
#: them, so their own top-level imports of dask or distributed are lazy too.
LAZY_MODULES = {"nbflow.executors._environment"}

#: Third-party packages a layer may import, and whether only inside functions.
LAZY_ONLY = {"dask", "distributed", "IPython", "ipywidgets", "bokeh", "traitlets"}
FORBIDDEN = {
    "notebook": {"IPython", "ipywidgets", "bokeh", "traitlets"},
    "executors": {"IPython", "ipywidgets", "bokeh", "traitlets"},
    "engine": {"IPython", "ipywidgets", "bokeh", "traitlets", "dask", "distributed"},
    "cli": {"ipywidgets", "bokeh"},
}


def layer_of(module: str) -> str | None:
    """The layer of an nbflow module (None for the package root)."""
    parts = module.split(".")
    if module in ("nbflow", "nbflow.__main__"):
        return None
    if parts[1] in ("errors", "core", "context"):
        return "model"
    if parts[1] == "triggers":  # Prefect's path: what a trigger reads is states
        return "events"
    if parts[1] == "tasks":  # Prefect's task library (case, merge): run by the engine
        return "engine"
    if parts[1] == "engine":
        if len(parts) > 2 and parts[2] in (
            "state", "events", "run_state", "signals", "cache", "cache_validators",
            "_tracebacks",
        ):
            return "events"
        return "engine"
    if parts[1] == "notebook":
        return "magics" if parts[2:3] == ["magics"] else "notebook"
    if parts[1] in ("executors", "cli", "widgets"):
        return parts[1]
    raise AssertionError(f"{module} is in no layer of DESIGN.md's table")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    root = PACKAGE.parent
    return (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """``(module, lazy, line)`` of each import run at some time (not those for
    annotations under ``TYPE_CHECKING``); lazy: inside a function.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, lazy, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    name = full if _is_module(full) else child.module
                    found.append((name, lazy, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_layers_above_it(path):
    module = _module_name(path)
    mine = layer_of(module)
    if mine is None:
        return
    rank = LAYERS.index(mine)
    for name, lazy, line in _imports(path):
        top = name.split(".")[0]
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        if top == "nbflow":
            theirs = layer_of(name)
            if theirs is None:
                assert name == "nbflow" and mine != "model", where
                continue
            if (module, name) in EXCEPTIONS:
                continue
            assert LAYERS.index(theirs) <= rank, f"{where} ({mine} -> {theirs})"
        elif mine in ("model", "events"):
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{where}: the {mine} layer uses the standard library only"
            )
        else:
            assert top not in FORBIDDEN.get(mine, ()), f"{where}: not in the {mine} layer"
            if top in LAZY_ONLY and mine not in ("widgets", "magics"):
                assert lazy or module in LAZY_MODULES, (
                    f"{where}: import it inside the code that needs it")


def test_every_module_is_in_a_layer():
    layers = {layer_of(_module_name(p)) for p in MODULES}
    assert layers - {None} == set(LAYERS)


def test_lazy_modules_are_imported_lazily_only():
    """What LAZY_MODULES excuses holds: nothing imports them at module level."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, lazy, line in _imports(path):
            if name in LAZY_MODULES:
                assert lazy, f"{path.relative_to(PACKAGE)}:{line} imports {name} eagerly"
