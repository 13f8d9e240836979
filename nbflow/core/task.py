"""Tasks: ``@task``, ``Task``, ``Parameter`` and ``unmapped``; standard library only.

Calling a task inside ``with Flow(...)`` does not run it: it adds a copy of the
task to the flow, with an edge from every task among its arguments. Outside a
flow, calling a task runs its function, unless an argument is a task.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import itertools
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from nbflow.errors import FlowContextError, FlowValidationError

if TYPE_CHECKING:
    from nbflow.core.flow import Flow

__all__ = ["Parameter", "Task", "task", "unmapped"]

F = TypeVar("F", bound=Callable[..., Any])
_ids = itertools.count()
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
        Reserved for Prefect compatibility (tuple unpacking).

    Examples
    --------
    >>> def add(x, y):
    ...     return x + y
    >>> Task(add, name="add").run(1, 2)
    3

    """

    def __init__(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        max_retries: int = 0,
        retry_delay: datetime.timedelta | float | None = None,
        timeout: datetime.timedelta | float | None = None,
        nout: int | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
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
        self._id = next(_ids)
        if fn is not None:
            self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"<Task: {self.name}>"

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task's function now, in this thread, and return its value."""
        if self.fn is None:
            raise NotImplementedError(f"Task {self.name!r} has no function to run.")
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
        for key, value in task_args.items():
            if not hasattr(new, key):
                raise FlowValidationError(
                    f"Unknown task argument {key!r}; use name, max_retries, "
                    "retry_delay, timeout or tags."
                )
            setattr(new, key, value)
        new._id = next(_ids)
        return new

    def __call__(
        self,
        *args: Any,
        upstream_tasks: Iterable[Task] | None = None,
        mapped: bool = False,
        task_args: dict[str, Any] | None = None,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Any:
        """Add a copy of this task to the active flow, bound to these arguments.

        Outside a flow, and with no task among the arguments, run the function.
        """
        flow = flow or active_flow()
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
        upstream_tasks: Iterable[Task] | None = None,
        mapped: bool = False,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Task:
        """Bind this very task (not a copy) to arguments in a flow."""
        flow = flow or active_flow()
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
        upstream_tasks: Iterable[Task] | None = None,
        task_args: dict[str, Any] | None = None,
        flow: Flow | None = None,
        **kwargs: Any,
    ) -> Task:
        """Add a task that runs once per element of its mapped arguments.

        Every argument is mapped over (a sequence, or a task whose result is one)
        except those wrapped in :class:`unmapped`. The task's result is the list
        of the children's results, in order.
        """
        if (flow or active_flow()) is None:
            raise FlowContextError(
                f"Task {self.name!r} was mapped outside a flow; "
                "call .map() inside `with Flow(...):`."
            )
        result: Task = self(
            *args,
            upstream_tasks=upstream_tasks,
            mapped=True,
            task_args=task_args,
            flow=flow,
            **kwargs,
        )
        return result


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
    upstream: Iterable[Task] | None,
    mapped: bool,
) -> str | None:
    if upstream:
        return "upstream_tasks"
    if mapped:
        return "mapped=True"
    for i, value in enumerate(args):
        if isinstance(value, (Task, unmapped)):
            return f"task {value!r} as argument {i}"
    for key, value in kwargs.items():
        if isinstance(value, (Task, unmapped)):
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
