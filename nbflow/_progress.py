"""Terminal progress and the final summary of ``nbflow run``; standard library only.

Part of the cli layer: it must not import widgets, IPython, dask or distributed.
:class:`Progress` is an events listener (see :mod:`nbflow.engine.events`): one
line per state change of an unmapped task, and for a mapped task a count of its
children done, so a 10,000-child map prints a handful of lines, not 10,000. On a
terminal the counts are redrawn in place on one status line; elsewhere (CI, a
pipe) they are plain lines, at most one every ``interval`` seconds per task.
"""

from __future__ import annotations

import os
import reprlib
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TextIO

from nbflow.engine.events import (
    Event,
    FlowFinished,
    FlowStarted,
    TaskMapped,
    TaskStateChanged,
)
from nbflow.engine.state import Failed, State, TriggerFailed

if TYPE_CHECKING:
    from nbflow.core.task import Task

__all__ = ["Progress", "display_names", "print_summary", "use_color"]

#: ANSI colours of the state kinds (the widgets use ``State.color`` instead).
_ANSI = {
    "Running": "36",
    "Retrying": "33",
    "Success": "32",
    "Mapped": "32",
    "Failed": "31",
    "TriggerFailed": "31",
    "Cancelled": "90",
}
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 50
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def use_color(stream: TextIO) -> bool:
    """Whether to colour ``stream``: a terminal, and ``NO_COLOR`` is not set."""
    return _is_tty(stream) and not os.environ.get("NO_COLOR")


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def display_names(tasks: Iterable[Task]) -> dict[Task, str]:
    """Name each task (not helpers); a name used more than once gets `` (2)``..."""
    names: dict[Task, str] = {}
    seen: dict[str, int] = {}
    tasks = [t for t in tasks if t.helper_of is None]
    total = {t.name: 0 for t in tasks}
    for t in tasks:
        total[t.name] += 1
    for t in tasks:
        seen[t.name] = seen.get(t.name, 0) + 1
        names[t] = t.name if total[t.name] == 1 else f"{t.name} ({seen[t.name]})"
    return names


class _MapCount:
    """How far the children of one mapped task are."""

    __slots__ = ("size", "done", "failed", "printed", "shown_failure", "dirty")

    def __init__(self, size: int) -> None:
        self.size, self.done, self.failed, self.printed = size, 0, 0, 0.0
        self.shown_failure, self.dirty = False, False


class Progress:
    """Print a flow run as it goes; give it to ``flow.run(listeners=[...])``.

    Parameters
    ----------
    stream : file
        Where to write, e.g. ``sys.stdout``.
    live : bool, optional
        Redraw map counts in place; default whether ``stream`` is a terminal.
    color : bool, optional
        Colour the state names; default :func:`use_color`.
    interval : float
        Seconds between two plain count lines of the same mapped task.

    Examples
    --------
    >>> import sys
    >>> state = flow.run(listeners=[Progress(sys.stdout)])  # doctest: +SKIP

    """

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        color: bool | None = None,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._live = _is_tty(stream) if live is None else live
        self._color = use_color(stream) if color is None else color
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._names: dict[Task, str] = {}
        self._width = 12
        self._start = time.time()
        self._maps: dict[Task, _MapCount] = {}
        self._status = False

    def __call__(self, events: Sequence[Event]) -> None:
        """Take a batch of events (called from the event bus's thread)."""
        with self._lock:
            # Records from pools and workers can overtake the driver's own
            # events by a little; put each batch back in time order.
            for event in sorted(events, key=_time):
                if isinstance(event, TaskStateChanged):
                    self._on_state(event)
                elif isinstance(event, TaskMapped):
                    self._maps[event.task] = _MapCount(event.size)
                    self._line(
                        event.time, event.task, f"mapped over {event.size} items"
                    )
                elif isinstance(event, FlowStarted):
                    self._on_started(event)
                elif isinstance(event, FlowFinished):
                    self._counts(final=True)
            self._counts(final=False)
            self._stream.flush()

    def _on_started(self, event: FlowStarted) -> None:
        self._names = display_names(event.tasks)
        self._width = min(max((len(n) for n in self._names.values()), default=4), 24)
        self._start = event.time
        self._maps.clear()
        if event.dashboard_link:
            self._write(f"Dask dashboard: {event.dashboard_link}")

    def _on_state(self, event: TaskStateChanged) -> None:
        if event.task.helper_of is not None:
            return  # a task nbflow added: never shown by name
        if event.map_index is None:
            if event.task in self._maps and event.new.is_mapped():
                return  # its count line "N/N done" said it
            shows = event.new.is_failed() or event.new.is_retrying()
            message = event.message if shows else None
            self._line(event.time, event.task, self._paint(event.new.name), message)
            return
        count = self._maps.get(event.task)
        if count is None:  # a child reported before the TaskMapped event arrived
            return
        was_finished = event.old is not None and event.old.is_finished()
        if event.new.is_finished() and not was_finished:
            count.done += 1
            count.dirty = True
            if event.new.is_failed():
                count.failed += 1
                if not count.shown_failure:
                    count.shown_failure = True
                    where = f"[{event.map_index}]"
                    self._line(
                        event.time,
                        event.task,
                        self._paint(event.new.name),
                        event.message,
                        suffix=where,
                    )
            if count.done >= count.size:
                count.dirty = False
                self._line(event.time, event.task, self._count_text(count))

    def _counts(self, *, final: bool) -> None:
        """Show the map counts that changed: plain lines, or the status line."""
        now = self._clock()
        active = []
        for task, count in self._maps.items():
            complete = count.done >= count.size
            if count.dirty and (
                complete
                or final
                or (not self._live and now - count.printed >= self._interval)
            ):
                count.dirty, count.printed = False, now
                self._line(time.time(), task, self._count_text(count))
            elif not complete:
                active.append(
                    f"{self._names.get(task, task.name)} {count.done}/{count.size}"
                )
        if self._live and not final and active:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write("\r\x1b[K" + ("  " + " · ".join(active))[:width])
            self._status = True

    def _count_text(self, count: _MapCount) -> str:
        text = f"{count.done}/{count.size} done"
        if count.failed:
            text += f", {self._paint('Failed', f'{count.failed} failed')}"
        return text

    def _line(
        self,
        when: float,
        task: Task,
        text: str,
        message: str | None = None,
        *,
        suffix: str = "",
    ) -> None:
        name = self._names.get(task, task.name) + suffix
        line = f"{when - self._start:7.2f}s  {name:<{self._width}}  {text}"
        self._write(f"{line}  {message}" if message else line)

    def _write(self, line: str) -> None:
        if self._status:
            self._stream.write("\r\x1b[K")
            self._status = False
        self._stream.write(line + "\n")

    def _paint(self, kind: str, text: str | None = None) -> str:
        text = kind if text is None else text
        code = _ANSI.get(kind)
        return f"\x1b[{code}m{text}\x1b[0m" if self._color and code else text


