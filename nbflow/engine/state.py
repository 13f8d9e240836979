"""Task and flow states, as in Prefect 1; standard library only.

``State`` and its kinds form a small hierarchy so that ``isinstance`` and the
``is_*`` predicates answer the questions the engine and the views ask::

    State
    ├── Pending ── Retrying
    ├── Running
    └── Finished
        ├── Success ── Mapped
        ├── Failed ── TriggerFailed
        └── Cancelled
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = [
    "Cancelled",
    "DeferredResult",
    "Failed",
    "Finished",
    "Mapped",
    "Pending",
    "Retrying",
    "Running",
    "State",
    "Success",
    "TriggerFailed",
    "deferred_sizes",
    "fetch_results",
]


class DeferredResult:
    """A task's result kept where it was computed (a Dask cluster) until read.

    A state whose result is one of these fetches it the first time
    ``state.result`` is read and keeps the value from then on. Executors that
    keep values away from the driver subclass it.
    """

    __slots__ = ()

    def fetch(self) -> Any:
        """Bring the value here; raise (one line: why, and how to keep it) if
        it cannot be.
        """
        raise NotImplementedError

    @classmethod
    def fetch_all(cls, items: list[DeferredResult]) -> list[tuple[bool, Any]]:
        """``(True, value)`` for each of ``items`` (of this class), fetched
        together where that is cheaper, or ``(False, exception)`` saying why it
        could not be.
        """
        out: list[tuple[bool, Any]] = []
        for item in items:
            try:
                out.append((True, item.fetch()))
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                out.append((False, exc))
        return out

    @classmethod
    def sizes(cls, items: list[DeferredResult]) -> list[int | None]:
        """The size in bytes of each value where it is kept, None if unknown."""
        return [None] * len(items)


def deferred_sizes(states: list[State]) -> list[int | None]:
    """The size in bytes, where it is kept, of each state's deferred result
    (None: not deferred, or not known), asked once per kind of deferred result.
    """
    out: list[int | None] = [None] * len(states)
    groups: dict[type[DeferredResult], list[int]] = {}
    for i, state in enumerate(states):
        if isinstance(state._result, DeferredResult):
            groups.setdefault(type(state._result), []).append(i)
    for cls, positions in groups.items():
        for i, size in zip(positions, cls.sizes([states[i]._result for i in positions])):
            out[i] = size
    return out


def fetch_results(states: Iterable[State]) -> None:
    """Fetch the deferred results of ``states`` together (one round trip per
    kind of deferred result, not one per state).

    Raises
    ------
    Exception
        The first reason a result could not be fetched, after the others are in.

    """
    groups: dict[type[DeferredResult], list[State]] = {}
    for state in states:
        value = state._result
        if isinstance(value, DeferredResult):
            groups.setdefault(type(value), []).append(state)
    error: Exception | None = None
    for cls, group in groups.items():
        for state, (ok, value) in zip(group, cls.fetch_all([s._result for s in group])):
            if ok:
                state._result = value
            else:
                error = error or value
    if error is not None:
        raise error


class State:
    """The state of a task or a flow run.

    Parameters
    ----------
    message : str, optional
        A human-readable explanation.
    result : Any, optional
        The value of a successful task, the exception of a failed one, or for a
        flow, a dict mapping each task to its state.

    Examples
    --------
    >>> Success(result=3).is_successful()
    True

    """

    __slots__ = ("message", "_result", "traceback", "map_states", "timestamp")
    color = "#999999"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        *,
        traceback: str | None = None,
        map_states: list[State] | None = None,
        timestamp: float | None = None,
    ) -> None:
        self.message = message
        self._result = result
        self.traceback = traceback
        self.map_states = map_states
        self.timestamp = timestamp

    @property
    def result(self) -> Any:
        """The result; one kept on a cluster is fetched on first read."""
        value = self._result
        if isinstance(value, DeferredResult):
            value = self._result = value.fetch()
        return value

    @result.setter
    def result(self, value: Any) -> None:
        self._result = value

    def is_result_deferred(self) -> bool:
        """Whether the result is still where it was computed (reading
        ``result`` fetches it).
        """
        return isinstance(self._result, DeferredResult)

    def __sizeof__(self) -> int:
        # Dask sizes a value with sys.getsizeof unless told otherwise: count the
        # result, so a cluster's memory accounting sees a task's real size.
        sizeof = getattr(sys.modules.get("dask.sizeof"), "sizeof", sys.getsizeof)
        return object.__sizeof__(self) + int(sizeof(self._result))

    @property
    def name(self) -> str:
        """The kind of state, e.g. ``"Success"``."""
        return type(self).__name__

    def __repr__(self) -> str:
        if self.message:
            return f"<{self.name}: {self.message!r}>"
        return f"<{self.name}>"

    def __getstate__(self) -> tuple[Any, ...]:
        # A deferred result is fetched: a pickled state carries its value.
        return tuple(self.result if s == "_result" else getattr(self, s)
                     for s in State.__slots__)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        for slot, value in zip(State.__slots__, values):
            setattr(self, slot, value)

    def is_pending(self) -> bool:
        """Whether the run has not started (or waits for a retry)."""
        return isinstance(self, Pending)

    def is_running(self) -> bool:
        """Whether the run is in progress."""
        return isinstance(self, Running)

    def is_finished(self) -> bool:
        """Whether the run has ended, whatever the outcome."""
        return isinstance(self, Finished)

    def is_successful(self) -> bool:
        """Whether the run ended in success."""
        return isinstance(self, Success)

    def is_failed(self) -> bool:
        """Whether the run failed (its own error or an upstream one)."""
        return isinstance(self, Failed)

    def is_retrying(self) -> bool:
        """Whether the run failed and will be tried again."""
        return isinstance(self, Retrying)

    def is_cancelled(self) -> bool:
        """Whether the run was cancelled before it finished."""
        return isinstance(self, Cancelled)

    def is_mapped(self) -> bool:
        """Whether the task ran as a map of children (see ``map_states``)."""
        return isinstance(self, Mapped)


class Pending(State):
    """Waiting to run."""

    __slots__ = ()
    color = "#d3d3d3"


class Retrying(Pending):
    """Failed, and waiting to run again."""

    __slots__ = ()
    color = "#ffa500"


class Running(State):
    """Running now."""

    __slots__ = ()
    color = "#00bfff"


class Finished(State):
    """Ended; see the subclasses for how."""

    __slots__ = ()
    color = "#555555"


class Success(Finished):
    """Ended with a result."""

    __slots__ = ()
    color = "#28a745"


class Mapped(Success):
    """Ran as one child per element; ``map_states`` holds the children."""

    __slots__ = ()
    color = "#20c997"


class Failed(Finished):
    """Ended with an error; ``result`` is the exception."""

    __slots__ = ()
    color = "#dc3545"


class TriggerFailed(Failed):
    """Did not run because an upstream task did not succeed."""

    __slots__ = ()
    color = "#c0392b"


class Cancelled(Finished):
    """Stopped, or never started, because the run was cancelled."""

    __slots__ = ()
    color = "#6c757d"
