"""Triggers: whether a task runs, given its upstream tasks' states (Prefect 1).

A trigger is ``trigger(upstream_states: dict[Edge, State]) -> bool``; it raises
:class:`~nbflow.engine.signals.TRIGGERFAIL` (or returns False) when the task
must not run, and may raise ``SKIP`` to skip it. A mapped upstream task counts
as each of its children. Skipped counts as a success, TriggerFailed as a failure.

Examples
--------
>>> from nbflow import Flow, task
>>> from nbflow.triggers import all_failed
>>> @task(trigger=all_failed)                    # doctest: +SKIP
... def clean_up():
...     ...

"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nbflow.engine import signals
from nbflow.engine.state import Mapped, State

if TYPE_CHECKING:
    from nbflow.core.flow import Edge

__all__ = [
    "all_failed",
    "all_finished",
    "all_successful",
    "always_run",
    "any_failed",
    "any_successful",
    "manual_only",
    "not_all_skipped",
    "some_failed",
    "some_successful",
]

UpstreamStates = dict["Edge", State]


def _flat(upstream_states: UpstreamStates) -> set[State]:
    """Every upstream state, a mapped task's children in its place."""
    found: set[State] = set()
    for s in upstream_states.values():
        if isinstance(s, Mapped) and s.map_states is not None:
            found.update(s.map_states)
        else:
            found.add(s)
    return found


def all_finished(upstream_states: UpstreamStates) -> bool:
    """Run whatever the upstream states, once they are finished."""
    if not all(s.is_finished() for s in _flat(upstream_states)):
        raise signals.TRIGGERFAIL(
            'Trigger was "all_finished" but some of the upstream tasks were not finished.'
        )
    return True


always_run = all_finished


def manual_only(upstream_states: UpstreamStates) -> bool:
    """Never run on its own: the task ends Paused."""
    raise signals.PAUSE('Trigger function is "manual_only"')


def all_successful(upstream_states: UpstreamStates) -> bool:
    """Run if every upstream task succeeded (the default)."""
    if not all(s.is_successful() for s in _flat(upstream_states)):
        raise signals.TRIGGERFAIL(
            'Trigger was "all_successful" but some of the upstream tasks failed.'
        )
    return True


def all_failed(upstream_states: UpstreamStates) -> bool:
    """Run if every upstream task failed."""
    if not all(s.is_failed() for s in _flat(upstream_states)):
        raise signals.TRIGGERFAIL(
            'Trigger was "all_failed" but some of the upstream tasks succeeded.'
        )
    return True


def any_successful(upstream_states: UpstreamStates) -> bool:
    """Run if an upstream task succeeded (or there is none)."""
    if upstream_states and not any(s.is_successful() for s in _flat(upstream_states)):
        raise signals.TRIGGERFAIL(
            'Trigger was "any_successful" but none of the upstream tasks succeeded.'
        )
    return True


def any_failed(upstream_states: UpstreamStates) -> bool:
    """Run if an upstream task failed (or there is none)."""
    if upstream_states and not any(s.is_failed() for s in _flat(upstream_states)):
        raise signals.TRIGGERFAIL(
            'Trigger was "any_failed" but none of the upstream tasks failed.'
        )
    return True


def _some(
    what: str, at_least: float | None, at_most: float | None
) -> Callable[[UpstreamStates], bool]:
    def trigger(upstream_states: UpstreamStates) -> bool:
        if not upstream_states:
            return True
        states = _flat(upstream_states)
        count = sum(
            (s.is_successful() if what == "successful" else s.is_failed()) for s in states
        )
        low = 0.0 if at_least is None else (
            len(states) * at_least if at_least < 1 else at_least)
        high = float(len(states)) if at_most is None else (
            len(states) * at_most if at_most < 1 else at_most)
        if not low <= count <= high:
            raise signals.TRIGGERFAIL(
                f'Trigger was "some_{what}" but thresholds were not met.'
            )
        return True

    trigger.__name__ = trigger.__qualname__ = f"some_{what}"
    return trigger


def some_successful(
    at_least: float | None = None, at_most: float | None = None
) -> Callable[[UpstreamStates], bool]:
    """A trigger: run if between ``at_least`` and ``at_most`` upstream tasks
    succeeded (a number below 1 is a fraction of them).

    Returns
    -------
    callable
        The trigger.

    """
    return _some("successful", at_least, at_most)


def some_failed(
    at_least: float | None = None, at_most: float | None = None
) -> Callable[[UpstreamStates], bool]:
    """A trigger: run if between ``at_least`` and ``at_most`` upstream tasks
    failed (a number below 1 is a fraction of them).

    Returns
    -------
    callable
        The trigger.

    """
    return _some("failed", at_least, at_most)


def not_all_skipped(upstream_states: UpstreamStates) -> bool:
    """Run if every upstream task succeeded and not all were skipped; skip if
    all were.
    """
    states = _flat(upstream_states)
    if all(s.is_skipped() for s in states):
        raise signals.SKIP("All upstreams were skipped", result=None)
    if not all(s.is_successful() for s in states):
        raise signals.TRIGGERFAIL(
            'Trigger was "not_all_skipped" but some of the upstream tasks failed.'
        )
    return True
