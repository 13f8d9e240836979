"""``RunState``: what a run view shows, kept from the engine's events; stdlib only.

A :class:`RunState` is an events listener (see :mod:`nbflow.engine.events`):
``flow.run(listeners=[run_state])``. Batches arrive from the event bus thread
while views read from theirs, so every mutation and every :meth:`RunState.snapshot`
holds one lock. A snapshot is made of frozen dataclasses a view can render at
leisure.

Memory stays bounded for huge maps: a mapped task keeps counts of its children
by state (the event carries the child's old state, so no per-child record is
needed), the first failure, the start and end of at most :data:`CHILD_SPANS`
children for the run timeline, and for all the others the intervals during which
they kept each place (thread, process, worker) busy, merged.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from nbflow.engine import state as states
from nbflow.engine.events import (
    Event,
    FlowFinished,
    FlowStarted,
    TaskMapped,
    TaskStateChanged,
)

if TYPE_CHECKING:
    from nbflow.core.flow import Edge
    from nbflow.core.task import Task

__all__ = [
    "CHILD_SPANS",
    "STATE_COLORS",
    "RunSnapshot",
    "RunState",
    "TaskSnapshot",
    "shown_edges",
    "shown_tasks",
    "state_class",
    "task_labels",
]

#: Children per mapped task whose start and end are kept for the timeline.
CHILD_SPANS = 200

#: State name -> its colour (``State.color``).
STATE_COLORS = _COLORS = {
    cls.__name__: cls.color
    for cls in vars(states).values()
    if isinstance(cls, type) and issubclass(cls, states.State)
}
_FINISHED = frozenset(
    name
    for name, cls in vars(states).items()
    if isinstance(cls, type) and issubclass(cls, states.Finished)
)
_FAILED = frozenset(
    name
    for name, cls in vars(states).items()
    if isinstance(cls, type) and issubclass(cls, states.Failed)
)
_SUCCEEDED = frozenset(
    name
    for name, cls in vars(states).items()
    if isinstance(cls, type) and issubclass(cls, states.Success)
)


def state_class(name: str) -> str:
    """The CSS class of a state name: ``"TriggerFailed"`` -> ``"nbflow-state-trigger-failed"``.

    Examples
    --------
    >>> state_class("Success")
    'nbflow-state-success'

    """
    kebab = "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")
    return f"nbflow-state-{kebab}"


@dataclasses.dataclass(frozen=True)
class TaskSnapshot:
    """One task as a view shows it; ``children`` etc. are set for a mapped task."""

    name: str
    state: str
    color: str
    start: float | None
    end: float | None
    message: str | None
    traceback: str | None
    size: int | None = None
    children: dict[str, int] = dataclasses.field(default_factory=dict)
    #: ``(map_index, start, end, state, where)`` of the first children.
    spans: tuple[tuple[int, float, float, str, str | None], ...] = ()
    #: Where it last started running (a thread, ``pid N``, a worker's address).
    where: str | None = None
    #: The map index of the first child that failed (its message and traceback
    #: are the task's), for a mapped task.
    failed_index: int | None = None
    #: Times it (or, for a mapped task, any of its children) was retried.
    retries: int = 0
    #: ``(where, start, end, children)``: when the children after the first
    #: :data:`CHILD_SPANS` kept each place busy, merged into intervals.
    busy: tuple[tuple[str, float, float, int], ...] = ()
    #: Where its value lives once the run ended: ``"here"`` (the driver),
    #: ``"on cluster, 16.8 MB"``, ``"not kept"``; None: no value.
    lives: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from the first start to the end (or to now while running)."""
        if self.start is None:
            return None
        return (self.end if self.end is not None else time.time()) - self.start

    @property
    def done(self) -> int:
        """Children finished, whatever the outcome."""
        return sum(n for s, n in self.children.items() if s in _FINISHED)

    @property
    def failed(self) -> int:
        """Children failed (their own error or an upstream one)."""
        return sum(n for s, n in self.children.items() if s in _FAILED)

    @property
    def cancelled(self) -> int:
        """Children cancelled before they finished."""
        return self.children.get("Cancelled", 0)

    @property
    def succeeded(self) -> int:
        """Children that succeeded."""
        return sum(n for s, n in self.children.items() if s in _SUCCEEDED)

    @property
    def units(self) -> tuple[int, int, int, int]:
        """``(succeeded, failed, cancelled, total)`` units of work: one for a
        task, one per child for a mapped task (one until its size is known).
        TriggerFailed (it did not run: an upstream failed) is none of them.
        """
        if self.size is not None:
            finished = self.done
            cancelled = self.cancelled
            if self.state == "Cancelled":  # its children that never ran
                cancelled += self.size - finished
            failed = self.failed - self.children.get("TriggerFailed", 0)
            return self.succeeded, failed, cancelled, self.size
        state = self.state
        failed_itself = state in _FAILED and state != "TriggerFailed"
        return (int(state in _SUCCEEDED), int(failed_itself),
                int(state == "Cancelled"), 1)

    @property
    def progress(self) -> float:
        """From 0 to 1: the share of its units of work that succeeded."""
        succeeded, _, _, total = self.units
        return succeeded / total if total else float(self.state in _SUCCEEDED)


