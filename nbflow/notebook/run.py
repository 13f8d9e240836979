"""Running the notebook flow and writing its results back into a namespace.

Notebook layer: no IPython. :func:`run_notebook_flow` checks the flow before
anything runs (every name a cell reads exists, mapped names are sequences, and
on processes or a cluster every value can be serialised), runs it on its
executor, and writes each provided name back. :func:`cell_output` and
:func:`failure` turn the final state into what the notebook shows.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nbflow.core.flow import Flow
from nbflow.core.task import Task
from nbflow.engine.state import State, TriggerFailed
from nbflow.errors import NbflowError, TaskFailed
from nbflow.notebook import runtime
from nbflow.notebook.flow import CellTask, cell_inputs, current_flow, rebind
from nbflow.notebook.runtime import CellResult, install_stdout, uninstall_stdout

if TYPE_CHECKING:
    from nbflow.engine.events import Listener
    from nbflow.executors.base import Executor

#: ``runner(flow, executor, listeners) -> State``: how a prepared flow is run.
Runner = Callable[[Flow, "Executor", Sequence["Listener"]], State]

__all__ = [
    "CellFailed",
    "MapValueError",
    "Runner",
    "UndefinedNameError",
    "UnserialisableValueError",
    "cell_output",
    "failure",
    "namespace_reads",
    "run_notebook_flow",
    "write_back",
]


class UndefinedNameError(NbflowError, NameError):
    """A cell reads a name that no task above it provides and the namespace lacks."""


class MapValueError(NbflowError, TypeError):
    """A cell maps over a value that is not a sequence."""


class UnserialisableValueError(NbflowError, TypeError):
    """A value a cell needs cannot travel to another process."""


class CellFailed(TaskFailed):
    """A cell task failed; shows the cell's own traceback, from where it ran."""

    def __init__(self, name: str, message: str, tracebacks: Sequence[str]) -> None:
        super().__init__(name, message)
        self.tracebacks = list(tracebacks)

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the driver's traceback."""
        lines: list[str] = []
        for text in self.tracebacks:
            lines.extend(text.rstrip("\n").splitlines())
            lines.append("")
        lines.append(f"{type(self).__name__}: {self}")
        return lines


def namespace_reads(
    flow: Flow, namespace: Mapping[str, Any]
) -> dict[CellTask, dict[str, Any]]:
    """The namespace values each cell reads (no task above it provides them).

    Raises
    ------
    UndefinedNameError
        A name is neither provided above the cell nor in ``namespace``.
    MapValueError
        A cell maps over a namespace value that is not a sequence.

    """
    values: dict[CellTask, dict[str, Any]] = {}
    inputs = cell_inputs(flow)
    providers = {n: t for t in inputs for n in t.provides}
    for task, from_tasks in inputs.items():
        taken = values[task] = {}
        for name in task.reads:
            if name in from_tasks:
                continue
            if name not in namespace:
                later = providers.get(name)
                hint = (f"; task {later.name!r} provides it but is registered after "
                        f"{task.name!r}, so register it above" if later else
                        "; define it in an ordinary cell or in a task above")
                raise UndefinedNameError(
                    f"Cell {task.name!r} reads {name!r}, which no task above it "
                    f"provides and the namespace does not define{hint}."
                )
            taken[name] = namespace[name]
        for name in task.analysis.fallbacks:
            # A builtin's name, or one the cell may bind itself: from the
            # namespace when it is there, as in Jupyter.
            if name not in from_tasks and name in namespace:
                taken[name] = namespace[name]
        if task.map_var in taken:
            _check_sequence(task, taken.pop(task.map_var))
    return values


def _check_sequence(task: CellTask, value: Any) -> None:
    if not isinstance(value, collections.abc.Iterable) or not hasattr(value, "__len__"):
        raise MapValueError(
            f"Cell {task.name!r} maps over {task.map_var!r}, a "
            f"{type(value).__name__} and not a sequence; make {task.map_var!r} a "
            "list, or drop --map."
        )


def _travels(executor: Executor) -> bool:
    """Whether ``executor`` ships tasks and values to other processes."""
    from nbflow.executors.dask import DaskExecutor
    from nbflow.executors.local_dask import LocalDaskExecutor

    if isinstance(executor, DaskExecutor):
        return True
    return isinstance(executor, LocalDaskExecutor) and executor.scheduler == "processes"


