"""Widgets: the executor panel, the live run view and the inline report.

Plain ipywidgets (and bokeh for pictures), so they render in JupyterLab,
Notebook 7, VS Code and Voila with no extension of ours and no internet.
Names are imported on first use, so ``import nbflow.widgets`` alone loads
neither ipywidgets nor bokeh.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ExecutorPanel",
    "RunState",
    "RunView",
    "render_report",
    "render_timeline",
    "run_with_view",
]

#: Public name -> the module (of this package unless dotted) that defines it.
_MODULES = {
    "ExecutorPanel": "panel",
    "RunState": "nbflow.engine.run_state",  # the model, below the widgets
    "RunView": "run_view",
    "render_report": "report",
    "render_timeline": "report",
    "run_with_view": "run_view",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'nbflow.widgets' has no attribute {name!r}")
    path = module if "." in module else f"{__name__}.{module}"
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])
