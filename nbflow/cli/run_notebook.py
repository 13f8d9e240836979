"""``nbflow run NOTEBOOK.ipynb``: a notebook's flow with no Jupyter server.

Part of the cli layer. The setup cells run in order in one IPython
``InteractiveShell`` (imported only here, only for notebooks), so magics such
as ``%load_ext nbflow``, ``%matplotlib`` or ``!pip list`` work as in Jupyter;
``%flow run``, ``show``, ``reset`` and ``remove`` lines are skipped there: the
``%%flowtask`` cells are registered after the setup, and the flow runs once.
Then the ``%%flowtask`` cells are registered in notebook order with
:func:`nbflow.notebook.register_cell`, ``-P NAME=VALUE`` sets namespace
variables, and :func:`nbflow.notebook.run_notebook_flow` runs the flow.

A notebook that empties its flow (``%flow reset``) holds several flows, one
after another, and the code between them sets up the next: it runs top to
bottom in the shell instead, as Jupyter's Run All does (:func:`run_top_to_bottom`),
each ``%flow run`` with text progress; a cell tagged ``raises-exception`` may
fail, any other error stops it there.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import reprlib
import sys
import time
import traceback
import types
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from nbflow.cli.options import executor_from_args, parse_params
from nbflow.cli.progress import use_color
from nbflow.cli.run_flow import run_and_report
from nbflow.core.flow import Flow
from nbflow.errors import CommandLineError
from nbflow.notebook import (
    CellResult,
    CellTask,
    cache,
    cell_output,
    current_flow,
    reset_flow,
    run_notebook_flow,
    runtime,
)
from nbflow.notebook.flow import cell_inputs
from nbflow.notebook.ipynb import Cell, NotebookParts, read_notebook, register_cells
from nbflow.notebook.run import namespace_reads

if TYPE_CHECKING:
    from nbflow.core.task import Task
    from nbflow.engine.events import Listener
    from nbflow.engine.state import State
    from nbflow.executors.base import Executor

__all__ = [
    "apply_params",
    "cell_detail",
    "notebook_flow",
    "run_notebook_command",
    "run_setup",
    "run_top_to_bottom",
]

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def run_notebook_command(args: argparse.Namespace, path: str) -> int:
    """``nbflow run NOTEBOOK.ipynb``: its setup, then its flow; the exit status."""
    if args.name is not None:
        raise CommandLineError(
            f"--name selects a flow of a Python file; notebook {path!r} has one "
            "flow, so leave --name out."
        )
    parts = read_notebook(path)
    executor = executor_from_args(args)
    if parts.resets:
        return run_top_to_bottom(parts, executor, args)
    params = parse_params(args.param)
    flow = notebook_flow(parts)
    namespace, defined = run_setup(parts)
    register_cells(parts, flow)
    apply_params(namespace, params, flow, defined)
    namespace_reads(flow, namespace)  # a missing name: say so before the run
    out = sys.stdout
    if parts.after:
        cells = ", ".join(map(str, parts.after))
        which = "cells" if len(parts.after) > 1 else "cell"
        out.write(
            f"Left out: the code after the first `%flow run` ({which} {cells}).\n"
        )

    def run(listeners: list[Listener]) -> State:
        # The cache next to the notebook, as in Jupyter (which runs it there).
        with _cache_beside(parts.path):
            return run_notebook_flow(
                namespace, listeners=listeners, flow=flow, executor=executor,
                fresh=getattr(args, "fresh", False),
            )

    state = run_and_report(
        flow,
        executor,
        out,
        color=use_color(out),
        run=run,
        describe=cell_detail,
        clean=runtime.strip_runtime_frames,
        output=functools.partial(cell_output, flow=flow),
        check_environment=args.check_environment,
    )
    plan = cache.last_plan()
    if plan is not None and (plan.enabled or plan.note):
        out.write(plan.summary() + "\n")
    return 0 if state.is_successful() else 1


def run_top_to_bottom(
    parts: NotebookParts, executor: Executor | None, args: argparse.Namespace
) -> int:
    """Run every code cell of a notebook of several flows in order, as Jupyter
    does; the exit status (1: a cell not tagged ``raises-exception`` raised).

    ``executor`` (from the options) is the flow's until a cell chooses another.
    """
    if args.param:
        raise CommandLineError(
            f"Notebook {parts.path!r} holds several flows (it has `%flow reset`), "
            f"so it runs top to bottom and has no parameters; leave out "
            f"-P {args.param[0]!r}, or set the variable in the notebook."
        )
    out = sys.stdout
    out.write(f"Running notebook {parts.name!r} top to bottom: it holds several "
              "flows (`%flow reset`), each run by its `%flow run`.\n")
    out.flush()
    flow = notebook_flow(parts)
    flow.executor = executor
    shell = _shell(skipped=())
    started = time.monotonic()
    before = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(parts.path)))
    try:
        with _cache_beside(parts.path):
            for cell in parts.cells:
                result = shell.run_cell(cell.source, silent=True)
                sys.stdout.flush()
                error = result.error_before_exec or result.error_in_exec
                if isinstance(error, KeyboardInterrupt):
                    raise KeyboardInterrupt
                if error is None:
                    continue
                text = " ".join(str(error).split()).rstrip(".")
                said = f"{type(error).__name__}: {text}" if text else type(error).__name__
                if cell.raises:
                    out.write(f"{cell.describe(capital=True)} raised {said} "
                              "(as it is meant to: it is tagged raises-exception).\n")
                    continue
                out.write(f"{cell.describe(capital=True)} raised {said}; the "
                          "notebook stops there, as Jupyter's Run All does.\n")
                return 1
    finally:
        os.chdir(before)
    out.write(f"Notebook {parts.name!r} ran to its end: {len(parts.cells)} code "
              f"cells in {time.monotonic() - started:.1f} s.\n")
    return 0


@contextlib.contextmanager
def _cache_beside(path: str) -> Iterator[None]:
    """Default the cache location to ``.nbflow/cache`` next to the notebook."""
    saved = cache._settings.location
    if saved is None and not os.environ.get("NBFLOW_CACHE_DIR"):
        folder = os.path.dirname(os.path.abspath(path))
        cache.configure_cache(os.path.join(folder, ".nbflow", "cache"))
    try:
        yield
    finally:
        cache._settings.location = saved


def notebook_flow(parts: NotebookParts) -> Flow:
    """Return the notebook flow of this process, emptied and named after the notebook."""
    flow = current_flow()
    reset_flow(flow)
    flow.executor = None
    flow.name = parts.name
    return flow


def run_setup(parts: NotebookParts) -> tuple[dict[str, Any], list[str]]:
    """Run the setup cells in an ``InteractiveShell``.

    Returns
    -------
    namespace : dict
        The shell's user namespace.
    defined : list of str
        The names the setup cells bound there.

    Raises
    ------
    CommandLineError
        A cell raised (the message names the cell, its line and the error).

    """
    shell = _shell(skipped=_SKIPPED)
    existing = set(shell.user_ns)
    directory = os.path.dirname(os.path.abspath(parts.path))
    before = os.getcwd()
    os.chdir(directory)  # as Jupyter runs a notebook in its folder
    try:
        for cell in parts.setup:
            result = shell.run_cell(cell.source, silent=True)
            error = result.error_before_exec or result.error_in_exec
            if isinstance(error, KeyboardInterrupt):
                raise KeyboardInterrupt
            if error is not None:
                raise CommandLineError(_setup_failed(cell, error))
    finally:
        os.chdir(before)
    user_ns: dict[str, Any] = shell.user_ns
    return user_ns, [n for n in user_ns if n not in existing]


def _shell(*, skipped: Sequence[list[str]]) -> Any:
    """A quiet ``InteractiveShell``: no history file, errors left to the caller,
    the ``%flow`` commands in ``skipped`` skipped.
    """
    try:
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
    except ModuleNotFoundError:
        raise CommandLineError(
            "Running a notebook needs 'IPython'; install it with "
            "`pip install jupyter-nbflow`."
        ) from None
    global _SetupShell
    if _SetupShell is None:

        class SetupShell(InteractiveShell):
            skipped: list[list[str]] = []
            def showtraceback(self, *args: Any, **kwargs: Any) -> None:
                """Say nothing: :func:`run_setup` reports the error in one line."""

            def showsyntaxerror(self, *args: Any, **kwargs: Any) -> None:
                """Say nothing, as :meth:`showtraceback`."""

            def run_line_magic(
                self, magic_name: str, line: str, _stack_depth: int = 1
            ) -> Any:
                if magic_name == "flow" and line.split()[:1] in self.skipped:
                    return None  # the flow's cells are registered after the setup
                return super().run_line_magic(magic_name, line, _stack_depth + 1)

        _SetupShell = SetupShell
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    if InteractiveShell.initialized():  # a second run in one process (tests)
        shell = _SetupShell(config=config)
    else:  # the singleton, so that IPython.get_ipython() and display() find it
        shell = _SetupShell.instance(config=config)
    shell.skipped = list(skipped)
    return shell


_SetupShell: Any = None
#: ``%flow`` commands that setup skips: they act on the flow's cells, which are
#: registered after the setup, and the flow runs once, at the end.
_SKIPPED = (["run"], ["show"], ["reset"], ["remove"])


def _setup_failed(cell: Cell, error: BaseException) -> str:
    line = error.lineno if isinstance(error, SyntaxError) else _cell_line(error)
    where = f" on line {line}" if line else ""
    text = " ".join(str(error).split())
    what = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return (
        f"Setup {cell.describe()} raised {what}{where}; fix the cell (run the "
        "notebook in Jupyter to see the traceback)."
    )


def _cell_line(error: BaseException) -> int | None:
    """The line of the cell itself (its outermost frame) in ``error``'s traceback."""
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.startswith("<ipython-input-") or frame.name == "<module>":
            return frame.lineno
    return None


