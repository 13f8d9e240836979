"""Run events and the bus that batches them to listeners; standard library only.

The engine emits one stream of small immutable events. Tasks report from
wherever they run as compact records; the :class:`EventBus` turns records into
events in the driver and hands them to each listener in batches, from its own
thread, about twenty times a second at most. A listener that raises is logged
and skipped; it never breaks a run.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from nbflow.engine import state as states

if TYPE_CHECKING:
    from nbflow.core.task import Task
    from nbflow.engine.state import State

__all__ = [
    "Event",
    "EventBus",
    "FlowFinished",
    "FlowStarted",
    "Listener",
    "TaskMapped",
    "TaskStateChanged",
    "subscribe",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class FlowStarted:
    """A flow run began; ``tasks`` in the order they will be submitted."""

    flow_name: str
    tasks: tuple[Task, ...]
    time: float
    dashboard_link: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskMapped:
    """A mapped task was split into ``size`` children."""

    task: Task
    size: int
    time: float


class TaskStateChanged(NamedTuple):
    """``task`` (child ``map_index`` of a mapped task, else None) changed state.

    A ``NamedTuple`` rather than a frozen dataclass, unlike the other events:
    one is made per state change of every task, and a tuple is made five
    times faster (a 10,000-child map makes 20,000 of them). For the same
    reason ``old`` and ``new`` tell the kind of state, its message and
    traceback, not its result or timestamp (``time`` is when it changed), and
    may be shared between events: treat them as read-only.
    """

    task: Task
    map_index: int | None
    old: State | None
    new: State
    time: float
    message: str | None = None
    #: Where it runs (a thread, ``pid N``, a Dask worker's address); Running only.
    where: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FlowFinished:
    """A flow run ended in ``state``."""

    flow_name: str
    state: State
    time: float


Event = Union[FlowStarted, TaskMapped, TaskStateChanged, FlowFinished]
Listener = Callable[[Sequence[Event]], None]

_global_listeners: list[Listener] = []
_KINDS: dict[str, type[State]] = {
    cls.__name__: cls
    for cls in vars(states).values()
    if isinstance(cls, type) and issubclass(cls, states.State)
}
#: One state per kind, shared by the events whose state has no message.
_PLAIN: dict[str, State] = {name: cls() for name, cls in _KINDS.items()}


def subscribe(listener: Listener) -> Callable[[], None]:
    """Send the events of every flow run in this process to ``listener``.

    Returns
    -------
    callable
        Call it to unsubscribe.

    """
    _global_listeners.append(listener)
    return lambda: _global_listeners.remove(listener)


def global_listeners() -> list[Listener]:
    """The listeners given to :func:`subscribe`."""
    return list(_global_listeners)


class EventBus:
    """Turn task records into events and deliver them in batches.

    Parameters
    ----------
    listeners : sequence of callables
        Each is called with a list of events.
    tasks : sequence of Task
        Task ``i`` is the one a record with task index ``i`` is about.
    interval : float
        Seconds between deliveries at most.

    """

    def __init__(
        self, listeners: Sequence[Listener], tasks: Sequence[Task], interval: float = 0.05
    ) -> None:
        self._listeners = list(listeners)
        self._tasks = tasks
        self._interval = interval
        self._queue: collections.deque[Any] = collections.deque()
        self._last: dict[tuple[int, int | None], State] = {}
        self._broken: set[int] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nbflow-events", daemon=True)
        #: Thread-safe, and cheap enough to call per task.
        self.put = self._queue.append

    def start(self) -> None:
        """Start delivering."""
        self._thread.start()

    def close(self) -> None:
        """Deliver what is queued, then stop; later records are dropped."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self._drain()

    def settle(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) until the records queued so far
        are converted, so :meth:`last_state` is up to date.
        """
        end = time.monotonic() + timeout
        self._wake.set()  # drain now, not at the end of the interval
        while self._queue and self._thread.is_alive() and time.monotonic() < end:
            time.sleep(0.001)

    def last_state(self, index: int, map_index: int | None) -> State | None:
        """The last state seen for a task (or a child of a mapped task)."""
        return self._last.get((index, map_index))

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._drain()

    def _drain(self) -> None:
        # The hot loop: two records per task, 200,000 for a 100,000-child map,
        # converted on this thread while the run's threads want the GIL too.
        # So the conversion is inlined, events are made with tuple.__new__ (a
        # NamedTuple's own __new__ is a Python function), and a state with no
        # message or traceback (most of them) is a shared instance per kind.
        batch: list[Event] = []
        append = batch.append
        queue, popleft = self._queue, self._queue.popleft
        last, tasks, kinds, plain = self._last, self._tasks, _KINDS, _PLAIN
        retrying, make = states.Retrying, tuple.__new__
        # Tasks can report faster than records are converted (a big map on the
        # driver's thread), so the queue may never empty: hand over a batch
        # each interval anyway, or listeners would see nothing until the end.
        deadline = time.monotonic() + self._interval
        count = 0
        while queue:
            item = popleft()
            if type(item) is tuple:
                index, map_index, name, when, message, traceback, where = item
                key = (index, map_index)
                old = last.get(key)
                cls = kinds[name]
                if type(old) is cls and cls is not retrying:
                    continue
                if message is None and traceback is None:
                    new = plain[name]
                else:
                    new = cls(message, None, traceback=traceback, timestamp=when)
                last[key] = new
                append(make(TaskStateChanged, (tasks[index], map_index, old, new,
                                               when, message, where)))
            else:
                append(item)
            count += 1
            if count >= 1000:
                count = 0
                if time.monotonic() >= deadline:
                    self._deliver(batch)
                    batch = []
                    append = batch.append
                    deadline = time.monotonic() + self._interval
        if batch:
            self._deliver(batch)

    def _deliver(self, batch: list[Event]) -> None:
        for i, listener in enumerate(self._listeners):
            try:
                listener(batch)
            except Exception:
                if i not in self._broken:
                    self._broken.add(i)
                    log.exception("nbflow event listener %r raised; the run goes on", listener)
