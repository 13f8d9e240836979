"""Run one flow in a terminal: its progress, then each task's final state.

Part of the cli layer (see :mod:`nbflow.cli`); shared by ``nbflow run FILE.py``
and ``nbflow run NOTEBOOK.ipynb``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from nbflow.cli.progress import TextProgress, print_summary
from nbflow.errors import CommandLineError
from nbflow.executors.base import resolve_executor

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.core.task import Task
    from nbflow.engine.events import Listener
    from nbflow.engine.state import State
    from nbflow.executors.base import Executor

__all__ = ["run_and_report"]

#: Dependencies an executor imports when it runs: missing only from a broken
#: install (``--no-deps``, a bare checkout on ``PYTHONPATH``).
_EXTRAS = frozenset({"dask", "distributed", "bokeh"})


def run_and_report(
    flow: Flow,
    executor: Executor | None,
    out: TextIO,
    *,
    color: bool,
    run: Callable[[list[Listener]], State],
    describe: Callable[[Task, State], str | None] | None = None,
    output: Callable[[State], str] | None = None,
    clean: Callable[[str], str] | None = None,
    check_environment: bool = True,
) -> State:
    """Run one flow with progress on ``out``; print its summary; return its state.

    ``run(listeners)`` runs it; ``output(state)`` is printed before the summary;
    ``describe`` and ``clean`` are passed on to :func:`print_summary`.
    ``check_environment=False`` lets a ``DaskExecutor`` run on workers that
    lack packages the flow uses (``--no-check-environment``).
    """
    from nbflow.executors import DaskExecutor

    on = resolve_executor(executor, flow.executor)
    out.write(f"Running flow {flow.name!r} on {on!r}\n")
    out.flush()
    if isinstance(on, DaskExecutor):
        on.check_environment = on.check_environment and check_environment

        def connected(text: str) -> None:
            out.write(f"Cluster: {text}\n")
            out.flush()

        on.on_environment = connected

    def starting(text: str) -> None:  # "… 1 of 2 workers up …", a line each
        out.write(f"{text}\n")
        out.flush()

    on.on_starting = starting
    started = time.monotonic()
    try:
        state = run([TextProgress(out, color=color)])
    except ModuleNotFoundError as exc:
        package = (exc.name or "").partition(".")[0]
        if package not in _EXTRAS:
            raise
        raise CommandLineError(
            f"{on!r} needs {package!r}, which is not installed; install it "
            "with `pip install jupyter-nbflow`."
        ) from None
    finally:
        on.on_starting = None
    seconds = time.monotonic() - started
    text = output(state) if output is not None else ""
    if text:
        out.write(f"{text.rstrip()}\n")
    print_summary(
        flow.name,
        flow.sorted_tasks(),
        state,
        out,
        color=color,
        seconds=seconds,
        describe=describe,
        clean=clean,
    )
    return state
