"""Task and flow states, as in Prefect 1; standard library only.

``State`` and its kinds form Prefect 1's hierarchy, so that ``isinstance`` and
the ``is_*`` predicates answer the questions the engine and the views ask::

    State
    ├── Pending ── Scheduled ── Paused, Resume, Retrying
    ├── Submitted, Queued        (wrap another state: ``.state``)
    ├── Running
    └── Finished
        ├── Looped
        ├── Success ── Cached, Mapped, Skipped
        ├── Failed ── TimedOut, TriggerFailed
        └── Cancelled

States compare by kind and result (the message is ignored), as Prefect's do,
and hash by identity, so a set of states holds each state object once.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

__all__ = [
    "Cached",
    "Cancelled",
    "DeferredResult",
    "Failed",
    "Finished",
    "Looped",
    "Mapped",
    "Paused",
    "Pending",
    "Queued",
    "Resume",
    "Retrying",
    "Running",
    "Scheduled",
    "Skipped",
    "State",
    "Submitted",
    "Success",
    "TimedOut",
    "TriggerFailed",
    "deferred_sizes",
    "fetch_results",
    "portable",
]


class DeferredResult:
    """A task's result kept where it was computed (a Dask cluster) until read.

    A state whose result is one of these fetches it the first time
    ``state.result`` is read and keeps the value from then on. Executors that
    keep values away from the driver subclass it.
    """

    __slots__ = ()
    #: Whether a pickled state carries this (a reference readable where the
    #: state goes) rather than the fetched value.
    travels: ClassVar[bool] = False
    #: Whether the value can still be fetched (False: it was let go).
    kept: ClassVar[bool] = True

    def is_kept(self) -> bool:
        """Whether the value can still be fetched (its cluster still holds it)."""
        return self.kept

    def portable(self) -> DeferredResult | None:
        """A reference through which a task elsewhere reads the value without
        it passing through here (one that ``travels``), or None.
        """
        return None

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


_S = TypeVar("_S", bound="State")


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


def portable(state: _S) -> _S:
    """``state``, or for one whose result is kept elsewhere, a copy carrying a
    reference that tasks elsewhere read the value through (a Cached state
    sent to a Dask worker reads its value from the cluster, not from here).
    """
    value = state._result
    ref = value.portable() if isinstance(value, DeferredResult) else None
    if ref is None:
        return state
    copy = object.__new__(type(state))
    for slot in state._fields:
        setattr(copy, slot, getattr(state, slot, None))
    copy._result = ref
    return copy


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
    #: Every slot of the class, its bases' first (what pickles).
    _fields: ClassVar[tuple[str, ...]] = __slots__
    #: Slots compared by ``==`` besides the kind and the result.
    _compared: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = tuple(cls.__dict__.get("__slots__", ()))
        cls._fields = cls._fields + tuple(f for f in own if f not in cls._fields)

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

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return False
        assert isinstance(other, State)
        try:
            same = bool(self.result == other.result)
        except Exception:  # noqa: BLE001 - e.g. arrays: compare by identity then
            same = self.result is other.result
        return same and all(
            getattr(self, f) == getattr(other, f) for f in self._compared
        )

    def __hash__(self) -> int:
        return id(self)

    def __getstate__(self) -> tuple[Any, ...]:
        # A deferred result is fetched (but for a reference made to travel):
        # a pickled state carries its value.
        value = self._result
        if isinstance(value, DeferredResult) and not value.travels:
            value = self.result
        return tuple(value if s == "_result" else getattr(self, s, None)
                     for s in self._fields)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        for slot, value in zip(self._fields, values):
            setattr(self, slot, value)

    @classmethod
    def children(
        cls, include_self: bool = False, names_only: bool = False
    ) -> list[Any]:
        """The kinds of state below this one (as classes, or their names)."""
        found: list[type[State]] = []
        for sub in cls.__subclasses__():
            if not sub.__name__.startswith("_"):
                found.append(sub)
            found.extend(sub.children())
        if include_self:
            found.append(cls)
        return [c.__name__ for c in found] if names_only else found

    @classmethod
    def parents(
        cls, include_self: bool = False, names_only: bool = False
    ) -> list[Any]:
        """The kinds of state above this one, nearest first."""
        found = [c for c in cls.__mro__[1:]
                 if issubclass(c, State) and not c.__name__.startswith("_")]
        if include_self:
            found.insert(0, cls)
        return [c.__name__ for c in found] if names_only else found

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

    def is_skipped(self) -> bool:
        """Whether the task was skipped (a kind of success)."""
        return isinstance(self, Skipped)

    def is_cached(self) -> bool:
        """Whether the result came from a cache."""
        return isinstance(self, Cached)

    def is_looped(self) -> bool:
        """Whether the task ended one loop iteration (and runs again)."""
        return isinstance(self, Looped)

    def is_scheduled(self) -> bool:
        """Whether the run waits for a time (a retry, a pause) or a queue."""
        return isinstance(self, (Scheduled, Queued))

    def is_submitted(self) -> bool:
        """Whether the run was handed to an executor."""
        return isinstance(self, Submitted)

    def is_queued(self) -> bool:
        """Whether the run waits in a queue."""
        return isinstance(self, Queued)

    def is_meta_state(self) -> bool:
        """Whether this state wraps another (``Submitted``, ``Queued``)."""
        return isinstance(self, (Submitted, Queued))


class Pending(State):
    """Waiting to run."""

    __slots__ = ()
    color = "#d3d3d3"


class Scheduled(Pending):
    """Waiting to run at ``start_time`` (a datetime, or None for now)."""

    __slots__ = ("start_time",)
    color = "#ffab00"
    _compared: ClassVar[tuple[str, ...]] = ("start_time",)

    def __init__(
        self, message: str | None = None, result: Any = None,
        start_time: datetime.datetime | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(message, result, **kwargs)
        self.start_time = start_time


class Paused(Scheduled):
    """Waiting for a :class:`Resume` (or its ``start_time``)."""

    __slots__ = ()
    color = "#99a8e8"


class Resume(Scheduled):
    """Resumed from :class:`Paused`; ready to run."""

    __slots__ = ()
    color = "#f58c0c"


class Retrying(Scheduled):
    """Failed, and waiting to run again; ``run_count`` runs so far."""

    __slots__ = ("run_count",)
    color = "#ffa500"
    _compared = ("start_time", "run_count")

    def __init__(
        self, message: str | None = None, result: Any = None,
        start_time: datetime.datetime | None = None, run_count: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, result, start_time, **kwargs)
        self.run_count = run_count


class _MetaState(State):
    """A state wrapping another one (``.state``)."""

    __slots__ = ("state",)
    _compared: ClassVar[tuple[str, ...]] = ("state",)

    def __init__(
        self, message: str | None = None, result: Any = None,
        state: State | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(message, result, **kwargs)
        self.state = state


class Submitted(_MetaState):
    """Handed to an executor; ``state`` is what it had before."""

    __slots__ = ()
    color = "#ffdf5d"


class Queued(_MetaState):
    """Waiting for room to run (``start_time``: when to look again)."""

    __slots__ = ("start_time",)
    color = "#ffea7f"
    _compared = ("state", "start_time")

    def __init__(
        self, message: str | None = None, result: Any = None,
        state: State | None = None, start_time: datetime.datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, result, state, **kwargs)
        self.start_time = start_time


class Running(State):
    """Running now."""

    __slots__ = ()
    color = "#00bfff"


class Finished(State):
    """Ended; see the subclasses for how."""

    __slots__ = ()
    color = "#555555"


class Looped(Finished):
    """Ended loop iteration ``loop_count``; the task runs again with its result."""

    __slots__ = ("loop_count",)
    color = "#003ccb"
    _compared = ("loop_count",)

    def __init__(
        self, message: str | None = None, result: Any = None,
        loop_count: int | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(message, result, **kwargs)
        self.loop_count = loop_count


class Success(Finished):
    """Ended with a result."""

    __slots__ = ()
    color = "#28a745"


class Cached(Success):
    """A result kept from an earlier run, valid until ``cached_result_expiration``.

    ``cached_inputs`` are the inputs it was computed from, ``cached_parameters``
    the flow's parameters then, and ``hashed_inputs`` a hash of each input.
    """

    __slots__ = (
        "cached_inputs", "cached_parameters", "cached_result_expiration",
        "hashed_inputs",
    )
    color = "#17a2b8"
    _compared = ("cached_inputs", "cached_parameters", "cached_result_expiration")

    def __init__(
        self, message: str | None = None, result: Any = None,
        cached_inputs: dict[str, Any] | None = None,
        cached_parameters: dict[str, Any] | None = None,
        cached_result_expiration: datetime.datetime | None = None,
        hashed_inputs: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, result, **kwargs)
        self.cached_inputs = cached_inputs
        self.cached_parameters = cached_parameters
        self.cached_result_expiration = cached_result_expiration
        self.hashed_inputs = hashed_inputs


class Mapped(Success):
    """Ran as one child per element; ``map_states`` holds the children."""

    __slots__ = ()
    color = "#20c997"

    @property
    def n_map_states(self) -> int:
        """How many children."""
        return len(self.map_states or ())


class Skipped(Success):
    """Did not run, on purpose (a ``SKIP`` signal, a skipped upstream task)."""

    __slots__ = ()
    color = "#62757f"


class Failed(Finished):
    """Ended with an error; ``result`` is the exception."""

    __slots__ = ()
    color = "#dc3545"


class TimedOut(Failed):
    """Ran past its ``timeout``."""

    __slots__ = ()
    color = "#ff4e33"


class TriggerFailed(Failed):
    """Did not run because its trigger failed (by default: an upstream task
    did not succeed).
    """

    __slots__ = ()
    color = "#c0392b"


class Cancelled(Finished):
    """Stopped, or never started, because the run was cancelled."""

    __slots__ = ()
    color = "#6c757d"
