"""Task and flow states, as in Prefect 1; standard library only.

``State`` and its kinds form a small hierarchy so that ``isinstance`` and the
``is_*`` predicates answer the questions the engine and the views ask::

    State
    ├── Pending ── Retrying
    ├── Running
    └── Finished
        ├── Success ── Mapped
        │          └── Cached
        ├── Failed ── TriggerFailed
        └── Cancelled
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Cached",
    "Cancelled",
    "Failed",
    "Finished",
    "Mapped",
    "Pending",
    "Retrying",
    "Running",
    "State",
    "Success",
    "TriggerFailed",
]


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

    __slots__ = ("message", "result", "traceback", "map_states", "timestamp")
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
        self.result = result
        self.traceback = traceback
        self.map_states = map_states
        self.timestamp = timestamp

    @property
    def name(self) -> str:
        """The kind of state, e.g. ``"Success"``."""
        return type(self).__name__

    def __repr__(self) -> str:
        if self.message:
            return f"<{self.name}: {self.message!r}>"
        return f"<{self.name}>"

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in State.__slots__)

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


class Cached(Success):
    """A result reused from an earlier run: the task did not run (Prefect 1's
    ``Cached``).

    Parameters
    ----------
    message : str, optional
    result : Any, optional
        The reused result.
    cached_inputs : dict, optional
        What the result was computed from (for nbflow's notebook cache: the
        cell's key).
    cached_result_expiration : datetime.datetime, optional
        When the reused result stops being valid; None for never.
    cached_parameters : dict, optional
        The flow parameters it was computed with.

    """

    __slots__ = ("cached_inputs", "cached_result_expiration", "cached_parameters")
    color = "#17a2b8"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        *,
        cached_inputs: dict[str, Any] | None = None,
        cached_result_expiration: Any = None,
        cached_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, result, **kwargs)
        self.cached_inputs = cached_inputs
        self.cached_result_expiration = cached_result_expiration
        self.cached_parameters = cached_parameters

    def __getstate__(self) -> tuple[Any, ...]:
        extra = (self.cached_inputs, self.cached_result_expiration,
                 self.cached_parameters)
        return (*super().__getstate__(), *extra)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        n = len(State.__slots__)
        super().__setstate__(values[:n])
        (self.cached_inputs, self.cached_result_expiration,
         self.cached_parameters) = values[n:]


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
