"""nbflow: notebook cells and functions as task flows, on any executor.

``import nbflow`` loads the standard library only; dask, distributed, IPython
and ipywidgets are imported when something that needs them is used.
"""

from __future__ import annotations

from typing import Any

from nbflow.core.flow import Flow
from nbflow.core.task import Parameter, Task, flatten, mapped, task, unmapped

__all__ = [
    "Flow",
    "Parameter",
    "Task",
    "flatten",
    "load_ipython_extension",
    "mapped",
    "task",
    "unload_ipython_extension",
    "unmapped",
]

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbflow``: register the ``%%flowtask`` and ``%flow`` magics."""
    from nbflow.notebook.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbflow``: remove what :func:`load_ipython_extension` added."""
    from nbflow.notebook.magics import unload_ipython_extension as unload

    unload(ipython)
