"""Task and flow options that cannot work are refused when made, or mean what
they say: retry delays, timeouts, parameter names, terminal state handlers.
"""

from __future__ import annotations

import math

import pytest

from nbflow import Flow, Parameter, task
from nbflow.errors import FlowValidationError


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1.0, -math.inf])
def test_retry_delay_must_be_finite_and_not_negative(delay):
    with pytest.raises(FlowValidationError) as info:
        task(max_retries=1, retry_delay=delay)(lambda: 1)
    assert str(info.value) == (
        "retry_delay must be a timedelta or a finite number of seconds >= 0, "
        f"got {delay!r}."
    )


def test_timeout_nan_refused():
    with pytest.raises(FlowValidationError, match="got nan"):
        task(timeout=math.nan)(lambda: 1)


@task(timeout=math.inf)
def _unbounded(x):
    return x + 1


def test_infinite_timeout_means_no_timeout():
    assert _unbounded.timeout is None
    with Flow("unbounded") as flow:
        result = _unbounded(1)
    state = flow.run()
    assert state.is_successful(), state.message
    assert state.result[result].result == 2


def test_two_parameters_of_one_name_refused():
    with Flow("twice") as flow:
        Parameter("x", default=1)
        with pytest.raises(FlowValidationError) as info:
            Parameter("x", default=2)
    assert str(info.value) == (
        "Flow 'twice' already has a Parameter named 'x'; use that one, or give "
        "this one another name."
    )
    assert [p.name for p in flow.parameters()] == ["x"]


def _says_done(flow, state, reference_states):
    return "done"


def test_terminal_state_handler_returning_a_non_state_fails_the_run_naming_it():
    with Flow("handled", terminal_state_handler=_says_done) as flow:
        result = _unbounded(1)
    state = flow.run()
    assert state.is_failed()
    assert state.message == (
        "terminal_state_handler '_says_done' of flow 'handled' returned 'done'; "
        "it must return a State or None."
    )
    assert state.result[result].result == 2  # the tasks' states are kept
