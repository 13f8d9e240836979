"""An argument that cannot be pickled to reach a worker process fails its task,
naming the task and the argument; the rest of the flow runs.
"""

from __future__ import annotations

import threading

import pytest

from nbflow import Flow, task
from nbflow.executors import DaskExecutor, LocalDaskExecutor


@task
def use(lock, n):
    return n


@task
def fine(n):
    return n + 1


@pytest.mark.parametrize("make", [
    pytest.param(lambda: LocalDaskExecutor("processes", num_workers=2), id="processes"),
    pytest.param(lambda: DaskExecutor(cluster_kwargs={"n_workers": 1}), id="cluster",
                 marks=pytest.mark.slow),
])
def test_unserialisable_argument_fails_naming_task_and_argument(make, no_leaked_processes):
    with Flow("locks") as flow:
        used = use(threading.Lock(), 1)
        other = fine(1)
    state = flow.run(executor=make())
    assert state.result[other].result == 2
    message = state.result[used].message
    assert message == (
        "Task 'use' failed: its argument 'lock' cannot be sent to another process "
        "(TypeError: cannot pickle '_thread.lock' object); create it inside the "
        "task, or run on threads (LocalDaskExecutor('threads'))."
    )
    assert state.message == "Some reference tasks failed (failed: 'use')."


def test_threads_take_any_argument():
    lock = threading.Lock()
    with Flow("locks") as flow:
        used = use(lock, 1)
    state = flow.run(executor=LocalDaskExecutor("threads"))
    assert state.result[used].result == 1
