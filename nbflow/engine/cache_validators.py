"""Whether a Cached state still stands in for a run, as in Prefect 1.

A validator is ``validator(state, inputs, parameters) -> bool``: ``state`` the
Cached state, ``inputs`` the arguments the task is about to run with,
``parameters`` the flow run's parameter values. Standard library only.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any

from nbflow.engine.state import Cached

__all__ = [
    "all_inputs",
    "all_parameters",
    "duration_only",
    "never_use",
    "partial_inputs_only",
    "partial_parameters_only",
]

Validator = Callable[[Cached, dict[str, Any], "dict[str, Any] | None"], bool]


def never_use(state: Cached, inputs: dict[str, Any], parameters: Any) -> bool:
    """Never use the cache."""
    return False


def duration_only(state: Cached, inputs: dict[str, Any], parameters: Any) -> bool:
    """Valid until it expires (the default)."""
    expires = state.cached_result_expiration
    return expires is None or expires > datetime.datetime.now(datetime.timezone.utc)


def all_inputs(state: Cached, inputs: dict[str, Any], parameters: Any) -> bool:
    """Valid until it expires, for the same inputs."""
    return duration_only(state, inputs, parameters) and _same(state.cached_inputs, inputs)


def all_parameters(state: Cached, inputs: dict[str, Any], parameters: Any) -> bool:
    """Valid until it expires, for the same flow parameters."""
    return duration_only(state, inputs, parameters) and _same(
        state.cached_parameters, parameters)


def partial_inputs_only(validate_on: Iterable[str] | None = None) -> Validator:
    """A validator: valid until it expires, for the same values of the inputs
    named in ``validate_on``.

    Returns
    -------
    callable
        The validator.

    """
    names = list(validate_on or ())

    def validator(state: Cached, inputs: dict[str, Any], parameters: Any) -> bool:
        if not duration_only(state, inputs, parameters):
            return False
        cached = state.cached_inputs or {}
        return all(_same(cached.get(n), inputs.get(n)) for n in names)

    return validator


def partial_parameters_only(validate_on: Iterable[str] | None = None) -> Validator:
    """A validator: valid until it expires, for the same values of the flow
    parameters named in ``validate_on``.

    Returns
    -------
    callable
        The validator.

    """
    names = list(validate_on or ())

    def validator(state: Cached, inputs: dict[str, Any], parameters: Any) -> bool:
        if not duration_only(state, inputs, parameters):
            return False
        cached, now = state.cached_parameters or {}, parameters or {}
        return all(_same(cached.get(n), now.get(n)) for n in names)

    return validator


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays: equal only if the same object
        return a is b
