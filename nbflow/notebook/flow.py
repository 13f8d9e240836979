"""The kernel's notebook flow: cells registered as tasks, and their edges.

Notebook layer: no IPython. :func:`current_flow` returns one ordinary
:class:`~nbflow.Flow` per process (per kernel). :func:`register_cell` turns a
cell's source into a :class:`CellTask` and adds it, or puts it in place of the
task of the same name. After every change the cell tasks are *rebound*: a cell
reading a name gets an edge from the latest cell registered above it that
provides the name; names no cell above provides come from the user namespace
when the flow runs (see :mod:`nbflow.notebook.run`).

The kernel never sees the notebook, only cells executing one after another, so
it learns where cells are from that order. Each cell is known by its key (the
cell id Jupyter sends with every execution, else the task's name or, for a
``%flow run`` line, its rank among the runs of the pass). A *pass* is a stretch of
executions in which no key comes twice (Run All is one pass). For every
``%flow run`` cell the kernel keeps the cells seen below it; :func:`run_flow` leaves
their tasks out, so the tasks registered further down by an earlier Run All do
not run at the top of the next one. A cell registered under a new name replaces
its old task; a cell Jupyter reports deleted takes its task with it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbflow.core.flow import Flow
from nbflow.core.task import Task, unmapped
from nbflow.errors import (
    DuplicateProviderError,
    FlowtaskOptionsError,
    FlowValidationError,
    RegistrationError,
)
from nbflow.executors.base import resolve_executor
from nbflow.notebook.cells import CellAnalysis, analyze_cell, parse_cell
from nbflow.notebook.options import resolve_trigger
from nbflow.notebook.runtime import CellFunction, Pick, register_source

__all__ = [
    "CellTask",
    "DuplicateProviderError",
    "PickTask",
    "RegistrationError",
    "cell_inputs",
    "check_providers",
    "current_flow",
    "describe_cell",
    "describe_flow",
    "forget_cells",
    "notebook_name",
    "register_cell",
    "remove_task",
    "reset_flow",
    "run_flow",
]

FLOW_NAME = "notebook"
_flow: Flow | None = None


@dataclass
class _Passes:
    """What the kernel learnt of the notebook's cells from their execution order."""

    current: list[str] = field(default_factory=list)  # keys executed in this pass
    runs: int = 0  # ``%flow run`` lines without a cell id in this pass
    below: dict[str, set[str]] = field(default_factory=dict)  # run key -> keys below
    task_of: dict[str, str] = field(default_factory=dict)  # cell key -> task name

    def executed(self, key: str, *, run: bool = False) -> set[str]:
        """Note that the cell ``key`` ran; for a run, return the keys below it."""
        if key in self.current:
            self.current, self.runs = [], 0
        stale: set[str] = set()
        if run:
            below = self.below.setdefault(key, set())
            below.difference_update(self.current)
            stale = set(below)
        for earlier in self.current:
            if earlier in self.below:
                self.below[earlier].add(key)
        self.current.append(key)
        return stale


_passes: weakref.WeakKeyDictionary[Flow, _Passes] = weakref.WeakKeyDictionary()


def _passes_of(flow: Flow) -> _Passes:
    passes = _passes.get(flow)
    if passes is None:
        passes = _passes[flow] = _Passes()
    return passes


def current_flow() -> Flow:
    """Return this kernel's notebook flow, creating it on first use.

    Returns
    -------
    Flow
        An ordinary flow: set ``current_flow().executor`` to choose where it runs.

    Examples
    --------
    >>> from nbflow.executors import LocalDaskExecutor
    >>> current_flow().executor = LocalDaskExecutor()     # doctest: +SKIP

    Its name is the notebook's (``01-quickstart``) in a kernel Jupyter started,
    else ``"notebook"``.

    """
    global _flow
    if _flow is None:
        _flow = Flow(notebook_name() or FLOW_NAME)
    return _flow


def notebook_name() -> str | None:
    """The name of the notebook this kernel runs (``01-quickstart``), from the
    ``JPY_SESSION_NAME`` Jupyter's server gives its kernels; None elsewhere.
    """
    path = os.environ.get("JPY_SESSION_NAME", "").strip()
    if not path:
        return None
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.removesuffix(".ipynb") or None


