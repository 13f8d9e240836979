"""``NotebookRun``: one run of the notebook flow as a handle, over a per-run flow.

A run never changes the registered flow: its cell tasks, their functions and
their bindings are the same, seen from another thread while the run goes and
after it ended, failed or was cancelled.
"""

from __future__ import annotations

import threading

import pytest

from nbflow import Flow
from nbflow.engine.state import Cancelled, Success
from nbflow.errors import RunStartedError, UndefinedNameError
from nbflow.notebook import (
    CellFailed,
    CellTask,
    NotebookRun,
    register_cell,
    run_notebook_flow,
)

TIMEOUT = 60


@pytest.fixture
def flow():
    return Flow("test-notebook")


def registered(flow):
    """What a run must leave alone: each task, its function, its binding."""
    out = []
    for task in flow.ordered_tasks():
        binding = flow.binding(task)
        out.append((task, task.fn, binding.mapped, list(binding.upstream),
                    {k: v.value if hasattr(v, "value") else v
                     for k, v in binding.arguments.items()}))
    return out


def cells(flow):
    """Register a cell that maps over a namespace list and one that waits."""
    register_cell("xs2 = [x * 2 for x in [xs]]", "double", map_var="xs", flow=flow)
    register_cell("started.set()\nopened = gate.wait(60)\nlast = len(xs2)", "wait",
                  flow=flow)


def test_registered_flow_is_unchanged_while_a_run_goes(flow):
    cells(flow)
    before = registered(flow)
    gate, started = threading.Event(), threading.Event()
    ns = {"xs": [1, 2, 3], "gate": gate, "started": started}
    runner = threading.Thread(target=run_notebook_flow, args=(ns,),
                              kwargs={"flow": flow}, daemon=True)
    runner.start()
    try:
        assert started.wait(TIMEOUT), "the run never started its cell"
        during = registered(flow)  # seen from this thread, mid-run
    finally:
        gate.set()
        runner.join(TIMEOUT)
    assert not runner.is_alive()
    assert ns["last"] == 3 and ns["xs2"] == [[2], [4], [6]]
    assert during == before
    assert registered(flow) == before
    for task, fn, *_ in during:
        assert fn is task.cell_function  # no namespace, no cache wrapper


def test_a_failed_or_cancelled_run_leaves_the_registered_flow_alone(flow):
    cells(flow)
    register_cell("boom = 1 / 0", "boom", flow=flow)
    before = registered(flow)
    gate, started = threading.Event(), threading.Event()
    ns = {"xs": [1, 2], "gate": gate, "started": started}
    run = NotebookRun(ns, flow=flow).start()
    assert started.wait(TIMEOUT)
    assert registered(flow) == before
    run.cancel()
    gate.set()
    state = run.join(TIMEOUT)
    assert isinstance(state, Cancelled), state
    assert registered(flow) == before
    gate.set()
    state = NotebookRun(ns, flow=flow).run()
    assert state.is_failed()
    assert registered(flow) == before


def test_handle_gives_state_outputs_stdout_and_failure(flow):
    register_cell("a = k + 1\nprint('a is', a)", "a", flow=flow)
    register_cell("b = a / 0", "b", flow=flow)
    ns = {"k": 1}
    run = NotebookRun(ns, flow=flow)
    assert run.state is None and not run.is_running and not run.is_done
    assert repr(run) == "<NotebookRun of flow 'test-notebook': not started>"
    state = run.run()
    assert run.state is state and run.is_done and state.is_failed()
    assert run.outputs == {"a": 2} and ns["a"] == 2
    assert run.stdout == "[a] a is 2"
    assert isinstance(run.failure, CellFailed)
    assert isinstance(run.failure.__cause__, ZeroDivisionError)
    assert "[a] a is 2" in run.summary()
    # the state speaks of the registered tasks, as the user knows them
    by_task = {t.name: t for t in flow.ordered_tasks()}
    assert isinstance(state.result[by_task["a"]], Success)
    assert all(isinstance(t, CellTask) and t in flow for t in state.result)
    # the run's own flow: other task objects, the same names
    ran = run.flow.ordered_tasks()
    assert [t.name for t in ran] == ["a", "b"]
    assert not set(ran) & set(flow.ordered_tasks())
    with pytest.raises(RunStartedError):
        run.start()


def test_checked_once_when_made_and_nothing_runs_on_an_error(flow):
    register_cell("y = missing + 1", "uses", flow=flow)
    with pytest.raises(UndefinedNameError, match="'uses' reads 'missing'"):
        NotebookRun({}, flow=flow)
    ns = {"missing": 1}
    run = NotebookRun(ns, flow=flow)
    del ns["missing"]  # read when the run was made, not again
    assert run.run().is_successful() and ns["y"] == 2


def test_cancel_before_the_run_starts_runs_nothing(flow):
    register_cell("ran.append(1)\nz = 1", "z", flow=flow)
    ns = {"ran": []}
    run = NotebookRun(ns, flow=flow)
    run.cancel()
    state = run.run()
    assert isinstance(state, Cancelled) and run.is_cancelled
    assert ns["ran"] == [] and "z" not in ns


def test_done_callbacks_see_the_ended_run(flow):
    register_cell("w = 1", "w", flow=flow)
    seen = []
    run = NotebookRun({}, flow=flow)
    run.add_done_callback(seen.append)
    run.start()
    assert run.join(TIMEOUT).is_successful()
    assert seen == [run]
    run.add_done_callback(seen.append)  # already done: called at once
    assert seen == [run, run]


def test_a_plain_flow_runs_as_it_is():
    from nbflow import task

    @task
    def inc(x):
        return x + 1

    with Flow("plain") as plain:
        y = inc(1)
    run = NotebookRun(flow=plain)
    assert run.flow is plain
    state = run.run()
    assert state.result[y].result == 2
    assert run.outputs == {} and run.failure is None


def test_the_state_speaks_of_the_registered_tasks_helpers_too(flow):
    register_cell("xs = [1, 2]", "load", flow=flow)
    register_cell("sq = xs * xs", "sq", map_var="xs", flow=flow)
    before = registered(flow)
    run = NotebookRun({}, flow=flow)
    state = run.run()
    assert state.is_successful() and run.outputs == {"xs": [1, 2], "sq": [1, 4]}
    assert set(state.result) == set(flow.ordered_tasks())  # load, load.xs, sq
    assert len(state.result) == 3
    assert registered(flow) == before
