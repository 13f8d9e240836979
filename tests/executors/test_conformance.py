"""One conformance suite, run against every executor and cluster mode."""

from __future__ import annotations

import os
import signal

import pytest
from _flows import (
    add,
    chain_flow,
    diamond_flow,
    exiting_flow,
    failure_flow,
    flaky,
    inc,
    parameter_flow,
    rendezvous,
    sleepy,
    touch,
    wait_for,
    wide_map_flow,
)

from nbflow import Flow, unmapped
from nbflow.engine.events import TaskMapped, TaskStateChanged
from nbflow.engine.state import Cancelled, Failed, Mapped, Success, TriggerFailed


def test_diamond_runs_each_task_once(executor):
    flow, d = diamond_flow()
    flow.executor = executor
    state = flow.run()
    assert state.is_successful(), state.message
    assert state.result[d].result == (1 + 2) + (2 + 10)
    assert all(s.is_successful() for s in state.result.values())
    assert len(state.result) == 4


def test_chain_passes_results_down(executor):
    flow, last = chain_flow(20)
    state = flow.run(executor=executor)
    assert state.result[last].result == 20


def test_wide_map_and_map_of_map(executor):
    events = []
    flow, mapped, again, s = wide_map_flow(50)
    state = flow.run(executor=executor, listeners=[events.extend],
                     return_tasks=[mapped, again])
    assert state.is_successful(), state.message
    assert isinstance(state.result[mapped], Mapped)
    assert state.result[mapped].result == list(range(1, 51))
    assert [c.result for c in state.result[again].map_states] == list(range(2, 52))
    assert state.result[s].result == sum(range(2, 52))
    assert {e.size for e in events if isinstance(e, TaskMapped)} == {50}
    # every child reported that it started running, from wherever it ran
    running = {(e.task, e.map_index) for e in events
               if isinstance(e, TaskStateChanged) and e.new.name == "Running"}
    assert {(mapped, i) for i in range(50)} <= running


def test_failure_stops_downstream_but_not_independent_branches(executor):
    flow, bad, after, fine = failure_flow()
    state = flow.run(executor=executor)
    assert isinstance(state, Failed)
    failed = state.result[bad]
    assert isinstance(failed, Failed) and not isinstance(failed, TriggerFailed)
    assert isinstance(failed.result, ValueError)
    assert "boom on 2" in failed.message
    assert 'raise ValueError(f"boom on {x}")' in failed.traceback
    assert isinstance(state.result[after], TriggerFailed)
    assert state.result[fine].result == 7


def test_retries_run_in_the_same_executor_session(executor, tmp_path):
    path = str(tmp_path / "attempts.txt")
    events = []
    with Flow("retries") as flow:
        f = flaky(path)
    state = flow.run(executor=executor, listeners=[events.extend])
    assert state.result[f].result == 3
    retrying = [e for e in events if isinstance(e, TaskStateChanged)
                and e.new.name == "Retrying"]
    assert len(retrying) == 2 and "attempt 1 fails" in retrying[0].message
    # one scheduler for every attempt: no new cluster per retry
    assert len(set(open(path).read().split())) == 1


def test_parameters(executor):
    flow, s = parameter_flow()
    assert flow.run(parameters={"k": 10}, executor=executor).result[s].result == 30
    assert flow.run(parameters={"n": 5, "k": 2}, executor=executor).result[s].result == 20


def test_ctrl_c_cancels_the_run(executor):
    """SIGINT when the first task is running: the flow returns Cancelled, what
    finished keeps its state, the rest is Cancelled, and nothing is left running
    (checked by the fixture for pools and temporary clusters)."""
    with Flow("cancel") as flow:
        first = inc(1)  # finishes before the interrupt: slow needs it
        slow = sleepy.map(add.map(range(4), unmapped(first)))
        after = sleepy(slow)

    sent = []

    def interrupt(events):
        for e in events:
            if (not sent and isinstance(e, TaskStateChanged) and e.task is slow
                    and e.new.name == "Running"):
                sent.append(True)
                os.kill(os.getpid(), signal.SIGINT)

    state = flow.run(executor=executor, listeners=[interrupt], return_tasks=[first])
    assert isinstance(state, Cancelled), state
    assert isinstance(state.result[after], Cancelled)
    assert isinstance(state.result[slow], Cancelled)
    assert state.result[first].is_successful() and state.result[first].result == 2


