"""Text progress of a flow run and its final summary; standard library only.

Part of the cli layer: it must not import widgets, IPython, dask or distributed.
:class:`TextProgress` is the text view of a run, as ``RunView`` is its widget
view: both are events listeners (see :mod:`nbflow.engine.events`) over one model,
:class:`~nbflow.engine.run_state.RunState`, and name tasks the same way
(:func:`~nbflow.engine.run_state.task_labels`). It prints one line per state
change of an unmapped task, and for a mapped task a count of its children done,
so a 10,000-child map prints a handful of lines, not 10,000. On a terminal the
counts are redrawn in place on one status line; elsewhere (CI, a pipe, a
notebook's output) they are plain lines, at most one every ``interval`` seconds
per task. ``nbflow run`` and ``%flow run`` outside a widget front end use it.
"""

from __future__ import annotations

import os
import reprlib
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from nbflow.engine.events import (
    Event,
    FlowFinished,
    FlowStarted,
    TaskMapped,
    TaskStateChanged,
)
from nbflow.engine.run_state import RunState, shown_tasks, task_labels
from nbflow.engine.state import Failed, Paused, Pending, State, TriggerFailed

if TYPE_CHECKING:
    from nbflow.core.task import Task
    from nbflow.engine.run_state import TaskSnapshot

__all__ = ["TextProgress", "print_summary", "use_color"]

