"""Tasks: ``@task``, ``Task``, ``Parameter`` and ``unmapped``; standard library only.

Calling a task inside ``with Flow(...)`` does not run it: it adds a copy of the
task to the flow, with an edge from every task among its arguments. Outside a
flow, calling a task runs its function, unless an argument is a task.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, overload

from nbflow.errors import FlowContextError, FlowValidationError

if TYPE_CHECKING:
    from nbflow.core.flow import Flow

__all__ = ["Parameter", "Task", "flatten", "mapped", "task", "unmapped"]

F = TypeVar("F", bound=Callable[..., Any])
class _FlowStack(threading.local):
    """Flows entered with ``with``, per thread: flows built in two threads at
    once keep their own tasks.
    """

    def __init__(self) -> None:
        self.flows: list[Flow] = []

    def append(self, flow: Flow) -> None:
        self.flows.append(flow)

    def remove(self, flow: Flow) -> None:
        self.flows.remove(flow)

    def __getitem__(self, index: int) -> Flow:
        return self.flows[index]

    def __len__(self) -> int:
        return len(self.flows)


#: Flows entered with ``with``; the last one is where tasks are added.
_flow_stack = _FlowStack()
#: ``case`` blocks entered with ``with`` (nbflow.tasks.control_flow); the
#: last one is told of every task added to a flow meanwhile.
_case_stack: list[Any] = []


def active_flow() -> Flow | None:
    """Return the flow of the innermost ``with Flow(...)`` block, if any."""
    return _flow_stack[-1] if _flow_stack else None


def _seconds(value: datetime.timedelta | float | None, what: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if what == "timeout" and value == float("inf"):
        return 0.0  # unbounded: no timeout
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 <= value < float("inf")):
        raise FlowValidationError(
            f"{what} must be a timedelta or a finite number of seconds >= 0, "
            f"got {value!r}."
        )
    return float(value)


class unmapped:  # noqa: N801 - Prefect's spelling
    """Mark an argument of ``Task.map`` as passed whole to every child.

    Examples
    --------
    >>> with Flow("f") as flow:                     # doctest: +SKIP
    ...     add.map([1, 2, 3], unmapped(10))

    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class mapped:  # noqa: N801 - Prefect's spelling
    """Mark an argument of an ordinary task call as mapped over.

    ``add(mapped([1, 2]), 10)`` is ``add.map([1, 2], unmapped(10))``: the call
    becomes a map as soon as one argument is ``mapped(...)``.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class flatten:  # noqa: N801 - Prefect's spelling
    """Mark an argument of ``Task.map`` as a list of lists, mapped over flat.

    ``inc.map(flatten(t))`` has one child per element of every list in ``t``'s
    result (or in the results of ``t``'s children, when ``t`` is mapped).
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Task:
    """A unit of work in a flow.

    Parameters
    ----------
    fn : callable, optional
        What the task runs; subclasses may override :meth:`run` instead.
    name : str, optional
        Defaults to the function's name.
    max_retries : int
        How many times a failed run is tried again.
    retry_delay : timedelta or float, optional
        Time between tries, in seconds if a number.
    timeout : float, optional
        Seconds after which a run is stopped and the task fails.
    nout : int, optional
        How many results the task returns as a tuple, so that a call in a flow
        unpacks: ``a, b = task(...)``.
    tags : iterable of str, optional
    trigger : callable, optional
        ``trigger(upstream_states: dict[Edge, State]) -> bool`` deciding whether
        the task runs; default :func:`nbflow.triggers.all_successful`.
    skip_on_upstream_skip : bool
        End Skipped when an upstream task was skipped (default True).
    state_handlers : list of callables, optional
        Each ``handler(task, old_state, new_state)`` is called on every state
        change of the task; a State it returns replaces the new state.
    on_failure : callable, optional
        ``on_failure(task, state)`` called when the task ends Failed.
    cache_for : timedelta or float, optional
        Keep the result this long; a later run in this process with valid
        inputs (see ``cache_validator``) ends Cached without running.
    cache_validator : callable, optional
        One of :mod:`nbflow.engine.cache_validators`; default ``duration_only``.
    cache_key : str, optional
        Share a cache between tasks; default the task's name.

    Examples
    --------
    >>> def add(x, y):
    ...     return x + y
    >>> Task(add, name="add").run(1, 2)
    3

    """

    #: For a task nbflow adds to serve another (e.g. picking one name out of a
    #: cell's result): the task it serves. Views never show a helper by name;
    #: its edges are drawn from the task it serves.
    helper_of: Task | None = None

    def __init__(
        self,
        fn: Callable[..., Any] | str | None = None,
        *,
        name: str | None = None,
        max_retries: int = 0,
        retry_delay: datetime.timedelta | float | None = None,
        timeout: datetime.timedelta | float | None = None,
        nout: int | None = None,
        tags: Iterable[str] | None = None,
        trigger: Callable[..., bool] | None = None,
        skip_on_upstream_skip: bool = True,
        state_handlers: Iterable[Callable[..., Any]] | None = None,
        on_failure: Callable[..., Any] | None = None,
        cache_for: datetime.timedelta | float | None = None,
        cache_validator: Callable[..., bool] | None = None,
        cache_key: str | None = None,
    ) -> None:
        if isinstance(fn, str):  # Prefect's ``Task("name")``
            fn, name = None, name or fn
        if fn is not None and not callable(fn):
            raise TypeError(f"Task expects a callable, got {fn!r}.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(self).__name__
        if not isinstance(max_retries, int) or max_retries < 0:
            raise FlowValidationError(
                f"max_retries must be a whole number >= 0, got {max_retries!r}."
            )
        self.max_retries = max_retries
        self.retry_delay = _seconds(retry_delay, "retry_delay")
        if max_retries and retry_delay is None:
            self.retry_delay = 0.0
        self.timeout = _seconds(timeout, "timeout") or None
        self.nout = nout
        self.tags = frozenset(tags or ())
        if trigger is not None and not callable(trigger):
            raise TypeError(f"trigger must be a callable, got {trigger!r}.")
        self._trigger = trigger
        self.skip_on_upstream_skip = bool(skip_on_upstream_skip)
        if state_handlers is not None and (
            isinstance(state_handlers, (str, bytes)) or callable(state_handlers)
        ):
            raise TypeError(
                f"state_handlers must be a list of callables, got {state_handlers!r}."
            )
        self.state_handlers = list(state_handlers or ())
        if on_failure is not None:
            self.state_handlers.append(_OnFailure(on_failure))
        self.cache_for = (
            None if cache_for is None else _seconds(cache_for, "cache_for")
        )
        self._cache_validator = cache_validator
        self.cache_key = cache_key
        if fn is not None:
            self.__doc__ = fn.__doc__

    @property
    def trigger(self) -> Callable[..., bool]:
        """What decides whether the task runs; default ``all_successful``."""
        if self._trigger is None:
            from nbflow.triggers import all_successful

            return all_successful
        return self._trigger

    @trigger.setter
    def trigger(self, value: Callable[..., bool] | None) -> None:
        self._trigger = value

    @property
    def cache_validator(self) -> Callable[..., bool]:
        """Whether a Cached state is still valid; default ``duration_only``."""
        if self._cache_validator is None:
            from nbflow.engine.cache_validators import duration_only

            return duration_only
        return self._cache_validator

    @cache_validator.setter
    def cache_validator(self, value: Callable[..., bool] | None) -> None:
        self._cache_validator = value

    def __repr__(self) -> str:
        return f"<Task: {self.name}>"

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task's function now, in this thread, and return its value.

        A ``Task`` with no function (Prefect's base ``run``) returns None;
        subclasses override this method.
        """
        if self.fn is None:
            return None
        return self.fn(*args, **kwargs)

    def signature(self) -> inspect.Signature | None:
        """The signature arguments are bound against, or None if unknown."""
        target = self.fn if self.fn is not None else self.run
        try:
            return inspect.signature(target)
        except (TypeError, ValueError):
            return None

    def copy(self, **task_args: Any) -> Task:
        """Return a copy, with the given attributes changed, as a new task."""
        new = copy.copy(self)
        new.state_handlers = list(self.state_handlers)
        for key, value in task_args.items():
            if not hasattr(new, key):
                raise FlowValidationError(
                    f"Unknown task argument {key!r}; use name, max_retries, "
                    "retry_delay, timeout or tags."
                )
            setattr(new, key, value)
        return new

    def __call__(
        self,
        *args: Any,
        upstream_tasks: Iterable[Task | unmapped] | None = None,
        mapped: bool = False,
        task_args: dict[str, Any] | None = None,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Any:
        """Add a copy of this task to the active flow, bound to these arguments.

        Outside a flow, and with no task among the arguments, run the function.
        An argument wrapped in :class:`mapped` makes the call a map.
        """
        flow = flow if flow is not None else active_flow()
        if not mapped and _has_mapped(args, kwargs):
            mapped = True
            args, kwargs = _unwrap_mapped(args, kwargs)
        if flow is None:
            culprit = _first_task(args, kwargs, upstream_tasks, mapped)
            if culprit is not None:
                raise FlowContextError(
                    f"Task {self.name!r} was called outside a flow with {culprit}; "
                    f"call it inside `with Flow(...):`, or call {self.name}.run(...)"
                    " with plain values."
                )
            return self.run(*args, **kwargs)
        new = self.copy(**(task_args or {}))
        new.bind(*args, upstream_tasks=upstream_tasks, mapped=mapped, flow=flow, **kwargs)
        return new

    def bind(
        self,
        *args: Any,
        upstream_tasks: Iterable[Task | unmapped] | None = None,
        mapped: bool = False,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Task:
        """Bind this very task (not a copy) to arguments in a flow."""
        flow = flow if flow is not None else active_flow()
        if flow is None:
            raise FlowContextError(
                f"Task {self.name!r} cannot be bound outside a flow; "
                "call bind() inside `with Flow(...):` or pass flow=."
            )
        sig = self.signature()
        positional: tuple[str, ...] = ()
        if sig is None:
            arguments = {f"_{i}": a for i, a in enumerate(args)} | kwargs
            positional = tuple(f"_{i}" for i in range(len(args)))
        else:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise FlowValidationError(
                    f"Task {self.name!r} cannot take these arguments: {exc}."
                ) from None
            arguments = dict(bound.arguments)
            positional = _mark_varargs(sig, arguments)
        flow.set_dependencies(
            self, upstream_tasks=upstream_tasks, arguments=arguments, mapped=mapped,
            positional=positional,
        )
        return self

    def map(
        self,
        *args: Any,
        upstream_tasks: Iterable[Task | unmapped] | None = None,
        task_args: dict[str, Any] | None = None,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Task:
        """Add a task that runs once per element of its mapped arguments.

        Every argument is mapped over (a sequence, or a task whose result is one)
        except those wrapped in :class:`unmapped`. The task's result is the list
        of the children's results, in order.
        """
        flow = flow if flow is not None else active_flow()
        if flow is None:
            raise FlowContextError(
                f"Task {self.name!r} was mapped outside a flow; "
                "call .map() inside `with Flow(...):`."
            )
        if not any(not isinstance(a, unmapped) for a in (*args, *kwargs.values())) and not [
            u for u in upstream_tasks or () if not isinstance(u, unmapped)
        ]:
            # Nothing to map over: Prefect makes one ordinary call.
            plain: Task = self(
                *[a.value for a in args],
                upstream_tasks=[getattr(u, "value", u) for u in upstream_tasks or ()],
                task_args=task_args,
                flow=flow,
                **{k: v.value for k, v in kwargs.items()},
            )
            return plain
        result: Task = self(
            *args,
            upstream_tasks=upstream_tasks,
            mapped=True,
            task_args=task_args,
            flow=flow,
            **kwargs,
        )
        return result

    def set_dependencies(
        self,
        flow: Flow | None = None,
        upstream_tasks: Iterable[Task | unmapped] | None = None,
        downstream_tasks: Iterable[Task] | None = None,
        keyword_tasks: dict[str, Any] | None = None,
        mapped: bool = False,
    ) -> Task:
        """Add edges to and from this task in ``flow`` (default the active one).

        Returns
        -------
        Task
            This task.

        Raises
        ------
        FlowContextError
            Outside a flow, when no ``flow`` is given.

        """
        flow = flow if flow is not None else active_flow()
        if flow is None:
            raise FlowContextError(
                f"Task {self.name!r} has no flow to set dependencies in; "
                "pass flow= or call it inside `with Flow(...):`."
            )
        flow.set_dependencies(
            self, upstream_tasks=upstream_tasks, downstream_tasks=downstream_tasks,
            keyword_tasks=keyword_tasks, mapped=mapped,
        )
        return self

    def set_upstream(
        self, task: Task, flow: Flow | None = None, key: str | None = None,
        mapped: bool = False,
    ) -> Task:
        """Make ``task`` run before this one (passing its result as ``key``)."""
        if key is not None:
            return self.set_dependencies(flow, keyword_tasks={key: task}, mapped=mapped)
        return self.set_dependencies(flow, upstream_tasks=[task], mapped=mapped)

    def set_downstream(
        self, task: Task, flow: Flow | None = None, key: str | None = None,
        mapped: bool = False,
    ) -> Task:
        """Make ``task`` run after this one (passed its result as ``key``)."""
        task.set_upstream(self, flow=flow, key=key, mapped=mapped)
        return self

    def pipe(self, _task: Task, **kwargs: Any) -> Any:
        """``x.pipe(t, a=1)`` is ``t(x, a=1)``: pass this task's result on."""
        if "self" in kwargs:
            raise TypeError("Task.pipe cannot take an argument named 'self'.")
        return _task(self, **kwargs)

    def __iter__(self) -> Iterator[Task]:
        """``a, b = task(...)`` with ``nout=2``: one task per item of the result."""
        if self.nout is None:
            raise TypeError(
                f"Task {self.name!r} is not iterable; if it returns several results, "
                "pass nout= to @task or Task (e.g. @task(nout=2))."
            )
        return (self[i] for i in range(self.nout))

    def __getitem__(self, key: Any) -> Task:
        """A task whose result is ``self.result[key]``."""
        label = key.name if isinstance(key, Task) else repr(key)
        getter = Task(_getitem, name=f"{self.name}[{label}]")
        return getter.bind(self, key)


def _getitem(obj: Any, key: Any) -> Any:
    """``obj[key]``, the function of ``task[key]``."""
    return obj[key]


class _OnFailure:
    """A state handler calling ``fn(task, state)`` when a state is Failed."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, task: Task, old: Any, new: Any) -> Any:
        if new.is_failed():
            self.fn(task, new)
        return new


def _has_mapped(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return any(isinstance(a, mapped) for a in (*args, *kwargs.values()))


def _unwrap_mapped(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments of a call with ``mapped(...)`` ones: those as they are, the
    others ``unmapped``.
    """

    def one(value: Any) -> Any:
        if isinstance(value, mapped):
            return value.value
        return value if isinstance(value, unmapped) else unmapped(value)

    return tuple(one(a) for a in args), {k: one(v) for k, v in kwargs.items()}


class _VarArgs(tuple):  # type: ignore[type-arg]
    """A ``*args`` value, so it is spread back into the call."""

    __slots__ = ()


class _VarKwargs(dict):  # type: ignore[type-arg]
    """A ``**kwargs`` value, so it is spread back into the call."""

    __slots__ = ()


def _mark_varargs(sig: inspect.Signature, arguments: dict[str, Any]) -> tuple[str, ...]:
    """Mark ``*args``/``**kwargs`` values; return the names passed by position."""
    before: list[str] = []
    positional_only: list[str] = []
    has_varargs = False
    for name, param in sig.parameters.items():
        if name not in arguments:
            continue
        if param.kind is param.VAR_POSITIONAL:
            arguments[name] = _VarArgs(arguments[name])
            has_varargs = True
        elif param.kind is param.VAR_KEYWORD:
            arguments[name] = _VarKwargs(arguments[name])
        elif not has_varargs and param.kind in (
            param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD
        ):
            before.append(name)
            if param.kind is param.POSITIONAL_ONLY:
                positional_only.append(name)
    return tuple(before if has_varargs else positional_only)


def _first_task(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    upstream: Iterable[Task | unmapped] | None,
    mapped: bool,
) -> str | None:
    if upstream:
        return "upstream_tasks"
    if mapped:
        return "mapped=True"
    for i, value in enumerate(args):
        if isinstance(value, (Task, unmapped, flatten)):
            return f"task {value!r} as argument {i}"
    for key, value in kwargs.items():
        if isinstance(value, (Task, unmapped, flatten)):
            return f"task {value!r} as argument {key!r}"
    return None


class Parameter(Task):
    """A flow input, given to ``flow.run(parameters={...})``.

    Parameters
    ----------
    name : str
        The name the value is given under.
    default : Any, optional
        The value when none is given.
    required : bool, optional
        Whether a value must be given; default True when there is no default.

    Examples
    --------
    >>> with Flow("f") as flow:                     # doctest: +SKIP
    ...     n = Parameter("n", default=3)
    ...     total = add(n, 1)
    >>> flow.run(parameters={"n": 10})              # doctest: +SKIP

    """

    _NO_DEFAULT = object()

    def __init__(
        self, name: str, default: Any = _NO_DEFAULT, *, required: bool | None = None
    ) -> None:
        super().__init__(name=name)
        self.default = None if default is self._NO_DEFAULT else default
        self.required = default is self._NO_DEFAULT if required is None else required
        flow = active_flow()
        if flow is not None:
            flow.add_task(self)

    def __repr__(self) -> str:
        return f"<Parameter: {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Refuse: a Parameter is passed to tasks, not called."""
        raise TypeError(
            f"Parameter {self.name!r} cannot be called; pass it to a task instead."
        )

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Return the default (the runner substitutes the given value)."""
        return self.default


@overload
def task(fn: F, /) -> Task: ...


@overload
def task(
    *,
    name: str | None = ...,
    max_retries: int = ...,
    retry_delay: datetime.timedelta | float | None = ...,
    timeout: datetime.timedelta | float | None = ...,
    nout: int | None = ...,
    tags: Iterable[str] | None = ...,
) -> Callable[[F], Task]: ...


def task(fn: Callable[..., Any] | None = None, /, **task_kwargs: Any) -> Any:
    """Turn a function into a :class:`Task`.

    Parameters
    ----------
    fn : callable
        The function, when used as a bare ``@task``.
    **task_kwargs
        ``name``, ``max_retries``, ``retry_delay``, ``timeout``, ``nout``, ``tags``.

    Returns
    -------
    Task, or a decorator that makes one.

    Examples
    --------
    >>> @task(max_retries=2, retry_delay=0.1)
    ... def add(x, y):
    ...     return x + y
    >>> add.run(1, 2)
    3

    """
    if fn is None:
        return lambda f: Task(f, **task_kwargs)
    return Task(fn, **task_kwargs)