def _time(event: Event) -> float:
    return event.time


def _traceback(state: State) -> tuple[str, str] | None:
    """The traceback of a failed state (or its first failed child), with where."""
    if state.traceback:
        return "", state.traceback
    for i, child in enumerate(state.map_states or ()):
        if child.traceback and child.is_failed():
            return f"[{i}]", child.traceback
    return None


def print_summary(
    flow_name: str,
    tasks: Sequence[Task],
    state: State,
    stream: TextIO,
    *,
    color: bool = False,
    seconds: float | None = None,
    describe: Callable[[Task, State], str | None] | None = None,
    clean: Callable[[str], str] | None = None,
) -> None:
    """Print each task's final state, the failures' tracebacks, then the flow's.

    Parameters
    ----------
    flow_name : str
    tasks : sequence of Task
        In the order to print them.
    state : State
        The flow's final state; ``state.result`` maps tasks to their states.
    stream : file
    color : bool
        Colour the state names.
    seconds : float, optional
        How long the run took, shown with the flow's state.
    describe : callable, optional
        ``describe(task, state)``: the text after a task's state, or None for
        the default (its result, its message or its children's count).
    clean : callable, optional
        ``clean(traceback)``: the traceback text to print, e.g. without frames
        of nbflow's own.

    """
    paint = Progress(stream, live=False, color=color)._paint
    states = state.result if isinstance(state.result, dict) else {}
    names = display_names(tasks)
    width = min(max((len(n) for n in names.values()), default=4), 24)
    kind_width = max((len(s.name) for s in states.values()), default=7)
    tracebacks: list[tuple[str, str]] = []
    for t in tasks:
        s = states.get(t)
        if s is None or t not in names:  # not run, or a helper
            continue
        detail = describe(t, s) if describe is not None else None
        if detail is None:
            detail = _detail(s)
        kind = paint(s.name) + " " * (kind_width - len(s.name))
        stream.write(f"  {names[t]:<{width}}  {kind}  {detail}".rstrip() + "\n")
        if isinstance(s, Failed) and not isinstance(s, TriggerFailed):
            found = _traceback(s)
            if found is not None:
                tracebacks.append((names[t] + found[0], found[1]))
    for name, text in tracebacks:
        text = clean(text) if clean is not None else text
        stream.write(f"\nTraceback of task {name!r}:\n{text.rstrip()}\n")
    if tracebacks:
        stream.write("\n")
    message = f"  ({state.message})" if state.message else ""
    took = "" if seconds is None else f" in {seconds:.2f} s"
    stream.write(f"Flow {flow_name!r}: {paint(state.name)}{took}{message}\n")
    stream.flush()


def _detail(state: State) -> str:
    if state.is_mapped():
        return f"{len(state.map_states or ())} children"
    if state.is_successful():
        return "-> " + _repr.repr(state.result)
    return state.message or ""
