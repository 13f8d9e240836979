"""The notebook layer: ``%%flowtask`` cells as tasks of the kernel's flow.

Everything the magics do is a call of a function here, usable without IPython:
:func:`register_cell`, :class:`NotebookRun` (one run: start, cancel, join; its
state, outputs and failure) or :func:`run_notebook_flow`, :func:`describe_flow`,
:func:`remove_task`, :func:`reset_flow`, and :func:`current_flow` for the flow
itself. This package imports neither IPython nor ipywidgets (only
:mod:`nbflow.notebook.magics` does).
"""

from __future__ import annotations

from nbflow.notebook.cells import CellAnalysis, CellSyntaxError, analyze_cell
from nbflow.notebook.flow import (
    CellTask,
    DuplicateProviderError,
    RegistrationError,
    current_flow,
    describe_cell,
    describe_flow,
    forget_cells,
    register_cell,
    remove_task,
    reset_flow,
    run_flow,
)
from nbflow.notebook.run import (
    CellFailed,
    MapValueError,
    NotebookRun,
    UndefinedNameError,
    UnserialisableValueError,
    cell_output,
    failure,
    run_notebook_flow,
)
from nbflow.notebook.runtime import CellFunction, CellResult
from nbflow.notebook.write_back import (
    ClusterValue,
    MemoryBudgetError,
    parse_bytes,
    write_back,
)

__all__ = [
    "CellAnalysis",
    "CellFailed",
    "CellFunction",
    "CellResult",
    "CellSyntaxError",
    "CellTask",
    "ClusterValue",
    "DuplicateProviderError",
    "MapValueError",
    "MemoryBudgetError",
    "NotebookRun",
    "RegistrationError",
    "UndefinedNameError",
    "UnserialisableValueError",
    "analyze_cell",
    "cell_output",
    "current_flow",
    "describe_cell",
    "describe_flow",
    "failure",
    "parse_bytes",
    "forget_cells",
    "register_cell",
    "remove_task",
    "reset_flow",
    "run_flow",
    "run_notebook_flow",
    "write_back",
]
