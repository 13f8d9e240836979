"""Tasks past a limit: memory, time, a result that cannot leave its process.
Each ends Failed with a message that names the task and the cause.
"""

from __future__ import annotations

import pytest
from _faults import (
    add,
    hog,
    inc,
    make_generator,
    make_lock,
    never_returns,
    type_name,
)

from nbflow import Flow
from nbflow.engine.state import Failed, Success, TriggerFailed
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor

slow = pytest.mark.slow


@slow
def test_task_past_worker_memory_limit_fails_naming_memory(nanny_address):
    # Tasks queued on a worker that dies count against Dask's allowed failures
    # too, so the task meant to succeed finishes first.
    with Flow("hungry") as flow:
        fine = inc(1)
        big = hog(600, fine)
    state = flow.run(executor=DaskExecutor(address=nanny_address))
    failed = state.result[big]
    assert isinstance(failed, Failed), failed
    assert failed.message.startswith(
        "Task 'hog' failed: its worker died 2 times while running it (KilledWorker)"
    ), failed.message
    assert "memory limit of 200 MB" in failed.message
    assert state.result[fine].result == 2


def _timeout_executor(kind, request):
    if kind == "local":
        return LocalExecutor()
    if kind in ("threads", "processes"):
        return LocalDaskExecutor(kind, num_workers=2)
    return DaskExecutor(address=request.getfixturevalue("existing_cluster"))


@pytest.mark.parametrize("kind", [
    "local", "threads", pytest.param("processes", marks=slow),
    pytest.param("cluster", marks=slow),
])
def test_task_that_never_returns_times_out(kind, request):
    with Flow("stuck") as flow:
        stuck = never_returns(1)
        after = inc(stuck)
        fine = add(1, 2)
    state = flow.run(executor=_timeout_executor(kind, request))
    failed = state.result[stuck]
    assert isinstance(failed, Failed), failed
    assert failed.message.startswith(
        "Task 'never_returns' timed out after 1 s and was abandoned"
    ), failed.message
    assert isinstance(failed.result, TimeoutError)
    assert isinstance(state.result[after], TriggerFailed)
    assert state.result[fine].result == 3


@pytest.mark.parametrize("kind", [
    pytest.param("processes", marks=slow), pytest.param("cluster", marks=slow),
])
@pytest.mark.parametrize("maker", [make_lock, make_generator], ids=["lock", "generator"])
def test_unserialisable_result_fails_naming_task(kind, maker, request):
    with Flow("unpicklable") as flow:
        bad = maker(3)
        after = type_name(bad)
        fine = add(1, 2)
    executor = (LocalDaskExecutor("processes", num_workers=2) if kind == "processes"
                else DaskExecutor(address=request.getfixturevalue("existing_cluster")))
    state = flow.run(executor=executor)
    failed = state.result[bad]
    assert isinstance(failed, Failed), failed
    assert failed.message.startswith(
        f"Task {maker.name!r} failed: its result cannot be serialised"
    ), failed.message
    assert isinstance(state.result[after], TriggerFailed)
    assert isinstance(state.result[fine], Success) and state.result[fine].result == 3


def test_unserialisable_result_is_fine_where_it_stays_in_process():
    with Flow("kept") as flow:
        lock = make_lock(1)
        name = type_name(lock)
    state = flow.run(executor=LocalDaskExecutor("threads"))
    assert isinstance(state, Success), state.message
    assert state.result[name].result == "lock"