@dataclasses.dataclass(frozen=True)
class RunSnapshot:
    """A consistent picture of a run at one moment."""

    flow_name: str | None
    tasks: tuple[TaskSnapshot, ...]
    started: float | None
    finished: float | None
    state: str | None
    message: str | None
    dashboard_link: str | None
    version: int

    @property
    def is_finished(self) -> bool:
        """Whether the flow run ended."""
        return self.finished is not None

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    @property
    def units(self) -> tuple[int, int, int, int]:
        """``(succeeded, failed, cancelled, total)`` units of work of the run:
        a task is one, a mapped task one per child. Failed and cancelled work
        is not done.
        """
        done = failed = cancelled = total = 0
        for t in self.tasks:
            d, f, c, n = t.units
            done, failed, cancelled, total = done + d, failed + f, cancelled + c, total + n
        return done, failed, cancelled, total

    @property
    def counts(self) -> dict[str, int]:
        """Units of work by state name now: a task's own state, or for a mapped
        task its children's (e.g. ``{"Success": 8, "Skipped": 2}``).
        """
        found: dict[str, int] = {}
        for t in self.tasks:
            kinds = t.children if t.size is not None else {t.state: 1}
            for name, n in kinds.items():
                if n:
                    found[name] = found.get(name, 0) + n
        return found

    @property
    def progress(self) -> float:
        """From 0 to 1: the share of the units of work that succeeded."""
        done, _, _, total = self.units
        if not total:
            return 1.0 if self.state in _SUCCEEDED else 0.0
        return done / total

    @property
    def rate(self) -> float | None:
        """Units of work finished per second since the start (tqdm's ``it/s``)."""
        done, failed, cancelled, _ = self.units
        elapsed = self.elapsed
        if self.started is None or elapsed <= 0 or not done + failed + cancelled:
            return None
        return (done + failed) / elapsed

    @property
    def remaining(self) -> float | None:
        """Seconds left at the current rate while running, else None."""
        rate = self.rate
        if rate is None or self.is_finished:
            return None
        done, failed, cancelled, total = self.units
        return (total - done - failed - cancelled) / rate if rate > 0 else None


