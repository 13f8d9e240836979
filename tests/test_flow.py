"""The model: tasks, edges, parameters, mapping, validation."""

from __future__ import annotations

import datetime

import pytest

from nbflow import Flow, Parameter, task, unmapped
from nbflow.engine.state import Failed, Mapped, Success, TriggerFailed
from nbflow.errors import FlowContextError, FlowValidationError


@task
def inc(x):
    return x + 1


@task
def add(x, y):
    return x + y


def test_task_called_outside_flow_runs_function():
    assert inc(1) == 2


def test_task_called_outside_flow_with_task_argument_is_refused():
    with pytest.raises(FlowContextError, match=r"outside a flow with task <Task: inc>"):
        add(inc, 1)
    with pytest.raises(FlowContextError, match="upstream_tasks"):
        inc(1, upstream_tasks=[add])


def test_map_outside_flow_is_refused():
    with pytest.raises(FlowContextError, match=r"mapped outside a flow"):
        inc.map([1, 2])


def test_calling_task_in_flow_adds_a_copy_with_edges():
    with Flow("f") as flow:
        a = inc(1)
        b = add(a, y=2)
    assert a is not inc and a.name == "inc"
    assert flow.upstream_tasks(b) == [a]
    assert {(e.upstream, e.downstream, e.key) for e in flow.edges} == {(a, b, "x")}
    assert flow.terminal_tasks() == {b} and flow.root_tasks() == {a}


def test_bad_arguments_are_refused_when_bound():
    with Flow("f"), pytest.raises(FlowValidationError, match="Task 'add' cannot take"):
        add(1, 2, 3)


def test_cycle_is_named():
    with Flow("f") as flow:
        a = inc(1)
        b = inc(a)
    flow.set_dependencies(a, upstream_tasks=[b])
    with pytest.raises(FlowValidationError, match=r"has a cycle: 'inc' -> 'inc' -> 'inc'"):
        flow.run()


def test_parameters_defaults_given_and_required():
    with Flow("p") as flow:
        n = Parameter("n", default=2)
        m = Parameter("m")
        total = add(n, m)
    assert flow.run(parameters={"m": 1}).result[total].result == 3
    assert flow.run(n=10, m=1).result[total].result == 11
    with pytest.raises(FlowValidationError, match=r"Parameter 'm' is required"):
        flow.run()
    with pytest.raises(FlowValidationError, match=r"Unknown parameter 'x'"):
        flow.run(parameters={"x": 1, "m": 1})


def test_map_literal_unmapped_and_map_of_map():
    with Flow("m") as flow:
        a = add.map([1, 2, 3], unmapped(10))
        b = inc.map(a)
        total = sum_all(b)
    state = flow.run()
    assert isinstance(state.result[a], Mapped)
    assert state.result[b].result == [12, 13, 14]
    assert [s.result for s in state.result[b].map_states] == [12, 13, 14]
    assert state.result[total].result == 39


@task
def sum_all(xs):
    return sum(xs)


@task
def numbers(n):
    return list(range(n))


def test_map_over_upstream_result_and_empty_map():
    with Flow("m") as flow:
        n = Parameter("n")
        m = inc.map(numbers(n))
    assert flow.run(n=3).result[m].result == [1, 2, 3]
    empty = flow.run(n=0).result[m]
    assert empty.is_successful() and empty.result == []


def test_map_over_non_sequence_fails_with_message():
    with Flow("m") as flow:
        m = inc.map(Parameter("n", default=5))
    state = flow.run()
    assert isinstance(state.result[m], Failed)
    assert "cannot map over 'n' (= 5): it is not a sequence" in state.result[m].message


def test_failure_trigger_failed_and_independent_branch():
    @task
    def boom(x):
        raise ValueError(f"no {x}")

    with Flow("f") as flow:
        bad = boom(1)
        after = inc(bad)
        fine = inc(1)
    state = flow.run()
    assert state.is_failed()
    assert isinstance(state.result[bad], Failed)
    assert isinstance(state.result[bad].result, ValueError)
    assert "raise ValueError" in state.result[bad].traceback
    assert isinstance(state.result[after], TriggerFailed)
    assert state.result[fine].result == 2


def test_retries_with_delay_as_timedelta():
    calls = []

    @task(max_retries=2, retry_delay=datetime.timedelta(milliseconds=1))
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return "ok"

    with Flow("r") as flow:
        f = flaky()
    assert flow.run().result[f].result == "ok"
    assert len(calls) == 3


def test_reference_tasks_and_terminal_state_handler():
    seen = {}

    def handler(flow, state, reference_states):
        seen["refs"] = reference_states
        return Success("replaced", state.result)

    @task
    def boom():
        raise ValueError

    with Flow("h", terminal_state_handler=handler) as flow:
        a = inc(1)
        boom()
    flow.set_reference_tasks([a])
    state = flow.run()
    assert state.message == "replaced"
    # Prefect's signature: a set of States (not a dict of tasks)
    assert isinstance(seen["refs"], set)
    assert [s for s in seen["refs"]] == [state.result[a]]
    assert all(s.is_successful() for s in seen["refs"])


def test_varargs_kwargs_positional_only_and_nested_task_arguments():
    @task
    def f(a, /, *rest, scale=1, **extra):
        return (a + sum(rest)) * scale + sum(extra.values())

    with Flow("v") as flow:
        one = inc(0)
        r = f(one, 2, inc(2), scale=2, bonus=one)
        nested = sum_all([one, 10, inc(one)])
    state = flow.run()
    assert state.result[r].result == (1 + 2 + 3) * 2 + 1
    assert state.result[nested].result == 1 + 10 + 2


def test_replace_keeps_position_and_edges():
    with Flow("r") as flow:
        a = inc(1)
        b = inc(a)
    new = add.copy()
    flow.set_dependencies(new, arguments={"x": 5, "y": 5})
    flow.replace(a, new)
    assert flow.ordered_tasks()[0] is new
    assert flow.upstream_tasks(b) == [new]
    assert flow.run().result[b].result == 11


def test_copy_replacing_swaps_tasks_in_one_pass_and_leaves_the_original():
    with Flow("r") as flow:
        a = inc(1)
        b = add(unmapped(a), [a, 2])  # wrapped and in a container
        c = inc.map([b, a])
    flow.set_reference_tasks([c])
    twin = a.copy()
    copied = flow.copy(replacing={a: twin})
    assert copied.ordered_tasks() == [twin, b, c]
    assert copied.upstream_tasks(b) == [twin] and flow.upstream_tasks(b) == [a]
    assert copied.reference_tasks() == {c}
    assert flow.ordered_tasks() == [a, b, c]  # the original keeps its graph
    assert copied.binding(b).arguments["x"].value is twin
    assert copied.binding(b).arguments["y"][0] is twin
    assert flow.binding(b).arguments["y"][0] is a


def test_remove_refuses_task_with_readers():
    with Flow("r") as flow:
        a = inc(1)
        inc(a)
    with pytest.raises(FlowValidationError, match="feeds 'inc'; remove those first"):
        flow.remove(a)
