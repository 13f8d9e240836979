"""Running the notebook flow and writing its results back into a namespace.

Notebook layer: no IPython. :func:`run_notebook_flow` checks the flow before
anything runs (every name a cell reads exists, mapped names are sequences, and
on processes or a cluster every value can be serialised), runs it on its
executor, and writes each provided name back. :func:`cell_output` and
:func:`failure` turn the final state into what the notebook shows.
"""

from __future__ import annotations

import collections.abc
from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nbflow.core.flow import Flow
from nbflow.core.task import Task
from nbflow.engine.runner import bringing_home
from nbflow.engine.state import State, TriggerFailed, deferred_sizes
from nbflow.errors import (
    CellFailed,
    MapValueError,
    MemoryBudgetError,
    UndefinedNameError,
    UnserialisableValueError,
)
from nbflow.executors.base import report_code, resolve_executor
from nbflow.notebook import runtime
from nbflow.notebook.flow import (
    CellTask,
    cell_inputs,
    check_providers,
    current_flow,
    rebind,
)
from nbflow.notebook.runtime import CellResult, install_stdout, uninstall_stdout

if TYPE_CHECKING:
    from nbflow.engine.events import Listener
    from nbflow.executors.base import Executor

#: ``runner(flow, executor, listeners, task_states) -> State``: how a prepared
#: flow is run (``task_states``: the cells reused from the cache, as ``Cached``).
Runner = Callable[[Flow, "Executor", Sequence["Listener"], Mapping[Task, State]], State]

__all__ = [
    "CellFailed",
    "ClusterValue",
    "MapValueError",
    "MemoryBudgetError",
    "Runner",
    "UndefinedNameError",
    "UnserialisableValueError",
    "cell_output",
    "default_memory_budget",
    "failure",
    "format_bytes",
    "left_on_cluster",
    "namespace_reads",
    "parse_bytes",
    "run_notebook_flow",
    "write_back",
]


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
    fresh: bool | Iterable[str] = False,
    memory_budget: int | None = None,
) -> State:
    """Run the notebook flow and write every provided name back to ``namespace``.

    Cells whose code and inputs did not change since their result was stored
    do not run: they end ``Cached`` with the stored outputs (see
    :mod:`nbflow.notebook.cache`; :func:`nbflow.notebook.cache.last_plan` says
    what was reused and why the others ran).

    On a cluster, the values the cells provide are brought home within
    ``memory_budget`` bytes (the scheduler knows their sizes before any is
    fetched); the largest beyond it stay there, written back as
    :class:`ClusterValue` handles, named in one printed line.

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
        ``runner(flow, executor, listeners, task_states) -> State`` runs the
        prepared flow; default ``flow.run(executor=executor,
        listeners=listeners, task_states=task_states)`` (a live view passes one
        that builds a cancellable ``FlowRun``).
    fresh : bool or iterable of str
        True: reuse no stored result. Task names: not those, nor their downstream.
    memory_budget : int, optional
        Bytes of values to bring home from a cluster at most; default
        :func:`default_memory_budget` (a quarter of the available memory).

    Returns
    -------
    State
        The flow's final state; ``state.result`` maps each task to its state.

    Raises
    ------
    UndefinedNameError, MapValueError, UnserialisableValueError, FlowValidationError
        Before any task runs.
    DuplicateProviderError
        Two cells provide one name (neither reads it from the other); before
        any task runs.

    Examples
    --------
    >>> state = run_notebook_flow(globals())             # doctest: +SKIP

    """
    flow, executor, values = _checked(namespace, flow, executor)
    from nbflow.executors.dask import DaskExecutor
    from nbflow.notebook import cache

    on_dask = executor if isinstance(executor, DaskExecutor) else None
    plan = cache.plan_run(
        flow, values, namespace, fresh=fresh, cluster=on_dask is not None,
        cluster_address=None if on_dask is None else on_dask.address,
        local_workers=on_dask is not None and on_dask.is_local_cluster)
    mapped = {t.map_var: namespace[t.map_var] for t in values
              if t.map_var and t.map_var in namespace}
    portable = executor.crosses_processes
    stream = install_stdout()
    budget = default_memory_budget() if memory_budget is None else memory_budget
    cells = [t for t in flow.ordered_tasks() if isinstance(t, CellTask)]
    try:
        # A run's report (Dask's) shows the cells, not the line `%flow run`.
        with _prepared(flow, values, mapped, portable), \
                report_code(cells_source(flow)), bringing_home(cells, budget):
            for task in values:
                plan.wrap(task)
            state = (runner or _run)(flow, executor, listeners, plan.task_states)
    finally:
        uninstall_stdout(stream)
    cache.remember(plan, state.result if isinstance(state.result, dict) else {})
    written = write_back(state, namespace, flow)
    line = left_on_cluster({n: namespace[n] for n in written}, budget)
    if line:
        print(line)
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
    executor = resolve_executor(executor, flow.executor)
    flow.validate()
    check_providers(flow)
    values = namespace_reads(flow, namespace)
    if executor.crosses_processes:
        check_serialisable(flow, values, executor)
    return flow, executor, values