class CellTask(Task):
    """A ``%%flowtask`` cell as a task: its source, analysis and options."""

    def __init__(
        self,
        source: str,
        name: str,
        analysis: CellAnalysis,
        *,
        map_var: str | None = None,
        after: Sequence[str] = (),
        max_retries: int = 0,
        retry_delay: datetime.timedelta | float | None = None,
        cache: bool = True,
        cache_for: datetime.timedelta | None = None,
        trigger: str | None = None,
        skip_on_upstream_skip: bool = True,
        timeout: float | None = None,
    ) -> None:
        filename = f"<flowtask {name}>"
        fn = CellFunction(name, source, filename, analysis.provides, map_var)
        super().__init__(fn, name=name, max_retries=max_retries,
                         retry_delay=retry_delay, timeout=timeout,
                         trigger=None if trigger is None else resolve_trigger(trigger),
                         skip_on_upstream_skip=skip_on_upstream_skip)
        self.source = source
        self.filename = filename
        self.cell_function = fn
        self.analysis = analysis
        self.map_var = map_var
        self.after = tuple(after)
        #: Reuse the stored result when nothing changed (see nbflow.notebook.cache).
        self.cache = cache
        #: How long the notebook store keeps its result valid (``--cache-for``);
        #: not ``Task.cache_for``, Prefect's in-process cache, which cells do not use.
        self.store_for = cache_for
        #: ``--trigger`` as written (``"all_finished"``), None for the default.
        self.trigger_spec = trigger

    def __repr__(self) -> str:
        return f"<CellTask: {self.name}>"

    @property
    def reads(self) -> tuple[str, ...]:
        """Names the cell reads (the mapped name first, when it maps)."""
        reads = self.analysis.reads
        if self.map_var and self.map_var not in reads:
            return (self.map_var, *reads)
        return reads

    @property
    def provides(self) -> tuple[str, ...]:
        """Names the cell provides."""
        return self.analysis.provides


class PickTask(Task):
    """Takes ``name`` out of ``source``'s result, for a cell that maps over it."""

    def __init__(self, source: CellTask, name: str) -> None:
        super().__init__(Pick(name), name=f"{source.name}.{name}")
        self.helper_of = source
        self.source_task = source
        self.picked = name


def default_name(source: str, analysis: CellAnalysis) -> str:
    """The first name the cell creates (provides without reading), else a hash."""
    new = [n for n in analysis.provides if n not in analysis.reads]
    if new:
        return new[0]
    digest = hashlib.sha1(source.encode()).hexdigest()[:8]
    first = analysis.provides[0] if analysis.provides else "cell"
    return f"{first}_{digest}"


