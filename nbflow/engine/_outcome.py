"""A run's outcome: each task's state from what its future gave, the flow's
state from its tasks' states (and its terminal state handler).
"""

from __future__ import annotations

import datetime
import logging
import threading
from concurrent.futures import CancelledError
from typing import Any

from nbflow.core.flow import Flow
from nbflow.core.task import Task
from nbflow.engine import cache
from nbflow.engine._tracebacks import restore_sources
from nbflow.engine.state import (
    Cancelled,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    Success,
    TriggerFailed,
)
from nbflow.errors import ClusterConnectionError, NbflowError

__all__ = ["flow_state", "keep_state", "next_round", "start_state", "task_state"]

log = logging.getLogger("nbflow.engine.runner")


def task_state(task: Task, value: Any, map_index: int | None, cancelled: bool) -> State:
    """The state of ``task`` (child ``map_index``) from what its future gave."""
    if isinstance(value, State):
        if value.traceback is not None and task.fn is not None:
            value.traceback = restore_sources(value.traceback, task.fn)
        return value
    if value is None or (cancelled and isinstance(value, CancelledError)):
        return Cancelled("The run was cancelled before this task finished.")
    if isinstance(value, BaseException):
        where = "" if map_index is None else f"[{map_index}]"
        # nbflow's own errors (a dead worker, a lost scheduler) are sentences.
        cause = (str(value) if isinstance(value, NbflowError)
                 else f"{type(value).__name__}: {value}")
        return Failed(f"Task {task.name + where!r} failed: {cause}", value)
    return Failed(f"Task {task.name!r} returned no state: {value!r}.")


def keep_state(given: State) -> bool:
    """Whether a state given in ``flow.run(task_states=...)`` stands for the
    task (a finished one but Cached, which its validator checks), so it is not run.
    """
    return given.is_finished() and not given.is_cached()


def next_round(states: dict[Task, State], cancelled: threading.Event) -> bool:
    """Whether a run goes on with another round: some task (or child) is
    Retrying at a later ``start_time``; wait for it here, in the driver (as
    Prefect's ``flow.run`` does). False at once when there is none, or when
    the run is cancelled meanwhile.
    """
    # A Retrying child leaves its parent unfinished: finished parents' children
    # need no look (a map of 100,000 is not scanned again).
    wake = min(
        (s.start_time for state in states.values() if not state.is_finished()
         for s in (state.map_states or [state])
         if isinstance(s, Retrying) and s.start_time is not None),
        default=None,
    )
    if wake is None:
        return False
    delay = (wake - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    return not cancelled.wait(max(delay, 0.0))


def _change(flow: Flow, old: State, new: State) -> State:
    """Pass a flow state change through ``flow.state_handlers``."""
    try:
        for handler in getattr(flow, "state_handlers", ()):
            new = handler(flow, old, new) or new
    except Exception as exc:
        log.exception("a state handler of flow %r raised", flow.name)
        return Failed(
            f"A state handler of flow {flow.name!r} raised {type(exc).__name__}: {exc}",
            exc,
        )
    return new


def start_state(flow: Flow) -> State:
    """The flow's Running state (Pending -> Running through its handlers)."""
    return _change(flow, Pending(), Running()) if flow.state_handlers else Running()


def flow_state(
    flow: Flow, states: dict[Task, State], cancelled: bool,
    running: State | None = None,
) -> State:
    """The flow's state: Cancelled, Success when every reference task
    succeeded, else Failed; then what its terminal state handler and its
    state handlers return.
    """
    cache.remember(states)
    state = _final_state(flow, states, cancelled)
    if flow.state_handlers:
        state = _change(flow, running or Running(), state)
    return state


def _final_state(flow: Flow, states: dict[Task, State], cancelled: bool) -> State:
    reference = {t: states[t] for t in flow.reference_tasks()}
    if cancelled:
        done = sum(s.is_successful() for s in states.values())
        state: State = Cancelled(
            f"Flow run was cancelled; {done} of {len(states)} tasks had succeeded.",
            states,
        )
    elif all(s.is_successful() for s in reference.values()):
        state = Success("All reference tasks succeeded.", states)
    else:
        failed = [t.name for t, s in states.items() if s.is_failed()
                  and not isinstance(s, TriggerFailed)]
        waiting = [t.name for t, s in states.items() if not s.is_finished()]
        if not failed and waiting:  # e.g. a manual_only task ended Paused
            names = ", ".join(map(repr, waiting[:5]))
            state = Failed(f"Some reference tasks did not finish (not finished: "
                           f"{names}); resume a Paused task with "
                           "flow.run(task_states={task: Resume()}).", states)
        else:
            names = ", ".join(map(repr, failed[:5])) or "upstream"
            lost = next((s.result for s in states.values() if s.is_failed()
                         and isinstance(s.result, ClusterConnectionError)), None)
            why = "." if lost is None else f": {lost}"
            state = Failed(f"Some reference tasks failed (failed: {names}){why}", states)
    handler = flow.terminal_state_handler
    if handler is not None:
        try:
            new = handler(flow, state, set(reference.values()))
        except Exception as exc:
            log.exception("terminal_state_handler of flow %r raised", flow.name)
            return Failed(f"terminal_state_handler raised {type(exc).__name__}: {exc}",
                          states)
        if new is not None and not isinstance(new, State):
            name = getattr(handler, "__qualname__", repr(handler))
            return Failed(
                f"terminal_state_handler {name!r} of flow {flow.name!r} returned "
                f"{new!r}; it must return a State or None.", states)
        if new is not None:
            state = new
    return state
