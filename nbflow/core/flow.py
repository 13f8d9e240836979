"""Flows: a graph of tasks and the order to run them in; standard library only.

A ``Flow`` holds its tasks in the order they were added, each with the
arguments it was bound to. Edges are derived from those arguments (a task among
them is an upstream task) plus any ``upstream_tasks`` given by hand. Running a
flow is the engine's job: :meth:`Flow.run` imports it when called.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nbflow.core._values import iter_tasks
from nbflow.core.task import (
    Parameter,
    Task,
    _case_stack,
    _flow_stack,
    _OnFailure,
    _VarKwargs,
    flatten,
    unmapped,
)
from nbflow.errors import FlowValidationError

if TYPE_CHECKING:
    from nbflow.engine.events import Listener
    from nbflow.engine.state import State
    from nbflow.executors.base import Executor

__all__ = ["Edge", "Flow", "TerminalStateHandler"]

TerminalStateHandler = Callable[["Flow", "State", "set[State]"], "State | None"]


@dataclasses.dataclass(frozen=True)
class Edge:
    """``upstream_task`` feeds ``downstream_task``, as argument ``key`` if it
    passes data; ``mapped``: each child of the downstream task gets one element.
    """

    upstream_task: Task
    downstream_task: Task
    key: str | None = None
    mapped: bool = False
    flattened: bool = False

    @property
    def upstream(self) -> Task:
        """Short for ``upstream_task``."""
        return self.upstream_task

    @property
    def downstream(self) -> Task:
        """Short for ``downstream_task``."""
        return self.downstream_task

    @property
    def tasks(self) -> set[Task]:
        """Both tasks of the edge."""
        return {self.upstream_task, self.downstream_task}


@dataclasses.dataclass
class _Binding:
    """What a task was called with in this flow."""

    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)
    upstream: list[Task] = dataclasses.field(default_factory=list)
    #: Upstream tasks given to ``.map(upstream_tasks=...)``: mapped over, no data.
    mapped_upstream: list[Task] = dataclasses.field(default_factory=list)
    mapped: bool = False
    #: Arguments that must be passed by position (before ``*args``, or ``/``).
    positional: tuple[str, ...] = ()


class Flow:
    """A graph of tasks, run as one on an executor.

    Parameters
    ----------
    name : str
        The flow's name.
    executor : Executor, optional
        Where ``run()`` runs the tasks; ``LocalExecutor()`` when None.
    terminal_state_handler : callable, optional
        ``handler(flow, state, reference_task_states)`` called once the run and
        its executor have finished; a State it returns replaces the flow's.
    reference_tasks : iterable of Task, optional
        The tasks whose success makes the flow's; default the terminal tasks.
    tasks : iterable of Task, optional
        Tasks to add, with no arguments bound.
    edges : iterable of Edge, optional
        Edges to add (see :meth:`add_edge`).
    state_handlers : list of callables, optional
        Each ``handler(flow, old_state, new_state)`` is called on every state
        change of the flow run; a State it returns replaces the new state.
    on_failure : callable, optional
        ``on_failure(flow, state)`` called when the run ends Failed.

    Examples
    --------
    >>> from nbflow import Flow, task
    >>> @task
    ... def inc(x):
    ...     return x + 1
    >>> with Flow("example") as flow:
    ...     y = inc(inc(1))
    >>> flow.run().result[y].result
    3

    """

    def __init__(
        self,
        name: str,
        executor: Executor | None = None,
        terminal_state_handler: TerminalStateHandler | None = None,
        reference_tasks: Iterable[Task] | None = None,
        tasks: Iterable[Task] | None = None,
        edges: Iterable[Edge] | None = None,
        state_handlers: Iterable[Callable[..., Any]] | None = None,
        on_failure: Callable[..., Any] | None = None,
    ) -> None:
        self.name = name
        self.executor = executor
        self.terminal_state_handler = terminal_state_handler
        if state_handlers is not None and callable(state_handlers):
            raise TypeError(
                f"state_handlers must be a list of callables, got {state_handlers!r}."
            )
        self.state_handlers: list[Callable[..., Any]] = list(state_handlers or ())
        if on_failure is not None:
            self.state_handlers.append(_OnFailure(on_failure))
        self._tasks: dict[Task, _Binding] = {}
        for t in tasks or ():
            self.add_task(t)
        for e in edges or ():
            self.add_edge(e.upstream_task, e.downstream_task, e.key, e.mapped)
        self._reference_tasks: set[Task] = set()
        if reference_tasks is not None:
            self.set_reference_tasks(reference_tasks)

    def __repr__(self) -> str:
        shown = sum(1 for t in self._tasks if t.helper_of is None)  # not helpers
        return f"<Flow: name={self.name!r}, {shown} tasks>"

    def __enter__(self) -> Flow:
        _flow_stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _flow_stack.remove(self)

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        # A flow is an object, not a container: an empty one is still a flow
        # (``flow or active_flow()`` must not skip it).
        return True

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    # -- building ---------------------------------------------------------------

    @property
    def tasks(self) -> set[Task]:
        """The tasks of the flow, as a set (Prefect's type)."""
        return set(self._tasks)

    def ordered_tasks(self) -> list[Task]:
        """The tasks in the order they were added."""
        return list(self._tasks)

    def add_task(self, task: Task) -> Task:
        """Add ``task`` with no arguments bound, if it is not in the flow yet."""
        if not isinstance(task, Task):
            raise TypeError(f"Flow.add_task expects a Task, got {task!r}.")
        if task not in self._tasks:
            if isinstance(task, Parameter):
                _check_parameter_name(self, task)
            self._tasks[task] = _Binding()
            if _case_stack and not isinstance(task, Parameter):
                _case_stack[-1].add_task(task, self)
        return task

    def set_dependencies(
        self,
        task: Task,
        upstream_tasks: Iterable[Task | unmapped] | None = None,
        downstream_tasks: Iterable[Task] | None = None,
        keyword_tasks: dict[str, Any] | None = None,
        mapped: bool = False,
        validate: bool | None = None,
        *,
        arguments: dict[str, Any] | None = None,
        positional: tuple[str, ...] = (),
    ) -> None:
        """Bind ``task`` to arguments and upstream tasks, adding all of them.

        ``keyword_tasks`` (Prefect's name) and ``arguments`` both map argument
        names to values; a value may be a task, ``unmapped(...)`` or a constant.
        """
        binding = self._tasks.setdefault(self.add_task(task), _Binding())
        binding.mapped = binding.mapped or mapped
        binding.positional = positional or binding.positional
        binding.arguments.update(keyword_tasks or {})
        binding.arguments.update(arguments or {})
        for value in binding.arguments.values():
            for upstream, _ in iter_tasks(value):
                self.add_task(upstream)
        for given in upstream_tasks or ():
            into = binding.mapped_upstream if mapped else binding.upstream
            up: Any = given
            if isinstance(given, unmapped):
                up, into = given.value, binding.upstream
            if not isinstance(up, Task):
                raise TypeError(
                    f"upstream_tasks of {task.name!r} must be tasks, got {up!r}."
                )
            if up not in binding.upstream and up not in binding.mapped_upstream:
                into.append(self.add_task(up))
        for downstream in downstream_tasks or ():
            self.set_dependencies(downstream, upstream_tasks=[task])
        if validate:
            self.validate()

    def add_edge(
        self,
        upstream_task: Task,
        downstream_task: Task,
        key: str | None = None,
        mapped: bool = False,
        flattened: bool = False,
        validate: bool | None = None,
    ) -> Edge:
        """Add an edge; with ``key`` it passes upstream's result as that argument.

        Parameters
        ----------
        upstream_task, downstream_task : Task
        key : str, optional
            The argument of ``downstream_task`` the result is passed as.
        mapped : bool
            Map ``downstream_task`` over the upstream result.
        flattened : bool
            Flatten the upstream result (a list of lists) first.
        validate : bool, optional
            Check the flow has no cycle now.

        Returns
        -------
        Edge

        """
        if isinstance(downstream_task, Parameter):
            raise FlowValidationError(
                f"Parameter {downstream_task.name!r} cannot have upstream tasks; "
                "parameters are root tasks."
            )
        if key is None:
            self.set_dependencies(downstream_task, upstream_tasks=[upstream_task],
                                  mapped=mapped)
        else:
            value: Any = flatten(upstream_task) if flattened else upstream_task
            value = value if mapped else unmapped(value)
            self.set_dependencies(downstream_task, arguments={key: value}, mapped=mapped)
        if validate:
            self.validate()
        return Edge(upstream_task, downstream_task, key, mapped, flattened)

    def chain(self, *tasks: Task, validate: bool | None = None) -> list[Edge]:
        """Make each of ``tasks`` run after the one before it.

        Returns
        -------
        list of Edge

        """
        return [self.add_edge(u, d, validate=validate) for u, d in zip(tasks, tasks[1:])]

    def binding(self, task: Task) -> _Binding:
        """What ``task`` was bound to (its arguments, upstream tasks, mapping)."""
        try:
            return self._tasks[task]
        except KeyError:
            raise FlowValidationError(
                f"Task {task.name!r} is not in flow {self.name!r}; add it first."
            ) from None

    def replace(self, old: Task, new: Task, validate: bool = True) -> None:
        """Put ``new`` in ``old``'s place, keeping its position and its edges."""
        if not isinstance(new, Task):
            raise TypeError(
                f"Flow.replace expects a Task to put in {old.name!r}'s place, got "
                f"{new!r}; wrap a value in a task (a @task returning it)."
            )
        binding = self.binding(old)
        items = [(new, binding) if t is old else (t, b) for t, b in self._tasks.items()]
        self._tasks = dict(items)
        for b in self._tasks.values():
            b.arguments = {k: _swap(v, {old: new}) for k, v in b.arguments.items()}
            b.upstream = [new if u is old else u for u in b.upstream]
            b.mapped_upstream = [new if u is old else u for u in b.mapped_upstream]
        if old in self._reference_tasks:
            self._reference_tasks = (self._reference_tasks - {old}) | {new}

    def remove(self, task: Task) -> None:
        """Remove ``task``; refuse while another task reads its result."""
        self.binding(task)
        readers = [t.name for t in self.downstream_tasks(task)]
        if readers:
            raise FlowValidationError(
                f"Task {task.name!r} feeds {', '.join(map(repr, readers))}; "
                "remove those first."
            )
        del self._tasks[task]
        for b in self._tasks.values():
            b.upstream = [u for u in b.upstream if u is not task]
            b.mapped_upstream = [u for u in b.mapped_upstream if u is not task]
        self._reference_tasks.discard(task)

    def copy(self, *, replacing: Mapping[Task, Task] | None = None) -> Flow:
        """A copy of the flow: the same tasks, its own graph.

        ``replacing`` maps tasks to the tasks that take their places in the
        copy, with their positions and edges (as :meth:`replace` would, one at
        a time; here in one pass over the graph).
        """
        swaps = dict(replacing or {})
        new = copy.copy(self)
        new._tasks = {
            swaps.get(t, t): dataclasses.replace(
                b, arguments={k: _swap(v, swaps) for k, v in b.arguments.items()},
                upstream=[swaps.get(u, u) for u in b.upstream],
                mapped_upstream=[swaps.get(u, u) for u in b.mapped_upstream],
            )
            for t, b in self._tasks.items()
        }
        new._reference_tasks = {swaps.get(t, t) for t in self._reference_tasks}
        new.state_handlers = list(self.state_handlers)
        return new

    def update(
        self, flow: Flow, merge_parameters: bool = False, validate: bool | None = None,
        merge_reference_tasks: bool = False,
    ) -> None:
        """Add every task and edge of ``flow`` to this flow.

        Parameters
        ----------
        flow : Flow
        merge_parameters : bool
            Replace this flow's parameters by ``flow``'s of the same name.
        validate : bool, optional
            Check for cycles afterwards.
        merge_reference_tasks : bool
            Add ``flow``'s reference tasks to this flow's.

        """
        if merge_parameters:
            validate = True
            theirs = {p.name: p for p in flow.parameters()}
            for p in self.parameters():
                if p.name in theirs and theirs[p.name] is not p:
                    self.replace(p, theirs[p.name])
        for task, binding in flow._tasks.items():
            mine = self._tasks.setdefault(self.add_task(task), _Binding())
            mine.mapped = mine.mapped or binding.mapped
            mine.positional = binding.positional or mine.positional
            mine.arguments.update(binding.arguments)
            for attr in ("upstream", "mapped_upstream"):
                have = getattr(mine, attr)
                have.extend(u for u in getattr(binding, attr) if u not in have)
            for value in binding.arguments.values():
                for upstream, _ in iter_tasks(value):
                    self.add_task(upstream)
        if merge_reference_tasks:
            self.set_reference_tasks(self.reference_tasks() | flow.reference_tasks())
        if validate:
            self.validate()

    # -- reading ----------------------------------------------------------------

    @property
    def edges(self) -> set[Edge]:
        """Every edge of the flow."""
        edges: set[Edge] = set()
        for down in self._tasks:
            edges.update(self._edges_to(down))
        return edges

    def _edges_to(self, down: Task) -> set[Edge]:
        binding = self._tasks[down]
        edges: set[Edge] = set()
        # ``**kwargs`` values are edges keyed by their own names, as in Prefect.
        items = [
            item
            for key, value in binding.arguments.items()
            for item in (value.items() if isinstance(value, _VarKwargs) else [(key, value)])
        ]
        for key, value in items:
            raw = value.value if isinstance(value, unmapped) else value
            flattened = _is_flatten(raw)
            for up, is_unmapped in iter_tasks(value):
                edges.add(
                    Edge(up, down, key, binding.mapped and not is_unmapped, flattened)
                )
        for up in binding.upstream:
            edges.add(Edge(up, down))
        for up in binding.mapped_upstream:
            edges.add(Edge(up, down, None, True))
        return edges

    def edges_to(self, task: Task) -> set[Edge]:
        """The edges into ``task``."""
        self.binding(task)
        return self._edges_to(task)

    def edges_from(self, task: Task) -> set[Edge]:
        """The edges out of ``task``."""
        self.binding(task)
        return {e for e in self.edges if e.upstream_task is task}

    def all_upstream_edges(self) -> dict[Task, set[Edge]]:
        """Each task's edges in."""
        return {t: self._edges_to(t) for t in self._tasks}

    def all_downstream_edges(self) -> dict[Task, set[Edge]]:
        """Each task's edges out."""
        out: dict[Task, set[Edge]] = {t: set() for t in self._tasks}
        for e in self.edges:
            out[e.upstream_task].add(e)
        return out

    def upstream_tasks(self, task: Task) -> list[Task]:
        """The tasks ``task`` waits for, in binding order, without repeats."""
        binding = self.binding(task)
        found: dict[Task, None] = {}
        for value in binding.arguments.values():
            for up, _ in iter_tasks(value):
                found[up] = None
        for up in binding.upstream:
            found[up] = None
        for up in binding.mapped_upstream:
            found[up] = None
        return list(found)

    def downstream_tasks(self, task: Task) -> list[Task]:
        """The tasks that wait for ``task``."""
        return [t for t in self._tasks if task in self.upstream_tasks(t)]

    def root_tasks(self) -> set[Task]:
        """Tasks with no upstream task."""
        return {t for t in self._tasks if not self.upstream_tasks(t)}

    def terminal_tasks(self) -> set[Task]:
        """Tasks no other task waits for."""
        has_downstream = {up for t in self._tasks for up in self.upstream_tasks(t)}
        return {t for t in self._tasks if t not in has_downstream}

    def reference_tasks(self) -> set[Task]:
        """The tasks that decide the flow's state (default: the terminal ones)."""
        if self._reference_tasks:
            return set(self._reference_tasks)
        return self.terminal_tasks()

    def set_reference_tasks(self, tasks: Iterable[Task]) -> None:
        """Make ``tasks`` decide the flow's state."""
        tasks = set(tasks)
        missing = [t.name for t in tasks if t not in self._tasks]
        if missing:
            raise FlowValidationError(
                f"Reference tasks {missing!r} are not in flow {self.name!r}."
            )
        self._reference_tasks = tasks

    def parameters(self) -> set[Parameter]:
        """The flow's parameters."""
        return {t for t in self._tasks if isinstance(t, Parameter)}

    def get_tasks(
        self,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        task_type: type | None = None,
    ) -> list[Task]:
        """The tasks, in order, that match every condition given.

        Parameters
        ----------
        name : str, optional
            Tasks of this name.
        tags : iterable of str, optional
            Tasks having all of these tags.
        task_type : type, optional
            Tasks that are instances of this class.

        Returns
        -------
        list of Task

        """
        wanted = None if tags is None else set(tags)
        return [
            t for t in self._tasks
            if (name is None or t.name == name)
            and (wanted is None or t.tags.issuperset(wanted))
            and (task_type is None or isinstance(t, task_type))
        ]

    def sorted_tasks(self) -> list[Task]:
        """Every task after all of its upstream tasks; stable for equal ranks.

        Raises
        ------
        FlowValidationError
            If the flow has a cycle; the message names the tasks on it.

        """
        upstream = {t: self.upstream_tasks(t) for t in self._tasks}
        for t, ups in upstream.items():
            for up in ups:
                if up not in upstream:
                    raise FlowValidationError(
                        f"Task {t.name!r} depends on {up.name!r}, which is not in "
                        f"flow {self.name!r}."
                    )
        waiting = {t: len(ups) for t, ups in upstream.items()}
        downstream: dict[Task, list[Task]] = {t: [] for t in upstream}
        for t, ups in upstream.items():
            for up in ups:
                downstream[up].append(t)
        ready = collections.deque(t for t, n in waiting.items() if n == 0)
        order: list[Task] = []
        while ready:
            t = ready.popleft()
            order.append(t)
            for d in downstream[t]:
                waiting[d] -= 1
                if waiting[d] == 0:
                    ready.append(d)
        if len(order) < len(upstream):
            cycle = _find_cycle({t: ups for t, ups in upstream.items() if waiting[t]})
            names = " -> ".join(repr(t.name) for t in cycle)
            raise FlowValidationError(
                f"Flow {self.name!r} has a cycle: {names}; remove one of these edges."
            )
        return order

    def validate(self) -> None:
        """Raise FlowValidationError if the flow cannot run."""
        self.sorted_tasks()

    # -- running ----------------------------------------------------------------

    def run(
        self,
        parameters: dict[str, Any] | None = None,
        *,
        executor: Executor | None = None,
        listeners: Sequence[Listener] = (),
        task_states: dict[Task, State] | None = None,
        return_tasks: Iterable[Task] | None = None,
        memory_budget: int | None = None,
        **kwargs: Any,
    ) -> State:
        """Run the flow to its end and return its state.

        Parameters
        ----------
        parameters : dict, optional
            Values of the flow's :class:`Parameter` tasks by name; keyword
            arguments that name a parameter are taken as values too.
        executor : Executor, optional
            Overrides ``flow.executor`` for this run.
        listeners : sequence of callables
            Each is called with batches of :mod:`nbflow.engine.events` events.
        task_states : dict, optional
            States to start from, by task: a task given a finished state is
            not run and keeps it (a Cached one is checked by its validator).
        return_tasks : iterable of Task, optional
            Tasks whose results to bring home, besides the reference tasks'.
            On a Dask cluster every other result stays where it was computed:
            reading it fetches it while the cluster is there (an existing one,
            ``DaskExecutor(address=...)``); a temporary cluster takes it along.
            When ``return_tasks`` is given, the other results are freed as
            soon as no task needs them.
        memory_budget : int, optional
            Bring home at most this many bytes of those results; the largest
            stay on the cluster, fetched on first read.

        Returns
        -------
        State
            ``Success`` if every reference task succeeded, else ``Failed``, or
            ``Cancelled`` after a KeyboardInterrupt; ``state.result`` maps each
            task to its state.

        """
        from nbflow.engine.runner import run_flow

        params = dict(parameters or {})
        names = {p.name for p in self.parameters()}
        for key in list(kwargs):
            if key in names:
                params[key] = kwargs.pop(key)
        if kwargs:
            raise TypeError(
                f"Flow.run got unexpected arguments {sorted(kwargs)!r}; "
                f"the flow's parameters are {sorted(names)!r}."
            )
        return run_flow(
            self, parameters=params, executor=executor or self.executor,
            listeners=listeners, task_states=task_states,
            return_tasks=return_tasks, memory_budget=memory_budget,
        )


def _is_flatten(value: Any) -> bool:
    return isinstance(value, flatten)


def _swap(value: Any, swaps: Mapping[Task, Task]) -> Any:
    """``value`` with the tasks in it (wrapped or in containers) swapped."""
    if not swaps:
        return value
    if isinstance(value, Task):
        return swaps.get(value, value)
    if isinstance(value, (unmapped, flatten)):
        return type(value)(_swap(value.value, swaps))
    if isinstance(value, (list, tuple)):
        return type(value)(_swap(v, swaps) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _swap(v, swaps)) for k, v in value.items())
    return value


def _find_cycle(upstream: dict[Task, list[Task]]) -> list[Task]:
    """Return the tasks of one cycle among ``upstream`` (all of it cyclic)."""
    start = next(iter(upstream))
    path: list[Task] = []
    seen: dict[Task, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(u for u in upstream[node] if u in upstream)
    return path[seen[node]:] + [node]


def _check_parameter_name(flow: Flow, parameter: Parameter) -> None:
    """Refuse a second Parameter of one name: ``flow.run(parameters=...)``
    could not tell them apart.
    """
    if any(p.name == parameter.name for p in flow.parameters()):
        raise FlowValidationError(
            f"Flow {flow.name!r} already has a Parameter named {parameter.name!r}; "
            "use that one, or give this one another name."
        )
