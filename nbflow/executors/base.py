"""The ``Executor`` interface, the one contract the engine knows.

An executor is a plain, picklable configuration object until ``start()``; inside
``with executor.start():`` it accepts work through ``submit`` and resolves it
through ``wait``. It knows nothing of flows, widgets or magics.

The contract is Prefect 1's: ``start()``, ``submit(fn, *args,
extra_context=None, **kwargs)`` and ``wait(futures)``; a subclass that
implements only these runs flows. Everything else the engine and the outer
layers use is an optional member declared here, with a default built on the
three, so no caller asks which executor it holds: submitting a map's children
(:meth:`Executor.submit_map`), waiting without raising
(:meth:`Executor.wait_outcomes`), cancelling, collecting what finished, whether
it crosses processes, ``dashboard_link``, ``performance_report``,
``on_starting`` (a line on what a slow :meth:`Executor.start` is doing), and the
*channel* (:meth:`Executor.open_channel`): a small picklable object that a task
uses, wherever it runs, to report its state changes to the driver and to ask
whether the run was cancelled. :func:`resolve_executor` is the one place the
default executor is chosen; :func:`report_code` gives a run's report its
"Calling Code".
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from nbflow.errors import ExecutorNotStartedError

__all__ = [
    "Executor",
    "InProcessChannel",
    "Record",
    "TaskChannel",
    "calling_code",
    "map_nested",
    "report_code",
    "resolve_executor",
    "work_name",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
#: ``(task_index, map_index, state_name, time, message, traceback, where)``;
#: ``where`` (see :meth:`TaskChannel.where`) is set on Running records only.
Record = tuple[int, "int | None", str, float, "str | None", "str | None", "str | None"]
Deliver = Callable[[Record], None]


class TaskChannel(abc.ABC):
    """What a running task uses to talk to the driver; picklable where needed."""

    #: Called with each record, or None when nobody listens (cheaper: no report).
    report: Deliver | None
    #: Whether results leave the task's process (to the driver or another
    #: worker); ``run_task`` then fails a task whose result cannot be pickled.
    crosses_processes: bool = False

    @abc.abstractmethod
    def is_cancelled(self) -> bool:
        """Whether the run was cancelled; a task about to start then stops."""

    def where(self) -> str:
        """Where the calling task runs, for the run timeline: here, its thread."""
        return threading.current_thread().name

    def refusal(self, task: str) -> str | None:
        """Why the task named ``task`` cannot run where it is about to (a
        worker that joined a cluster after the run's check and lacks a package
        it uses), in one line; None: it can.
        """
        return None


class InProcessChannel(TaskChannel):
    """A channel for tasks that run in the driver's own process."""

    __slots__ = ("report", "_cancelled")

    def __init__(self, deliver: Deliver | None) -> None:
        self.report = deliver
        self._cancelled = threading.Event()

    def is_cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Make tasks that have not started yet end as Cancelled."""
        self._cancelled.set()


def map_nested(fn: Callable[[Any], Any], value: Any) -> Any:
    """Apply ``fn`` to every leaf of nested lists, tuples and dicts."""
    if isinstance(value, list):
        return [map_nested(fn, v) for v in value]
    if isinstance(value, tuple):
        return tuple(map_nested(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: map_nested(fn, v) for k, v in value.items()}
    return fn(value)


#: What a run's report shows under "Calling Code" (set by :func:`report_code`).
_CALLING_CODE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nbflow_calling_code", default=None
)


@contextlib.contextmanager
def report_code(code: str | None) -> Iterator[None]:
    """Show ``code`` as the "Calling Code" of the runs started in this block.

    An executor that writes a report of its run (``DaskExecutor``'s performance
    report) reads it with :func:`calling_code` when it starts; by default the
    report shows the code that called ``flow.run``. The notebook layer passes a
    flow's ``%%flowtask`` cells.

    Examples
    --------
    >>> with report_code("print('hi')"):
    ...     calling_code()
    "print('hi')"

    """
    token = _CALLING_CODE.set(code)
    try:
        yield
    finally:
        _CALLING_CODE.reset(token)


def calling_code() -> str | None:
    """The code :func:`report_code` set for this context, or None."""
    return _CALLING_CODE.get()


def resolve_executor(*choices: Executor | None) -> Executor:
    """The first of ``choices`` that is not None, else a new ``LocalExecutor``.

    The one place nbflow's default executor is decided: ``flow.run()``,
    ``nbflow run`` and the notebook flow all resolve theirs here, e.g.
    ``resolve_executor(executor, flow.executor)``.

    Examples
    --------
    >>> resolve_executor(None, None)
    LocalExecutor()

    """
    for choice in choices:
        if choice is not None:
            return choice
    from nbflow.executors.local import LocalExecutor

    return LocalExecutor()


def work_name(fn: Callable[..., Any], extra_context: Mapping[str, Any] | None) -> str:
    """How an executor names one submission: ``task_name`` (``-task_index`` for a
    map's child) from ``extra_context``, else the function's name.

    Examples
    --------
    >>> work_name(print, {"task_name": "square", "task_index": 3})
    'square-3'
    >>> work_name(print, None)
    'print'

    """
    context = extra_context or {}
    name = context.get("task_name") or getattr(fn, "__name__", "task")
    index = context.get("task_index")
    return str(name) if index is None else f"{name}-{index}"


class Executor:
    """Run task callables for one flow run; subclasses choose where.

    A subclass implements :meth:`start`, :meth:`submit` and :meth:`wait`
    (Prefect 1's contract); the other members have working defaults.

    Examples
    --------
    >>> from nbflow.executors import LocalExecutor
    >>> ex = LocalExecutor()
    >>> with ex.start():
    ...     f = ex.submit(lambda x: x + 1, 1)
    ...     ex.wait(ex.submit(lambda y: y * 10, f))
    20

    """

    # Class-level defaults: a subclass need not call ``Executor.__init__``.
    _channel: InProcessChannel | None = None
    _started = False
    #: Called with one line on what :meth:`start` is doing while it takes a
    #: while (``"Starting a temporary Dask cluster: 1 of 2 workers up …"``), at
    #: most a few times a second and only until it is ready; set by whoever
    #: shows the run (the run view, ``nbflow run``). Not pickled. An executor
    #: reports through :meth:`report_starting`.
    on_starting: Callable[[str], None] | None = None

    def __init__(self) -> None:
        self._channel = None
        self._started = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_channel"] = None
        state["_started"] = False
        state.pop("on_starting", None)
        return state

    def report_starting(self, text: str) -> None:
        """Tell :attr:`on_starting`, if set, that starting is at ``text``; a
        callback that raises is logged, never breaks the start.
        """
        callback = self.on_starting
        if callback is None:
            return
        try:
            callback(text)
        except Exception:  # a display's bug must not stop the executor
            log.exception("nbflow: on_starting callback %r failed", callback)

    @contextlib.contextmanager
    def start(self) -> Iterator[None]:
        """Acquire what a run needs; release it on every way out."""
        self._started = True
        try:
            yield
        finally:
            self._started = False
            self._channel = None

    def _check_started(self) -> None:
        if not self._started:
            raise ExecutorNotStartedError(self)

    def submit(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        extra_context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Schedule ``fn(*args, **kwargs)``; futures among the arguments are
        resolved first.

        ``extra_context`` holds executor-neutral facts about the work,
        ``task_name`` and, for a child of a mapped task, ``task_index`` (Prefect
        1's keys); an executor that names work (Dask keys) makes its names from
        them. It never reaches ``fn``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement submit().")

    def submit_map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        extra_context: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """Submit ``fn(*args)`` for each ``args`` in ``calls`` (the children of
        a mapped task); return their futures in order.

        The same as one :meth:`submit` each, with ``task_index`` added to
        ``extra_context``, which is what this does; an executor that can batch
        them (``Client.map``) does that instead.
        """
        context = dict(extra_context or {})
        return [
            self.submit(fn, *args, extra_context={**context, "task_index": i})
            for i, args in enumerate(calls)
        ]

    def wait(self, futures: Any) -> Any:
        """Block until every future in ``futures`` (a future, or lists, tuples
        and dicts of them) is done; return their values.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement wait().")

    def wait_outcomes(self, futures: Sequence[Any]) -> list[Any]:
        """The value of each of ``futures``, or the exception it raised instead.

        By default one :meth:`wait` each; the executors nbflow ships do it in
        one call.
        """
        outcomes: list[Any] = []
        for future in futures:
            try:
                outcomes.append(self.wait(future))
            except Exception as exc:  # noqa: BLE001 - returned in its place
                outcomes.append(exc)
        return outcomes

    @property
    def crosses_processes(self) -> bool:
        """Whether tasks, their inputs and results may travel to other processes
        (then they must pickle); False: everything stays in this process.
        """
        return False

    @property
    def dashboard_link(self) -> str | None:
        """Where to watch the running work in a browser, or None."""
        return None

    @property
    def performance_report(self) -> str:
        """The HTML of a report of the last run, or "" when there is none."""
        return ""

    def prepare(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        """Called once a run, inside ``start()`` and before the first submit,
        with each task's name and the callable it runs.

        An executor whose tasks run elsewhere makes them runnable there (sends
        the user's own modules), or raises why it cannot (a package the workers
        lack) before anything runs. By default: nothing.

        Parameters
        ----------
        functions : Mapping
            Task name -> the callable its ``submit`` will run (a notebook
            cell's callable carries its ``source`` and ``namespace``).

        Raises
        ------
        NbflowError
            If the tasks cannot run where this executor runs them.
        """
        return

    def collect(
        self,
        futures: list[Any],
        *,
        fetch: Collection[int] = (),
        budget: int | None = None,
        keep_others: bool = True,
    ) -> list[Any]:
        """Wait for every one of ``futures`` (the run's task futures, a flat
        list); return what each gave, as :meth:`wait_outcomes` does.

        An executor that keeps values where they were computed (a cluster)
        gives, for a task that succeeded, ``Success(result=DeferredResult)``
        (see :mod:`nbflow.engine.state`): the value stays there until read.
        Only the futures at the positions in ``fetch`` are brought home, at
        most ``budget`` bytes of them if given (the largest stay). With
        ``keep_others=False`` the other values need not stay readable: the
        executor may drop each once no task needs it. This default has every
        value at hand already.
        """
        return self.wait_outcomes(futures)

    def open_channel(self, deliver: Deliver | None) -> TaskChannel:
        """Return the channel that tasks of this run report through."""
        self._channel = InProcessChannel(deliver)
        return self._channel

    def cancel(self, futures: Any) -> None:
        """Stop what has not finished, as far as this executor can; never blocks."""
        if self._channel is not None:
            self._channel.cancel()

    def collect_finished(
        self, futures: list[Any], *, fetch: Collection[int] = ()
    ) -> list[Any]:
        """The values of the futures that have finished, None for the others
        (values kept on a cluster stay there but those at the positions in
        ``fetch``, as in :meth:`collect`).
        """
        return [None] * len(futures)