#: ANSI colours of the state kinds (the widgets use ``State.color`` instead).
_ANSI = {
    "Pending": "90",
    "Scheduled": "33",
    "Submitted": "33",
    "Queued": "33",
    "Paused": "34",
    "Resume": "33",
    "Running": "36",
    "Retrying": "33",
    "Looped": "34",
    "Success": "32",
    "Cached": "32;2",
    "Mapped": "32",
    "Skipped": "37;2",
    "Failed": "31",
    "TimedOut": "31;1",
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


def _paint(kind: str, text: str | None = None, *, color: bool) -> str:
    text = kind if text is None else text
    code = _ANSI.get(kind)
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def _flow_line(name: str, state: State, seconds: float | None, color: bool) -> str:
    """``Flow 'name': Success in 0.12 s  (message)``: how a run ends."""
    message = f"  ({state.message})" if state.message else ""
    took = "" if seconds is None else f" in {seconds:.2f} s"
    return f"Flow {name!r}: {_paint(state.name, color=color)}{took}{message}"


class _Shown:
    """What the view has shown of one mapped task's children."""

    __slots__ = ("printed", "shown_failure", "dirty", "complete")

    def __init__(self) -> None:
        self.printed, self.shown_failure = 0.0, False
        self.dirty, self.complete = False, False


class TextProgress:
    """Print a flow run as it goes; give it to ``flow.run(listeners=[...])``.

    Parameters
    ----------
    stream : file, optional
        Where to write; default ``sys.stdout`` at the time of each write.
    live : bool, optional
        Redraw map counts in place; default whether ``stream`` is a terminal.
    color : bool, optional
        Colour the state names; default :func:`use_color`.
    interval : float
        Seconds between two plain count lines of the same mapped task.
    summary : bool
        End with the flow's final state line (``nbflow run`` prints a fuller
        summary itself, with :func:`print_summary`).

    Examples
    --------
    >>> import sys
    >>> state = flow.run(listeners=[TextProgress(sys.stdout)])  # doctest: +SKIP

    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        color: bool | None = None,
        interval: float = 2.0,
        summary: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._given = stream
        self._live = _is_tty(self._stream) if live is None else live
        self._color = use_color(self._stream) if color is None else color
        self._interval = interval
        self._summary = summary
        self._clock = clock
        self._lock = threading.Lock()
        self._model = RunState()
        self._width = 12
        self._start = time.time()
        self._flow_name = ""
        self._maps: dict[Task, _Shown] = {}
        self._status = False

    @property
    def _stream(self) -> TextIO:
        return self._given if self._given is not None else sys.stdout

    def __call__(self, events: Sequence[Event]) -> None:
        """Take a batch of events (called from the event bus's thread)."""
        with self._lock:
            # Records from pools and workers can overtake the driver's own
            # events by a little; put each batch back in time order.
            ordered = sorted(events, key=_time)
            self._model(ordered)
            for event in ordered:
                if isinstance(event, TaskStateChanged):
                    self._on_state(event)
                elif isinstance(event, TaskMapped):
                    self._maps[event.task] = _Shown()
                    self._line(
                        event.time, event.task, f"mapped over {event.size} items"
                    )
                elif isinstance(event, FlowStarted):
                    self._on_started(event)
                elif isinstance(event, FlowFinished):
                    self._counts(final=True)
                    if self._summary:
                        seconds = event.time - self._start
                        self._write(
                            _flow_line(
                                self._flow_name, event.state, seconds, self._color
                            )
                        )
            self._counts(final=False)
            self._stream.flush()

    def _on_started(self, event: FlowStarted) -> None:
        labels = task_labels(shown_tasks(event.tasks))
        self._width = min(max((len(n) for n in labels), default=4), 24)
        self._start = event.time
        self._flow_name = event.flow_name
        self._maps.clear()
        if event.dashboard_link:
            self._write(f"Dask dashboard: {event.dashboard_link}")

    def _on_state(self, event: TaskStateChanged) -> None:
        if event.task.helper_of is not None:
            return  # a task nbflow added: never shown by name
        if event.map_index is None:
            if event.task in self._maps and event.new.is_mapped():
                return  # its count line "N/N done" said it
            shows = (event.new.is_failed() or event.new.is_retrying()
                     or event.new.is_skipped() or isinstance(event.new, Paused)
                     or type(event.new) is Pending)  # why it runs (the cache's)
            message = event.message if shows else None
            self._line(event.time, event.task, self._paint(event.new.name), message)
            return
        shown = self._maps.get(event.task)
        if shown is None:  # a child reported before the TaskMapped event arrived
            return
        shown.dirty = True
        if event.new.is_failed() and not shown.shown_failure:
            shown.shown_failure = True
            self._line(
                event.time,
                event.task,
                self._paint(event.new.name),
                event.message,
                suffix=f"[{event.map_index}]",
            )

    def _counts(self, *, final: bool) -> None:
        """Show the map counts that changed: plain lines, or the status line."""
        now = self._clock()
        active = []
        for task, shown in self._maps.items():
            if not shown.dirty or shown.complete:
                continue
            snap = self._model.task(task)
            if snap is None or snap.size is None:
                continue
            complete = snap.done >= snap.size
            if complete or final or (
                not self._live and now - shown.printed >= self._interval
            ):
                shown.dirty, shown.printed, shown.complete = False, now, complete
                self._line(time.time(), task, self._count_text(snap))
            else:
                active.append(f"{snap.name} {snap.done}/{snap.size}")
        if self._live and not final and active:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write("\r\x1b[K" + ("  " + " · ".join(active))[:width])
            self._status = True

    def _count_text(self, snap: TaskSnapshot) -> str:
        # Cancelled children never ran: not done (a cancelled map's children
        # that never started count too).
        cancelled = snap.units[2]
        text = f"{snap.done - snap.cancelled}/{snap.size} done"
        if snap.failed:
            text += f", {self._paint('Failed', f'{snap.failed} failed')}"
        for state, what in (("Skipped", "skipped"), ("TimedOut", "timed out")):
            if snap.children.get(state):
                text += f", {self._paint(state, f'{snap.children[state]} {what}')}"
        if cancelled:
            text += f", {self._paint('Cancelled', f'{cancelled} cancelled')}"
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
        snap = self._model.task(task)
        name = (snap.name if snap is not None else task.name) + suffix
        line = f"{when - self._start:7.2f}s  {name:<{self._width}}  {text}"
        self._write(f"{line}  {message}" if message else line)

    def _write(self, line: str) -> None:
        if self._status:
            self._stream.write("\r\x1b[K")
            self._status = False
        self._stream.write(line + "\n")

    def _paint(self, kind: str, text: str | None = None) -> str:
        return _paint(kind, text, color=self._color)


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
    states = state.result if isinstance(state.result, dict) else {}
    shown = shown_tasks(tasks)
    names = dict(zip(shown, task_labels(shown)))
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
        kind = _paint(s.name, color=color) + " " * (kind_width - len(s.name))
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
    stream.write(_flow_line(flow_name, state, seconds, color) + "\n")
    stream.flush()


def _detail(state: State) -> str:
    if state.is_mapped():
        return f"{len(state.map_states or ())} children"
    if state.is_result_deferred():
        return "-> (result left on the cluster)"
    if state.is_successful():
        return "-> " + _repr.repr(state.result)
    return state.message or ""