def register_cell(
    source: str,
    name: str | None = None,
    *,
    map_var: str | None = None,
    retries: int = 0,
    retry_delay: float | None = None,
    after: Iterable[str] = (),
    cell_id: str | None = None,
    flow: Flow | None = None,
    cache: bool = True,
    cache_for: datetime.timedelta | None = None,
    trigger: str | None = None,
    skip_on_upstream_skip: bool = True,
    timeout: float | None = None,
) -> CellTask:
    """Register a cell as a task of the notebook flow; do not run it.

    Parameters
    ----------
    source : str
        The cell's code.
    name : str, optional
        The task's name; a task of that name is replaced in place. Default: the
        first name the cell provides.
    map_var : str, optional
        Run the cell once per element of this name; each provided name becomes
        the list of per-element values.
    retries, retry_delay : int, float
        Retry a failing run of the cell this often, this many seconds apart.
    after : iterable of str
        Names of tasks this one runs after, besides its data edges.
    cell_id : str, optional
        The notebook cell's id (Jupyter sends it): a cell registered again under
        another name replaces its old task.
    flow : Flow, optional
        Default :func:`current_flow`.
    cache : bool
        Reuse the cell's stored result when its code and inputs did not change.
    cache_for : timedelta, optional
        A stored result is reused for this long at most.
    trigger : str, optional
        A trigger of :mod:`nbflow.triggers` by name (``"all_finished"``), or
        ``"some_successful(at_least=2)"``; default ``all_successful``.
    skip_on_upstream_skip : bool
        Skip the cell when an upstream task was skipped (Prefect's default).
    timeout : float, optional
        Seconds a run may take before the cell ends TimedOut.

    Returns
    -------
    CellTask

    Raises
    ------
    CellSyntaxError
        The cell does not parse (the message gives the line).
    RegistrationError
        An unknown ``after`` task, a bad option, or another cell already
        registered a task of this name.
    FlowValidationError
        The edges would make a cycle; the flow is left as it was.

    Examples
    --------
    >>> task = register_cell("y = x * 2", "double")      # doctest: +SKIP

    """
    flow = flow if flow is not None else current_flow()
    tree = parse_cell(source, name, f"<flowtask {name or 'cell'}>")
    analysis = analyze_cell(tree, name)
    name = name or default_name(source, analysis)
    if not name.strip():
        raise RegistrationError("The task name is empty; give a name or leave it out.")
    after = tuple(after)
    known = {t.name for t in flow.ordered_tasks()}
    for upstream in after:
        if upstream not in known or upstream == name:
            choices = ", ".join(repr(n) for n in sorted(known - {name})) or "none yet"
            raise RegistrationError(
                f"Cell {name!r} runs --after {upstream!r}, which is not a task of the "
                f"flow; use one of: {choices}."
            )
    if map_var is not None and not map_var.isidentifier():
        raise RegistrationError(
            f"Cell {name!r} maps over {map_var!r}, which is not a variable name; "
            "give --map the name of a list."
        )
    passes = _passes_of(flow)
    key = f"cell:{cell_id}" if cell_id is not None else f"task:{name}"
    by_name = {t.name: t for t in flow.ordered_tasks()}
    owner = next((k for k, n in passes.task_of.items()
                  if n == name and k != key and k.startswith("cell:")), None)
    if cell_id is not None and owner is not None and name in by_name:
        raise RegistrationError(
            f"Another cell already registered the task {name!r}; give this cell "
            f"another name (`%%flowtask NAME`), or `%flow remove {name}` first."
        )
    try:
        task = CellTask(source, name, analysis, map_var=map_var, after=after,
                        max_retries=retries, retry_delay=retry_delay, cache=cache,
                        cache_for=cache_for, trigger=trigger,
                        skip_on_upstream_skip=skip_on_upstream_skip, timeout=timeout)
    except (FlowValidationError, FlowtaskOptionsError) as exc:
        raise RegistrationError(str(exc)) from None
    renamed = passes.task_of.get(key)
    old = by_name.get(name)
    previous = by_name.get(renamed) if renamed is not None and renamed != name else None
    if old is None:
        old, previous = previous, None  # the new name takes the old one's place
    _install(flow, task, old)
    register_source(task.filename, source)
    passes.executed(key)
    passes.task_of = {k: n for k, n in passes.task_of.items()
                      if n not in (name, renamed) or k == key}
    passes.task_of[key] = name
    if previous is not None:
        with contextlib.suppress(RegistrationError):  # kept while a task runs --after it
            remove_task(previous.name, flow)
    return task


def _install(flow: Flow, task: CellTask, old: Task | None) -> None:
    """Add ``task`` or put it in ``old``'s place; undo it if that makes a cycle."""
    if old is None:
        flow.add_task(task)
    else:
        flow.replace(old, task)
    try:
        rebind(flow)
        flow.validate()
    except FlowValidationError:
        if old is None:
            rebind(flow, exclude=task)
            _clear_binding(flow, task)
            flow.remove(task)
        else:
            flow.replace(task, old)
        rebind(flow)
        raise


def run_flow(cell_id: str | None = None, flow: Flow | None = None) -> Flow:
    """The flow a ``%flow run`` in the cell ``cell_id`` runs, and note that it ran.

    The notebook flow without the tasks of the cells seen below this cell (by an
    earlier pass) that did not run above it since: Run All gives the same tasks
    every time. Without a cell id, a run is known by its rank in the pass.

    Parameters
    ----------
    cell_id : str, optional
        The notebook cell's id, as Jupyter sends it.
    flow : Flow, optional
        Default :func:`current_flow`.

    Returns
    -------
    Flow
        ``flow`` itself when no task is left out, else a new flow of the same
        name and executor, with the remaining tasks and their edges.

    Examples
    --------
    >>> flow = run_flow("a1b2c3")                       # doctest: +SKIP

    """
    flow = flow if flow is not None else current_flow()
    passes = _passes_of(flow)
    if cell_id is None:
        passes.runs += 1
        key = f"run:{passes.runs}"
    else:
        key = f"cell:{cell_id}"
    stale = {passes.task_of[k] for k in passes.executed(key, run=True)
             if k in passes.task_of}
    if not any(t.name in stale for t in flow.ordered_tasks()):
        return flow
    sub = Flow(flow.name, executor=flow.executor,
               terminal_state_handler=flow.terminal_state_handler)
    for task in flow.ordered_tasks():
        if task.name in stale or isinstance(task, PickTask):
            continue
        sub.add_task(task)
        if not isinstance(task, CellTask):  # a task added in Python keeps its edges
            binding = flow.binding(task)
            sub.set_dependencies(task, upstream_tasks=binding.upstream,
                                 arguments=dict(binding.arguments), mapped=binding.mapped)
    rebind(sub)
    return sub


