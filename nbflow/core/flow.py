"""Flows: a graph of tasks and the order to run them in; standard library only.

A ``Flow`` holds its tasks in the order they were added, each with the
arguments it was bound to. Edges are derived from those arguments (a task among
them is an upstream task) plus any ``upstream_tasks`` given by hand. Running a
flow is the engine's job: :meth:`Flow.run` imports it when called.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from nbflow.core._values import iter_tasks
from nbflow.core.task import Parameter, Task, _flow_stack, unmapped
from nbflow.errors import FlowValidationError

if TYPE_CHECKING:
    from nbflow.engine.events import Listener
    from nbflow.engine.state import State
    from nbflow.executors.base import Executor

__all__ = ["Edge", "Flow", "TerminalStateHandler"]

TerminalStateHandler = Callable[["Flow", "State", "dict[Task, State]"], "State | None"]


@dataclasses.dataclass(frozen=True)
class Edge:
    """``upstream`` feeds ``downstream``, as argument ``key`` if it passes data."""

    upstream: Task
    downstream: Task
    key: str | None = None
    mapped: bool = False


@dataclasses.dataclass
class _Binding:
    """What a task was called with in this flow."""

    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)
    upstream: list[Task] = dataclasses.field(default_factory=list)
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
    ) -> None:
        self.name = name
        self.executor = executor
        self.terminal_state_handler = terminal_state_handler
        self._tasks: dict[Task, _Binding] = {}
        for t in tasks or ():
            self.add_task(t)
        self._reference_tasks: set[Task] = set()
        if reference_tasks is not None:
            self.set_reference_tasks(reference_tasks)

    def __repr__(self) -> str:
        return f"<Flow: name={self.name!r}, {len(self._tasks)} tasks>"

    def __enter__(self) -> Flow:
        _flow_stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _flow_stack.remove(self)

    def __len__(self) -> int:
        return len(self._tasks)

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
        if task not in self._tasks and isinstance(task, Parameter):
            _check_parameter_name(self, task)
        self._tasks.setdefault(task, _Binding())
        return task

    def set_dependencies(
        self,
        task: Task,
        upstream_tasks: Iterable[Task] | None = None,
        downstream_tasks: Iterable[Task] | None = None,
        keyword_tasks: dict[str, Any] | None = None,
        mapped: bool = False,
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
        for upstream in upstream_tasks or ():
            if isinstance(upstream, unmapped):
                upstream = upstream.value
            if upstream not in binding.upstream:
                binding.upstream.append(self.add_task(upstream))
        for downstream in downstream_tasks or ():
            self.set_dependencies(downstream, upstream_tasks=[task])

    def add_edge(
        self, upstream: Task, downstream: Task, key: str | None = None, *, mapped: bool = False
    ) -> Edge:
        """Add an edge; with ``key`` it passes upstream's result as that argument."""
        if key is None:
            self.set_dependencies(downstream, upstream_tasks=[upstream])
        else:
            value = upstream if mapped else unmapped(upstream)
            self.set_dependencies(downstream, arguments={key: value}, mapped=mapped)
        return Edge(upstream, downstream, key, mapped)

    def binding(self, task: Task) -> _Binding:
        """What ``task`` was bound to (its arguments, upstream tasks, mapping)."""
        try:
            return self._tasks[task]
        except KeyError:
            raise FlowValidationError(
                f"Task {task.name!r} is not in flow {self.name!r}; add it first."
            ) from None

    def replace(self, old: Task, new: Task) -> None:
        """Put ``new`` in ``old``'s place, keeping its position and its edges."""
        binding = self.binding(old)
        items = [(new, binding) if t is old else (t, b) for t, b in self._tasks.items()]
        self._tasks = dict(items)
        for b in self._tasks.values():
            b.arguments = {k: _swap(v, old, new) for k, v in b.arguments.items()}
            b.upstream = [new if u is old else u for u in b.upstream]
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
        self._reference_tasks.discard(task)

    # -- reading ----------------------------------------------------------------

    @property
    def edges(self) -> set[Edge]:
        """Every edge of the flow."""
        edges: set[Edge] = set()
        for down, binding in self._tasks.items():
            for key, value in binding.arguments.items():
                for up, is_unmapped in iter_tasks(value):
                    edges.add(Edge(up, down, key, binding.mapped and not is_unmapped))
            for up in binding.upstream:
                edges.add(Edge(up, down))
        return edges

    def upstream_tasks(self, task: Task) -> list[Task]:
        """The tasks ``task`` waits for, in binding order, without repeats."""
        binding = self.binding(task)
        found: dict[Task, None] = {}
        for value in binding.arguments.values():
            for up, _ in iter_tasks(value):
                found[up] = None
        for up in binding.upstream:
            found[up] = None
        return list(found)

    def downstream_tasks(self, task: Task) -> list[Task]:
        """The tasks that wait for ``task``."""
        return [t for t in self._tasks if task in self.upstream_tasks(t)]

    def root_tasks(self) -> list[Task]:
        """Tasks with no upstream task."""
        return [t for t in self._tasks if not self.upstream_tasks(t)]

    def terminal_tasks(self) -> list[Task]:
        """Tasks no other task waits for."""
        has_downstream = {up for t in self._tasks for up in self.upstream_tasks(t)}
        return [t for t in self._tasks if t not in has_downstream]

    def reference_tasks(self) -> list[Task]:
        """The tasks that decide the flow's state (default: the terminal ones)."""
        if self._reference_tasks:
            return [t for t in self._tasks if t in self._reference_tasks]
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

    def get_tasks(self, name: str | None = None) -> list[Task]:
        """The tasks named ``name`` (every task when None), in order."""
        return [t for t in self._tasks if name is None or t.name == name]

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
            listeners=listeners,
        )


def _swap(value: Any, old: Task, new: Task) -> Any:
    if value is old:
        return new
    if isinstance(value, unmapped):
        return unmapped(_swap(value.value, old, new))
    if isinstance(value, (list, tuple)):
        return type(value)(_swap(v, old, new) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _swap(v, old, new)) for k, v in value.items())
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