def _run(
    flow: Flow,
    executor: Executor,
    listeners: Sequence[Listener],
    task_states: Mapping[Task, State],
) -> State:
    return flow.run(executor=executor, listeners=listeners,
                    task_states=dict(task_states))


class ClusterValue:
    """A value a cell provided that stayed on the cluster (over the memory
    budget): :meth:`result` brings it home. ``size`` is the size of all the
    values the cell provided, as the scheduler knows it (None if unknown).
    """

    __slots__ = ("name", "size", "_state", "_mapped")

    def __init__(self, name: str, state: State, size: int | None, mapped: bool) -> None:
        self.name = name
        self.size = size
        self._state = state
        self._mapped = mapped

    def result(self) -> Any:
        """Fetch the value from the cluster (once; later calls reuse it).

        Raises
        ------
        ResultNotKeptError
            The cluster is gone (a temporary one shut down), or lost it.

        """
        found = self._state.result
        if self._mapped:
            return [c.value(self.name) for c in found]
        return found.value(self.name)

    def __repr__(self) -> str:
        size = "" if self.size is None else f", {format_bytes(self.size)}"
        return (f"<ClusterValue {self.name!r}{size} on the Dask cluster; "
                f"{self.name}.result() brings it home>")


def write_back(state: State, namespace: MutableMapping[str, Any], flow: Flow) -> list[str]:
    """Put the names provided by the cells that succeeded into ``namespace``.

    Cells are taken in flow order, so the latest provider of a name wins. A
    value still on a cluster is written as a :class:`ClusterValue`. Returns
    the names written.
    """
    written: dict[str, None] = {}
    states: dict[Task, State] = state.result if isinstance(state.result, dict) else {}
    done = [(t, s) for t in flow.ordered_tasks() if isinstance(t, CellTask)
            and (s := states.get(t)) is not None and s.is_successful()]
    sizes = deferred_sizes([s for _, s in done])
    for (task, task_state), size in zip(done, sizes):
        if task_state.is_result_deferred():
            values: dict[str, Any] = {
                n: ClusterValue(n, task_state, size, task.map_var is not None)
                for n in task.provides
            }
        elif task.map_var is None:
            result = task_state.result
            # Skipped (or ended by a signal): the cell provided nothing.
            values = result.values if isinstance(result, CellResult) else {}
        else:
            # A skipped child provides None in its place.
            children: list[CellResult | None] = [
                c if isinstance(c, CellResult) else None
                for c in task_state.result or ()]
            values = {n: [None if c is None else c.value(n) for c in children]
                      for n in task.provides
                      if all(c is None or n in c for c in children)}
        namespace.update(values)
        written.update(dict.fromkeys(values))
    return list(written)


def left_on_cluster(namespace: Mapping[str, Any], budget: int) -> str:
    """One line naming the values in ``namespace`` that stayed on a cluster,
    largest first, or "" if none did.
    """
    cells: dict[int, list[ClusterValue]] = {}
    for value in namespace.values():
        if isinstance(value, ClusterValue):
            cells.setdefault(id(value._state), []).append(value)
    if not cells:
        return ""
    groups = sorted(cells.values(), key=lambda g: -(g[0].size or 0))
    names = ", ".join(
        " and ".join(v.name for v in group)
        + ("" if group[0].size is None else f" ({format_bytes(group[0].size)})")
        for group in groups
    )
    return (f"Left on the cluster, over the memory budget of {format_bytes(budget)}: "
            f"{names}; bring one home with {groups[0][0].name}.result(), or raise "
            "the budget (%flow run --memory-budget 8GB).")


def default_memory_budget() -> int:
    """A quarter of the memory this machine has available now."""
    try:
        import psutil  # type: ignore[import-untyped]

        available = int(psutil.virtual_memory().available)
    except ImportError:
        available = _meminfo_available()
    return available // 4


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str | int) -> int:
    """``"2GB"``, ``"500 MiB"`` or ``1000000`` as a number of bytes.

    Raises
    ------
    MemoryBudgetError
        ``text`` is not a size.

    """
    if isinstance(text, int):
        return text
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value < 0:
        raise MemoryBudgetError(
            f"Memory budget {text!r} is not a size; write it like '2GB', "
            "'500MB' or a number of bytes."
        )
    return int(value * _UNITS[unit])


def format_bytes(n: int) -> str:
    """``n`` bytes in a short human form, e.g. ``"1.5 GB"``."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


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
    if state.is_result_deferred():
        return  # its output stayed on the cluster with its values
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
    done = sum(1 for t, s in states.items()
               if s.is_successful() and not s.is_skipped() and t.helper_of is None)
    first = failed[0][1]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    what = (first.message or f"Task {failed[0][0]!r} failed").rstrip(".")
    tasks = "task" if done == 1 else "tasks"
    message = f"{what}{more}; the outputs of the {done} {tasks} that succeeded were written back."
    tracebacks = [runtime.strip_runtime_frames(s.traceback or s.message or "") for _, s in failed]
    error = CellFailed(failed[0][0], message, tracebacks)
    if isinstance(first.result, BaseException):
        error.__cause__ = first.result
    return error
