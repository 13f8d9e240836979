"""The ``Executor`` interface, the one contract the engine knows.

An executor is a plain, picklable configuration object until ``start()``; inside
``with executor.start():`` it accepts work through ``submit`` and resolves it
through ``wait``. It knows nothing of flows, widgets or magics.

Besides the three calls of the contract, an executor hands the engine a
*channel* (:meth:`Executor.open_channel`): a small picklable object that a task
uses, wherever it runs, to report its state changes to the driver and to ask
whether the run was cancelled. Each executor gives the channel that fits it.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

from nbflow.errors import ExecutorNotStartedError

__all__ = ["Executor", "InProcessChannel", "Record", "TaskChannel", "map_nested"]

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


class Executor(abc.ABC):
    """Run task callables for one flow run; subclasses choose where.

    Examples
    --------
    >>> from nbflow.executors import LocalExecutor
    >>> ex = LocalExecutor()
    >>> with ex.start():
    ...     f = ex.submit(lambda x: x + 1, 1)
    ...     ex.wait(ex.submit(lambda y: y * 10, f))
    20

    """

    def __init__(self) -> None:
        self._channel: InProcessChannel | None = None
        self._started = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_channel"] = None
        state["_started"] = False
        return state

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

    @abc.abstractmethod
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Any:
        """Schedule ``fn``; futures among the arguments are resolved first.

        ``dask_key_name=`` (dask's spelling) names the work where the executor
        shows names, as in the Dask dashboard; other executors ignore it.
        """

    def submit_map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        dask_key_name: str | None = None,
    ) -> list[Any]:
        """Submit ``fn(*args)`` for each ``args`` in ``calls`` (the children of
        a mapped task); return their futures in order.

        The same as one :meth:`submit` each, which is what this does; an
        executor that can batch them (``Client.map``) does that instead.
        """
        return [self.submit(fn, *args, dask_key_name=dask_key_name) for args in calls]

    @abc.abstractmethod
    def wait(self, futures: Any, *, return_exceptions: bool = False) -> Any:
        """Block until every future in ``futures`` is done; return their values.

        With ``return_exceptions=True`` a future that raised gives its exception
        in place of a value, instead of raising it.
        """

    def collect(
        self,
        futures: list[Any],
        *,
        fetch: Collection[int] = (),
        budget: int | None = None,
        keep_others: bool = True,
    ) -> list[Any]:
        """Wait for every one of ``futures`` (the run's task futures, a flat
        list); return what each gave, as ``wait(futures, return_exceptions=True)``.

        An executor that keeps values where they were computed (a cluster)
        gives, for a task that succeeded, ``Success(result=DeferredResult)``
        (see :mod:`nbflow.engine.state`): the value stays there until read.
        Only the futures at the positions in ``fetch`` are brought home, at
        most ``budget`` bytes of them if given (the largest stay). With
        ``keep_others=False`` the other values need not stay readable: the
        executor may drop each once no task needs it. This default has every
        value at hand already.
        """
        values: list[Any] = self.wait(futures, return_exceptions=True)
        return values

    def open_channel(self, deliver: Deliver | None) -> TaskChannel:
        """Return the channel that tasks of this run report through."""
        self._check_started()
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