class _Task:
    """The mutable record behind a TaskSnapshot."""

    __slots__ = (
        "name",
        "state",
        "start",
        "end",
        "message",
        "traceback",
        "size",
        "children",
        "spans",
        "child_starts",
        "where",
        "failed_index",
        "retries",
        "busy",
        "lives",
        "why",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "Pending"
        self.start: float | None = None
        self.end: float | None = None
        self.message: str | None = None
        self.traceback: str | None = None
        self.size: int | None = None
        self.children: dict[str, int] = {}
        self.spans: list[tuple[int, float, float, str, str | None]] = []
        self.child_starts: dict[int, tuple[float, str | None]] = {}
        self.where: str | None = None
        self.failed_index: int | None = None
        self.retries = 0
        self.busy: dict[str, list[list[float]]] = {}
        self.lives: str | None = None
        #: Why it runs (the message of the Pending state it started from),
        #: shown while it has no message of its own.
        self.why: str | None = None

    def snapshot(self) -> TaskSnapshot:
        return TaskSnapshot(
            self.name,
            self.state,
            _COLORS.get(self.state, "#999999"),
            self.start,
            self.end,
            self.message if self.message is not None else self.why,
            self.traceback,
            self.size,
            {k: n for k, n in self.children.items() if n},
            tuple(self.spans),
            self.where,
            self.failed_index,
            self.retries,
            tuple((where, s, e, int(n)) for where, spans in self.busy.items()
                  for s, e, n in spans),
            self.lives,
        )


def where_values_live(flow_state: states.State) -> dict[Task, str]:
    """Where each task's value lives at the end of a run (see
    :attr:`TaskSnapshot.lives`); empty if every value is here. The sizes of
    values kept elsewhere are asked once for the whole run.
    """
    result = flow_state._result
    if not isinstance(result, dict):
        return {}
    spots: list[tuple[Task, list[states.State]]] = []
    for task, state in result.items():
        if isinstance(state, states.Success):
            spots.append((task, list(state.map_states or [state])))
    flat = [s for _, group in spots for s in group]
    if not any(s.is_result_deferred() for s in flat):
        return {}
    sizes = iter(states.deferred_sizes(flat))
    out: dict[Task, str] = {}
    for task, group in spots:
        on = total = known = 0
        dropped = 0
        for s in group:
            size = next(sizes)
            if s.is_result_deferred():
                if not s._result.kept:
                    dropped += 1
                    continue
                on += 1
                if size is not None:
                    total, known = total + size, known + 1
        if on:
            out[task] = "on cluster" + (f", {format_bytes(total)}" if known else "")
        elif dropped:
            out[task] = "not kept"
        else:
            out[task] = "here"
    return out


def format_bytes(n: int) -> str:
    """``16.8 MB``, ``512 kB``, ``2.1 GB`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class RunState:
    """The state of one flow run, fed by the engine's events; thread-safe.

    Call it with batches of events (it is a listener), read it with
    :meth:`snapshot`. A new ``FlowStarted`` starts over.

    Parameters
    ----------
    flow_name : str, optional
    tasks : sequence of Task
        Shown as Pending until a run starts (a run brings its own).

    Examples
    --------
    >>> from nbflow import Flow, task
    >>> @task
    ... def one():
    ...     return 1
    >>> with Flow("f") as flow:
    ...     x = one()
    >>> run_state = RunState()
    >>> flow.run(listeners=[run_state]).is_successful()
    True
    >>> [(t.name, t.state) for t in run_state.snapshot().tasks]
    [('one', 'Success')]

    """

    def __init__(
        self, flow_name: str | None = None, tasks: Sequence[Task] = ()
    ) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._reset(flow_name, tasks)
        self._version = 0

    def _reset(self, flow_name: str | None, tasks: Sequence[Task]) -> None:
        self._flow_name = flow_name
        self._tasks: dict[Task, _Task] = {}
        tasks = shown_tasks(tasks)
        for name, t in zip(task_labels(tasks), tasks):
            self._tasks[t] = _Task(name)
        self._started: float | None = None
        self._finished: float | None = None
        self._state: str | None = None
        self._message: str | None = None
        self._dashboard: str | None = None

    @property
    def version(self) -> int:
        """Grows with every batch of events; a view redraws when it changed."""
        return self._version

    def __call__(self, events: Sequence[Event]) -> None:
        """Apply a batch of events (the listener interface)."""
        lives = {}
        for event in events:
            if isinstance(event, FlowFinished):  # asked once, outside the lock
                lives = where_values_live(event.state)
        with self._lock:
            for event in events:
                if type(event) is TaskStateChanged:
                    self._on_change(event)
                elif isinstance(event, FlowStarted):
                    self._reset(event.flow_name, event.tasks)
                    self._started = event.time
                    self._dashboard = event.dashboard_link
                elif isinstance(event, TaskMapped):
                    self._on_mapped(event)
                elif isinstance(event, FlowFinished):
                    self._finished = event.time
                    self._state = event.state.name
                    self._message = event.state.message
                    for task, text in lives.items():
                        if task in self._tasks:
                            self._tasks[task].lives = text
            self._version += 1
            self._changed.notify_all()

    def wait(self, version: int, timeout: float | None = None) -> int:
        """Block until the version differs from ``version`` (or ``timeout``); return it."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout)
            return self._version

    def _record(self, task: Task) -> _Task:
        record = self._tasks.get(task)
        if record is None and task.helper_of is not None:
            return _Task(task.name)  # a helper's events change nothing shown
        if record is None:  # events of a run that began before we listened
            record = self._tasks[task] = _Task(task.name)
        return record

    def _on_mapped(self, event: TaskMapped) -> None:
        record = self._record(event.task)
        record.size = event.size
        record.children = {"Pending": event.size} if event.size else {}
        if record.state == "Pending" and event.size:
            record.state = "Running"

    def _on_change(self, event: TaskStateChanged) -> None:
        # The hot path: runs once per event, 20,000 times for a 10,000-child map.
        record = self._tasks.get(event.task) or self._record(event.task)
        new = event.new
        name = type(new).__name__
        index = event.map_index
        if index is None:
            self._on_task(record, new, name, event.time, event.where, event.task)
            return
        children = record.children
        old = type(event.old).__name__ if event.old is not None else "Pending"
        if children.get(old):
            children[old] -= 1
        children[name] = children.get(name, 0) + 1
        if record.start is None:
            record.start = event.time
            if record.state == "Pending":
                record.state = "Running"
        if name == "Retrying":
            record.retries += 1
        if name == "Running":
            # every running child (as many as run at once): for the spans of
            # the first ones, and the busy time of all the others
            record.child_starts[index] = (event.time, event.where)
        elif name in _FINISHED:
            when = event.time
            if record.end is None or when > record.end:
                record.end = when
            if name in _FAILED and record.traceback is None:
                record.message = new.message
                record.traceback = _readable(new.traceback, event.task)
                record.failed_index = index
            begun = record.child_starts.pop(index, None)
            if begun is not None:
                if index < CHILD_SPANS:
                    record.spans.append((index, begun[0], when, name, begun[1]))
                else:
                    _add_busy(record.busy, begun[1] or "", begun[0], when)

    def _on_task(
        self,
        record: _Task,
        new: states.State,
        name: str,
        when: float,
        where: str | None,
        task: Task | None = None,
    ) -> None:
        """A task (not a child of a mapped one) changed state."""
        record.state = name
        if name == "Pending" and new.message:
            record.why = new.message
        failed = name in _FAILED
        if not (failed and record.failed_index is not None):
            record.message = new.message  # a failed map keeps its first child's
        # A mapped parent's Failed has no traceback: keep its first child's.
        traceback = _readable(new.traceback, task) if new.traceback else None
        record.traceback = (traceback or record.traceback) if failed else None
        if name == "Retrying":
            record.retries += 1
        if name == "Running":
            record.where = where
            if record.start is None:
                record.start = when
        elif name in _FINISHED:
            # A mapped task ended when its last child did, not when reported.
            if record.size is None or record.end is None:
                record.end = when
            if record.start is None:
                record.start = when

    def task(self, task: Task) -> TaskSnapshot | None:
        """One task's snapshot now (cheaper than :meth:`snapshot`), or None."""
        with self._lock:
            record = self._tasks.get(task)
            return None if record is None else record.snapshot()

    def snapshot(self) -> RunSnapshot:
        """A consistent, immutable copy of the run's state now."""
        with self._lock:
            return RunSnapshot(
                self._flow_name,
                tuple(r.snapshot() for r in self._tasks.values()),
                self._started,
                self._finished,
                self._state,
                self._message,
                self._dashboard,
                self._version,
            )


#: Idle gaps shorter than this (seconds) between children on one place are not
#: kept; and at most :data:`_BUSY_MAX` intervals per place (then gaps merge).
_BUSY_GAP = 0.01
_BUSY_MAX = 2000


def _add_busy(busy: dict[str, list[list[float]]], where: str, start: float,
              end: float) -> None:
    """Merge one child's run into its place's busy intervals (bounded memory)."""
    spans = busy.setdefault(where, [])
    for span in reversed(spans[-8:]):  # children end out of order, a little
        if start <= span[1] + _BUSY_GAP and end >= span[0] - _BUSY_GAP:
            span[0], span[1] = min(span[0], start), max(span[1], end)
            span[2] += 1
            return
    if len(spans) >= _BUSY_MAX:
        last = spans[-1]
        last[0], last[1], last[2] = min(last[0], start), max(last[1], end), last[2] + 1
        return
    spans.append([start, end, 1])


def _readable(traceback: str | None, task: Task | None) -> str:
    """A traceback from another process with the source lines of the user's
    functions put back (the failure path only).
    """
    if not traceback or task is None or task.fn is None or "<dynamic-code>" not in traceback:
        return traceback or ""
    from nbflow.engine._tracebacks import restore_sources

    return restore_sources(traceback, task.fn)


def shown_tasks(tasks: Iterable[Task]) -> list[Task]:
    """The tasks a person sees: all but the helpers nbflow added (``helper_of``)."""
    return [t for t in tasks if t.helper_of is None]


def shown_edges(edges: Iterable[Edge]) -> list[tuple[Task, Task]]:
    """``(upstream, downstream)`` between shown tasks: an edge through a helper
    is drawn from the task it serves.
    """
    pairs: dict[tuple[Task, Task], None] = {}
    for edge in edges:
        if edge.downstream.helper_of is not None:
            continue
        upstream = edge.upstream
        while upstream.helper_of is not None:
            upstream = upstream.helper_of
        pairs[(upstream, edge.downstream)] = None
    return list(pairs)


def task_labels(tasks: Sequence[Task]) -> list[str]:
    """Task names, with ``-2``, ``-3`` ... after repeats: how the views key tasks.

    Examples
    --------
    >>> from nbflow import Task
    >>> task_labels([Task(name="a"), Task(name="b"), Task(name="a")])
    ['a', 'b', 'a-2']

    """
    seen: dict[str, int] = {}
    names = []
    for t in tasks:
        n = seen[t.name] = seen.get(t.name, 0) + 1
        names.append(t.name if n == 1 else f"{t.name}-{n}")
    return names
