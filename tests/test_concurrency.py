"""Flows built and run from several threads at once."""

from __future__ import annotations

import threading

import pytest

from nbflow import Flow, Parameter, task
from nbflow.engine.runner import ExecutorBusyError
from nbflow.executors import LocalDaskExecutor, LocalExecutor


@task
def inc(x):
    return x + 1


def test_flows_built_in_two_threads_at_once_keep_their_own_tasks():
    inside, built = threading.Barrier(2, timeout=30), {}

    def build(name: str) -> None:
        with Flow(name) as flow:
            inc(1)
            inside.wait()  # both threads are inside their `with` now
            inc(2)
            inside.wait()
        built[name] = flow

    threads = [threading.Thread(target=build, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {n: len(f.tasks) for n, f in built.items()} == {"a": 2, "b": 2}


@task
def held(n, gate, started):
    started.set()
    gate.wait(60)
    return n * 2


@pytest.mark.parametrize("make", [LocalExecutor, LocalDaskExecutor])
def test_same_flow_run_from_two_threads_at_once_refuses_the_second(make):
    gate, started = threading.Event(), threading.Event()
    with Flow("twice", executor=make()) as flow:
        result = held(Parameter("n"), gate, started)
    first: dict = {}
    thread = threading.Thread(
        target=lambda: first.update(state=flow.run(parameters={"n": 1}))
    )
    thread.start()
    try:
        assert started.wait(60), "the first run never started its task"
        with pytest.raises(ExecutorBusyError) as info:
            flow.run(parameters={"n": 2})
        assert str(info.value) == (
            f"{flow.executor!r} is already running a flow (in another thread); "
            "wait for that run to end, or give this run its own executor: "
            "flow.run(executor=...)."
        )
    finally:
        gate.set()
        thread.join(60)
    assert first["state"].result[result].result == 2
    # once the first run ended, the executor runs again
    assert flow.run(parameters={"n": 3}).result[result].result == 6
    # and two runs at once, each on its own executor, both succeed
    gate.clear()
    started.clear()
    other: dict = {}
    thread = threading.Thread(
        target=lambda: other.update(state=flow.run(parameters={"n": 4}))
    )
    thread.start()
    try:
        assert started.wait(60)
        gate.set()
        mine = flow.run(parameters={"n": 5}, executor=make())
    finally:
        gate.set()
        thread.join(60)
    assert mine.result[result].result == 10
    assert other["state"].result[result].result == 8