def forget_cells(cell_ids: Iterable[str], flow: Flow | None = None) -> list[str]:
    """Remove the tasks of cells deleted from the notebook; return their names."""
    flow = flow if flow is not None else current_flow()
    passes = _passes_of(flow)
    removed = []
    for cell_id in cell_ids:
        name = passes.task_of.pop(f"cell:{cell_id}", None)
        if name is not None and any(t.name == name for t in flow.ordered_tasks()):
            try:
                remove_task(name, flow)
            except RegistrationError:
                continue  # another task runs --after it: keep it, as `%flow remove` would
            removed.append(name)
    return removed


def check_providers(flow: Flow | None = None) -> None:
    """Raise :class:`DuplicateProviderError` if two cells provide one name and
    neither reads it from the other (which one a reader gets would be luck).
    """
    flow = flow if flow is not None else current_flow()
    latest: dict[str, CellTask] = {}
    for task, inputs in cell_inputs(flow).items():
        for name in task.provides:
            first = latest.get(name)
            if first is not None and inputs.get(name) is not first:
                raise DuplicateProviderError(
                    f"Cells {first.name!r} and {task.name!r} both provide {name!r}; "
                    f"rename it in one of them, or let {task.name!r} read it first "
                    f"(e.g. `{name} = {name} + ...`)."
                )
            latest[name] = task


def remove_task(name: str, flow: Flow | None = None) -> Task:
    """Remove the task called ``name``; cells that read from it read the namespace.

    Raises
    ------
    RegistrationError
        No task has that name, or another task runs ``--after`` it.

    """
    flow = flow if flow is not None else current_flow()
    task = next((t for t in flow.ordered_tasks() if t.name == name), None)
    if task is None:
        names = ", ".join(repr(t.name) for t in flow.ordered_tasks()) or "none"
        raise RegistrationError(f"No task is called {name!r}; the tasks are: {names}.")
    waiting = [t.name for t in flow.ordered_tasks()
               if isinstance(t, CellTask) and name in t.after]
    if waiting:
        raise RegistrationError(
            f"Task {name!r} cannot be removed: {', '.join(map(repr, waiting))} run "
            "--after it; remove or re-register those first."
        )
    _clear_binding(flow, task)
    rebind(flow, exclude=task)
    try:
        flow.remove(task)
    except FlowValidationError as exc:
        rebind(flow)
        raise RegistrationError(str(exc)) from None
    rebind(flow)
    return task


def reset_flow(flow: Flow | None = None) -> None:
    """Remove every task of the notebook flow; keep the flow and its executor."""
    flow = flow if flow is not None else current_flow()
    for task in flow.ordered_tasks():
        _clear_binding(flow, task)
    for task in flow.ordered_tasks():
        flow.remove(task)
    _passes.pop(flow, None)


def _clear_binding(flow: Flow, task: Task) -> None:
    binding = flow.binding(task)
    binding.arguments = {}
    binding.upstream = []
    binding.mapped = False


def cell_inputs(flow: Flow, exclude: Task | None = None) -> dict[CellTask, dict[str, CellTask]]:
    """For each cell task, in order: the names it reads and the cell providing each."""
    latest: dict[str, CellTask] = {}
    inputs: dict[CellTask, dict[str, CellTask]] = {}
    for task in flow.ordered_tasks():
        if not isinstance(task, CellTask) or task is exclude:
            continue
        inputs[task] = {n: latest[n] for n in (*task.reads, *task.analysis.fallbacks)
                        if n in latest}
        for name in task.provides:
            latest[name] = task
    return inputs