def test_events_reach_listeners_and_a_raising_listener_breaks_nothing(executor):
    seen = []

    def broken(events):
        raise RuntimeError("listener bug")

    flow, d = diamond_flow()
    state = flow.run(executor=executor, listeners=[broken, seen.extend])
    assert state.is_successful()
    changes = [(e.task.name, e.new.name) for e in seen if isinstance(e, TaskStateChanged)]
    assert changes.count(("add", "Running")) == 2
    assert changes.count(("add", "Success")) == 2
    assert type(seen[0]).__name__ == "FlowStarted" and type(seen[-1]).__name__ == "FlowFinished"
    assert isinstance(seen[-1].state, Success)


def _skip_single_threaded(executor):
    if type(executor).__name__ == "LocalExecutor" or getattr(executor, "scheduler", "") == "synchronous":
        pytest.skip("one thread: tasks run one at a time by design")


def test_no_level_barrier(executor, tmp_path):
    """A shallow task waits for a deep branch to finish: with a level-by-level
    barrier the deep branch would wait for it instead (a deadlock, then a timeout)."""
    _skip_single_threaded(executor)
    signal_file = str(tmp_path / "deep-done")
    with Flow("eager") as flow:
        shallow = wait_for(signal_file)
        deep = touch(signal_file, _after=inc(inc(inc(0))))
    state = flow.run(executor=executor)
    assert state.is_successful(), state.message
    assert state.result[shallow].result == state.result[deep].result


def test_map_children_run_in_parallel(executor, tmp_path):
    """Two children of a map meet while both run: run one after the other, the
    first would wait for the second forever (then time out)."""
    _skip_single_threaded(executor)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with Flow("parallel") as flow:
        met = rendezvous.map([a, b], [b, a])
    state = flow.run(executor=executor)
    assert state.is_successful(), state.message
    assert state.result[met].result == [a, b]


def test_a_second_ctrl_c_during_shutdown_keeps_what_finished(executor):
    """Users press Ctrl-C twice: the second one, while the executor shuts
    down, must not lose the states the first one collected."""
    with Flow("twice") as flow:
        first = inc(1)
        slow = sleepy.map(add.map(range(2), unmapped(first)))

    count = []

    def interrupt(events):
        for e in events:
            if (len(count) < 2 and isinstance(e, TaskStateChanged) and e.task is slow
                    and e.new.name == "Running"):
                count.append(True)
                os.kill(os.getpid(), signal.SIGINT)

    original = executor.cancel

    def cancel_then_interrupt_again(futures):
        original(futures)
        if len(count) < 2:
            count.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    executor.cancel = cancel_then_interrupt_again
    state = flow.run(executor=executor, listeners=[interrupt], return_tasks=[first])
    assert isinstance(state, Cancelled), state
    assert state.result[first].result == 2


def test_sys_exit_and_keyboard_interrupt_in_a_task_fail_that_task(executor):
    flow, (exits, interrupts, fine) = exiting_flow()
    state = flow.run(executor=executor)
    assert state.is_failed()
    assert state.result[exits].message == (
        "Task 'exits' failed: it called sys.exit(3), which ends this task, not the run."
    )
    assert state.result[interrupts].message == (
        "Task 'interrupts' failed: it raised KeyboardInterrupt, which ends this "
        "task, not the run."
    )
    assert isinstance(state.result[exits].result, RuntimeError)  # never a SystemExit
    assert state.result[fine].result == 2