def apply_params(
    namespace: MutableMapping[str, Any],
    params: Mapping[str, Any],
    flow: Flow,
    defined: Sequence[str],
) -> None:
    """Set ``-P`` values as namespace variables; refuse names that are none.

    A notebook flow's parameters are its namespace variables: those the setup
    cells define (not modules, functions or classes) and those the cells read
    from the namespace.
    """
    known = set(variables(namespace, defined))
    for task, inputs in cell_inputs(flow).items():
        read = [n for n in task.reads if n not in inputs]
        known.update(n for n in read if n not in namespace)
        known.update(variables(namespace, read))
    for name in params:
        if name not in known:
            raise CommandLineError(
                f"Unknown parameter {name!r}; the parameters of a notebook are the "
                f"variables its setup defines or its cells read: {sorted(known)!r}."
            )
    namespace.update(params)


def variables(namespace: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """Those of ``names`` that hold data: not modules, functions or classes."""
    code = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)
    return [
        n
        for n in names
        if not n.startswith("_")
        and n in namespace
        and not isinstance(namespace[n], code)
    ]


def cell_detail(task: Task, state: State) -> str | None:
    """What a cell task's final state shows: its provided values; else None."""
    if not isinstance(task, CellTask):
        return None
    if state.is_result_deferred():
        return "-> (values left on the cluster)"
    if state.is_mapped():
        children = [c.result for c in state.map_states or ()]
        if not all(isinstance(c, CellResult) for c in children):
            return None
        values = {
            n: [c.value(n) for c in children]
            for n in task.provides
            if all(n in c for c in children)
        }
        shown = f" -> {_values(values)}" if values else ""
        return f"{len(children)} children{shown}"
    if state.is_successful() and isinstance(state.result, CellResult):
        return "-> " + _values(state.result.values)
    return None


def _values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{n}={_repr.repr(v)}" for n, v in values.items())