def check_serialisable(
    flow: Flow, values: Mapping[CellTask, Mapping[str, Any]], executor: Executor
) -> None:
    """Raise :class:`UnserialisableValueError` for the first value or task
    function that cloudpickle cannot serialise.
    """
    import cloudpickle

    checked: set[int] = set()
    where = type(executor).__name__
    for task in flow.ordered_tasks():
        for name, value in values.get(task, {}).items():  # type: ignore[call-overload]
            if id(value) in checked:
                continue
            try:
                cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - any pickling failure is reported
                raise UnserialisableValueError(
                    f"Cell {task.name!r} reads {name!r} ({type(value).__name__}) from "
                    f"the namespace, which cannot be serialised to run on {where} "
                    f"({type(exc).__name__}: {exc}); create it inside the cell, or run "
                    "on LocalExecutor or threads."
                ) from exc
            checked.add(id(value))
        fn = task.fn if task.fn is not None else task.run
        try:
            cloudpickle.dumps(fn)
        except Exception as exc:  # noqa: BLE001 - any pickling failure is reported
            raise UnserialisableValueError(
                f"The function of task {task.name!r} cannot be serialised to run on "
                f"{where} ({type(exc).__name__}: {exc}); use LocalExecutor or threads."
            ) from exc


@contextmanager
def _prepared(
    flow: Flow,
    values: dict[CellTask, dict[str, Any]],
    mapped: Mapping[str, Any],
    portable: bool,
) -> Iterator[None]:
    """Give each cell task its namespace values for one run, then take them back."""
    for task, taken in values.items():
        task.fn = task.cell_function.with_namespace(taken, portable=portable)
    try:
        rebind(flow, namespace=mapped)
        yield
    finally:
        for task in values:
            task.fn = task.cell_function
        rebind(flow)


def run_notebook_flow(
    namespace: MutableMapping[str, Any],
    *,
    listeners: Sequence[Listener] = (),
    flow: Flow | None = None,
    executor: Executor | None = None,
    runner: Runner | None = None,
) -> State:
    """Run the notebook flow and write every provided name back to ``namespace``.

    Parameters
    ----------
    namespace : dict
        Where cells read the names no task provides (e.g. IPython's ``user_ns``)
        and where the results go; tasks that failed write nothing.
    listeners : sequence of callables
        Event listeners (progress, the live view).
    flow : Flow, optional
        Default :func:`current_flow`.
    executor : Executor, optional
        Default ``flow.executor``, else a ``LocalExecutor``.
    runner : callable, optional
        ``runner(flow, executor, listeners) -> State`` runs the prepared flow;
        default ``flow.run(executor=executor, listeners=listeners)`` (a live
        view passes one that builds a cancellable ``FlowRun``).

    Returns
    -------
    State
        The flow's final state; ``state.result`` maps each task to its state.

    Raises
    ------
    UndefinedNameError, MapValueError, UnserialisableValueError, FlowValidationError
        Before any task runs.

    Examples
    --------
    >>> state = run_notebook_flow(globals())             # doctest: +SKIP

    """
    flow, executor, values = _checked(namespace, flow, executor)
    mapped = {t.map_var: namespace[t.map_var] for t in values
              if t.map_var and t.map_var in namespace}
    portable = _travels(executor)
    stream = install_stdout()
    from nbflow.executors.dask import DaskExecutor

    # Dask's performance report shows the cells, not the line `%flow run`.
    dask = executor if isinstance(executor, DaskExecutor) else None
    if dask is not None and dask.report_code is None:
        dask.report_code = cells_source(flow)
    else:
        dask = None
    try:
        with _prepared(flow, values, mapped, portable):
            state = (runner or _run)(flow, executor, listeners)
    finally:
        uninstall_stdout(stream)
        if dask is not None:
            dask.report_code = None
    write_back(state, namespace, flow)
    return state


def cells_source(flow: Flow) -> str:
    """The flow's ``%%flowtask`` cells as they were written, in run order."""
    return "\n\n".join(
        f"%%flowtask {t.name}\n{t.source.rstrip()}"
        for t in flow.ordered_tasks() if isinstance(t, CellTask)
    )