def rebind(
    flow: Flow, namespace: Mapping[str, Any] | None = None, exclude: Task | None = None
) -> None:
    """Recompute every cell task's edges; with ``namespace``, also bind the
    namespace values that mapped cells map over.
    """
    picks = {(t.source_task, t.picked): t for t in flow.ordered_tasks()
             if isinstance(t, PickTask)}
    used: set[Task] = set()
    by_name = {t.name: t for t in flow.ordered_tasks()}
    for task, inputs in cell_inputs(flow, exclude).items():
        arguments: dict[str, Any] = {}
        for name, upstream in inputs.items():
            if name != task.map_var:
                arguments[name] = unmapped(upstream) if task.map_var else upstream
            elif upstream.map_var is not None:
                arguments[name] = upstream  # child i feeds child i
            else:
                pick = picks.get((upstream, name))
                if pick is None:
                    pick = picks[(upstream, name)] = PickTask(upstream, name)
                    flow.set_dependencies(pick, arguments={"result": upstream})
                used.add(pick)
                arguments[name] = pick
        if task.map_var and task.map_var not in inputs and namespace is not None:
            arguments[task.map_var] = namespace[task.map_var]
        after = [by_name[n] for n in task.after if n in by_name]
        binding = flow.binding(task)
        mapped = task.map_var is not None
        if (binding.mapped, binding.upstream, _identities(binding.arguments)) == (
            mapped, after, _identities(arguments)
        ):
            continue  # unchanged: most cells, when one cell is (re)registered
        _clear_binding(flow, task)
        # ``--after`` orders; it is not mapped over (Prefect maps over a
        # mapped task's upstream_tasks unless they are unmapped).
        flow.set_dependencies(task, upstream_tasks=[unmapped(a) for a in after],
                              arguments=arguments, mapped=mapped)
    for pick in picks.values():
        if pick not in used:
            flow.remove(pick)


def _identities(arguments: Mapping[str, Any]) -> list[tuple[str, bool, int]]:
    return [(k, isinstance(v, unmapped), id(v.value if isinstance(v, unmapped) else v))
            for k, v in arguments.items()]


def describe_cell(task: CellTask, flow: Flow | None = None) -> str:
    """One line: the task, what it reads from other tasks, what it provides."""
    flow = flow if flow is not None else current_flow()
    inputs = cell_inputs(flow).get(task, {})
    reads = ", ".join(f"{n} (from {t.name})" for n, t in inputs.items()) or "nothing"
    provides = ", ".join(task.provides) or "nothing"
    star = (" (and the names of its `import *`, which are not tracked)"
            if task.analysis.star_import else "")
    return (f"Task {task.name!r}{_options(task)}: reads {reads} from other tasks; "
            f"provides {provides}{star}.")


def _options(task: CellTask) -> str:
    parts = []
    if task.map_var:
        parts.append(f"maps over {task.map_var}")
    if task.max_retries:
        parts.append(f"{task.max_retries} retries")
    if task.after:
        parts.append("after " + ", ".join(task.after))
    if not task.cache:
        parts.append("not cached")
    elif task.store_for is not None:
        parts.append(f"cached for {task.store_for}")
    if task.trigger_spec is not None:
        parts.append(f"trigger {task.trigger_spec}")
    if not task.skip_on_upstream_skip:
        parts.append("runs after a skipped upstream")
    if task.timeout is not None:
        parts.append(f"timeout {task.timeout:g} s")
    return f" ({'; '.join(parts)})" if parts else ""


def describe_flow(flow: Flow | None = None) -> str:
    """The tasks with their inputs, outputs and edges, as text.

    The tasks nbflow adds to pick a mapped-over name out of a cell's results
    are not listed: their edges are shown as going from that cell.
    """
    flow = flow if flow is not None else current_flow()
    executor = repr(resolve_executor(flow.executor))
    shown = [t for t in flow.ordered_tasks() if not isinstance(t, PickTask)]
    noun = "task" if len(shown) == 1 else "tasks"
    lines = [f"Flow {flow.name!r}: {len(shown)} {noun}, executor {executor}."]
    inputs = cell_inputs(flow)
    for i, task in enumerate(shown, 1):
        if isinstance(task, CellTask):
            from_tasks = inputs.get(task, {})
            others = [n for n in task.reads if n not in from_tasks]
            lines.append(
                f"  {i}. {task.name}{_options(task)}\n"
                f"       inputs: {_join(f'{n} <- {t.name}' for n, t in from_tasks.items())}"
                f"\n       from namespace: {_join(others)}"
                f"\n       outputs: {_join(task.provides)}"
            )
        else:
            lines.append(f"  {i}. {task.name} ({type(task).__name__})")
    edges: dict[tuple[str, str], list[str]] = {}
    for edge in flow.edges:
        if isinstance(edge.downstream, PickTask):
            continue
        up: Task = edge.upstream
        key = edge.key
        if isinstance(up, PickTask):
            key = up.picked
            up = up.source_task
        keys = edges.setdefault((up.name, edge.downstream.name), [])
        if key and key not in keys:
            keys.append(key)
    lines.append("Edges:" if edges else "Edges: none.")
    for (up_name, down_name), keys in sorted(edges.items()):
        label = f" ({', '.join(sorted(keys))})" if keys else ""
        lines.append(f"  {up_name} -> {down_name}{label}")
    return "\n".join(lines)


def _join(names: Iterable[str]) -> str:
    return ", ".join(names) or "-"
