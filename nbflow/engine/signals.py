"""Signals a task raises to choose its own state, as in Prefect 1.

``raise FAIL("why")`` ends the task Failed (retried like an error), ``SUCCESS``
Success, ``SKIP`` Skipped (downstream tasks skip too, unless they set
``skip_on_upstream_skip=False``), ``RETRY`` Retrying (it runs again, whatever
``max_retries`` says), ``LOOP(result=...)`` Looped: it runs again at once, and
:func:`nbflow.context.get` ``("task_loop_result")`` is that result.
``TRIGGERFAIL`` is what a trigger raises when its task must not run.

Signals derive from ``BaseException``, as Prefect's do, so an
``except Exception`` in the task's own code does not swallow them. States and
the standard library only.
"""

from __future__ import annotations

from typing import Any

from nbflow.engine import state

__all__ = [
    "ENDRUN",
    "FAIL",
    "LOOP",
    "PAUSE",
    "RETRY",
    "SKIP",
    "SUCCESS",
    "TRIGGERFAIL",
    "PrefectStateSignal",
    "signal_from_state",
]


class PrefectStateSignal(BaseException):  # noqa: N818 - Prefect's name
    """Raised to end a task in ``self.state`` (a state of ``_state_cls``).

    Parameters
    ----------
    message : str, optional
    *args, **kwargs
        Passed to the state; ``result`` defaults to the signal itself.

    """

    _state_cls: type[state.State] = state.State

    def __init__(self, message: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(message)
        kwargs.setdefault("result", self)
        self.state = self._state_cls(message, *args, **kwargs)


class FAIL(PrefectStateSignal):
    """End the task Failed."""

    _state_cls = state.Failed


class TRIGGERFAIL(FAIL):
    """End the task TriggerFailed (what a trigger raises)."""

    _state_cls = state.TriggerFailed


class SUCCESS(PrefectStateSignal):
    """End the task Success (with ``result=``)."""

    _state_cls = state.Success


class SKIP(PrefectStateSignal):
    """End the task Skipped; downstream tasks skip too by default."""

    _state_cls = state.Skipped


class RETRY(PrefectStateSignal):
    """Run the task again now."""

    _state_cls = state.Retrying


class PAUSE(PrefectStateSignal):
    """End the task Paused (an in-process run does not resume it)."""

    _state_cls = state.Paused


class LOOP(PrefectStateSignal):
    """Run the task again with ``result`` as ``context.get("task_loop_result")``."""

    _state_cls = state.Looped

    def __init__(self, message: str | None = None, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("result", repr(self))
        super().__init__(message, *args, **kwargs)


class ENDRUN(BaseException):  # noqa: N818 - Prefect's name
    """Stop all processing of a task; it ends in ``state``."""

    def __init__(self, state: state.State) -> None:
        self.state = state
        super().__init__()


def signal_from_state(given: state.State) -> type[PrefectStateSignal]:
    """The signal class that ends a task in a state of ``given``'s kind.

    Raises
    ------
    ValueError
        If no signal makes that kind of state.

    """
    unprocessed = set(PrefectStateSignal.__subclasses__())
    found: dict[str, type[PrefectStateSignal]] = {}
    while unprocessed:
        sig = unprocessed.pop()
        found[sig._state_cls.__name__] = sig
        unprocessed |= set(sig.__subclasses__())
    try:
        return found[type(given).__name__]
    except KeyError:
        raise ValueError(f"No signal matches the state {given!r}.") from None