def check_notebook_flow(
    namespace: Mapping[str, Any],
    *,
    flow: Flow | None = None,
    executor: Executor | None = None,
) -> None:
    """Raise what :func:`run_notebook_flow` would raise before any task runs.

    For a run started in the background, so its errors show at once.
    """
    _checked(namespace, flow, executor)


def _checked(
    namespace: Mapping[str, Any], flow: Flow | None, executor: Executor | None
) -> tuple[Flow, Executor, Any]:
    flow = flow if flow is not None else current_flow()
    if executor is None:
        executor = flow.executor
    if executor is None:
        from nbflow.executors.local import LocalExecutor

        executor = LocalExecutor()
    flow.validate()
    values = namespace_reads(flow, namespace)
    if _travels(executor):
        check_serialisable(flow, values, executor)
    return flow, executor, values


def _run(flow: Flow, executor: Executor, listeners: Sequence[Listener]) -> State:
    return flow.run(executor=executor, listeners=listeners)


def write_back(state: State, namespace: MutableMapping[str, Any], flow: Flow) -> list[str]:
    """Put the names provided by the cells that succeeded into ``namespace``.

    Cells are taken in flow order, so the latest provider of a name wins.
    Returns the names written.
    """
    written: dict[str, None] = {}
    states: dict[Task, State] = state.result if isinstance(state.result, dict) else {}
    for task in flow.ordered_tasks():
        task_state = states.get(task)
        if not isinstance(task, CellTask) or task_state is None:
            continue
        if not task_state.is_successful():
            continue
        if task.map_var is None:
            values = task_state.result.values
        else:
            children: list[CellResult] = task_state.result
            values = {n: [c.value(n) for c in children] for n in task.provides
                      if all(n in c for c in children)}
        namespace.update(values)
        written.update(dict.fromkeys(values))
    return list(written)


def cell_output(state: State, flow: Flow | None = None) -> str:
    """What the cells printed, each line marked ``[task]`` (``[task[i]]`` if mapped)."""
    flow = flow if flow is not None else current_flow()
    states: dict[Task, State] = state.result if isinstance(state.result, dict) else {}
    lines: list[str] = []
    for task in flow.ordered_tasks():
        task_state = states.get(task)
        if not isinstance(task, CellTask) or task_state is None:
            continue
        if task_state.map_states is not None:
            for i, child in enumerate(task_state.map_states):
                _mark(lines, f"{task.name}[{i}]", child)
        else:
            _mark(lines, task.name, task_state)
    return "\n".join(lines)


def _mark(lines: list[str], label: str, state: State) -> None:
    result = state.result
    text = (result.stdout if isinstance(result, CellResult)
            else getattr(result, "_nbflow_stdout", ""))
    for line in (text or "").splitlines():
        lines.append(f"[{label}] {line}")


def failure(state: State, flow: Flow | None = None) -> CellFailed | None:
    """A :class:`CellFailed` for the tasks that failed on their own, or None.

    It is chained from the first failure's exception and carries each failed
    run's traceback as formatted where it ran (with the cell's source lines).
    """
    flow = flow if flow is not None else current_flow()
    states: dict[Task, State] = state.result if isinstance(state.result, dict) else {}
    failed: list[tuple[str, State]] = []
    for task in flow.ordered_tasks():
        task_state = states.get(task)
        if task_state is None or not task_state.is_failed():
            continue
        if isinstance(task_state, TriggerFailed):
            continue
        children = task_state.map_states or []
        bad = [(f"{task.name}[{i}]", c) for i, c in enumerate(children)
               if c.is_failed() and not isinstance(c, TriggerFailed)]
        failed.extend(bad or [(task.name, task_state)])
    if not failed:
        return None
    done = sum(1 for s in states.values() if s.is_successful())
    first = failed[0][1]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    what = (first.message or f"Task {failed[0][0]!r} failed").rstrip(".")
    tasks = "task that succeeded was" if done == 1 else "tasks that succeeded were"
    message = f"{what}{more}; the outputs of the {done} {tasks} written back."
    tracebacks = [runtime.strip_runtime_frames(s.traceback or s.message or "") for _, s in failed]
    error = CellFailed(failed[0][0], message, tracebacks)
    if isinstance(first.result, BaseException):
        error.__cause__ = first.result
    return error
