"""A Dask worker killed under a running task: rescheduled, or a clear failure."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from _faults import (
    PATIENCE,
    StateWatch,
    add,
    crash,
    hold,
    inc,
    tag,
    total,
    wait_for_file,
)
from _processes import start_scheduler, start_worker, stop, wait_for_workers

from nbflow import Flow
from nbflow.engine.runner import FlowRun
from nbflow.engine.state import Failed, Success, TriggerFailed
from nbflow.executors import DaskExecutor

pytestmark = pytest.mark.slow


@pytest.fixture
def two_workers(tmp_path):
    """A scheduler and two worker processes without nannies (a killed one stays
    dead); yields (address, worker processes).
    """
    scheduler, address = start_scheduler(tmp_path)
    workers = []
    try:
        workers = [start_worker(tmp_path, address, "--no-nanny", name=f"w{i}")
                   for i in range(2)]
        wait_for_workers(address, 2)
        yield address, workers
    finally:
        for worker in workers:
            stop(worker)
        stop(scheduler)


def test_worker_killed_mid_task_is_rescheduled(two_workers, tmp_path, no_leaked_processes):
    address, workers = two_workers
    pid_file, release = tmp_path / "pids", tmp_path / "release"
    with Flow("survivor") as flow:
        firsts = inc.map(list(range(6)))
        victim = hold(total(firsts), str(pid_file), str(release))
        last = add(total(firsts), 1)
    watch = StateWatch()
    run = FlowRun(flow, executor=DaskExecutor(address=address), listeners=[watch])
    run.start()
    try:
        assert watch.reached(victim, "Running").wait(PATIENCE), "victim never ran"
        killed = int(wait_for_file(pid_file).split()[0])
        assert killed in {w.pid for w in workers}, "the task runs in a worker process"
        os.kill(killed, signal.SIGKILL)
        psutil.Process(killed).wait(PATIENCE)
        release.touch()
        state = run.join(PATIENCE * 2)
    finally:
        release.touch()
        run.cancel()
        run.join(PATIENCE)
    assert state is not None, "the run did not end"
    assert isinstance(state, Success), state.message
    value, ran_on = state.result[victim].result
    assert value == sum(range(1, 7)) * 10
    survivor = ({w.pid for w in workers} - {killed}).pop()
    assert ran_on == survivor, "the task ended on the worker that was not killed"
    assert [int(p) for p in pid_file.read_text().split()] == [killed, survivor]
    assert state.result[firsts].result == list(range(1, 7))
    assert state.result[last].result == sum(range(1, 7)) + 1


def test_task_that_kills_its_workers_fails_with_killed_worker(nanny_address):
    # Tasks queued on a worker that dies count against Dask's allowed failures
    # too, so the tasks meant to succeed finish before the crash.
    with Flow("crasher") as flow:
        a = inc(1)
        fine = add(a, 10)
        bad = crash(fine)
        after = inc(bad)
    state = flow.run(executor=DaskExecutor(address=nanny_address))
    assert isinstance(state, Failed)
    failed = state.result[bad]
    assert isinstance(failed, Failed)
    message = failed.message
    assert message.startswith("Task 'crash' failed: its worker died 2 times while "
                              "running it (KilledWorker"), message
    assert isinstance(state.result[after], TriggerFailed)
    assert "upstream task 'crash'" in state.result[after].message
    assert state.result[fine].result == 12
    assert state.result[a].result == 2
    assert "'crash'" in state.message


def test_finished_task_stays_success_when_its_worker_dies(two_workers, tmp_path):
    """A task that finished is Success even if the worker holding its value
    dies later in the run; reading the value computes it again elsewhere.
    """
    address, workers = two_workers
    tagged, pid_file, release = tmp_path / "tagged", tmp_path / "pids", tmp_path / "go"
    with Flow("lose-a-finished-value") as flow:
        done = tag(1, str(tagged))
        busy = hold(2, str(pid_file), str(release))
    flow.set_reference_tasks([busy])
    watch = StateWatch()
    run = FlowRun(flow, executor=DaskExecutor(address=address), listeners=[watch])
    run.start()
    try:
        assert watch.reached(done, "Success").wait(PATIENCE), "done never finished"
        holder = int(wait_for_file(tagged).split()[0])
        os.kill(holder, signal.SIGKILL)
        psutil.Process(holder).wait(PATIENCE)
        release.touch()
        state = run.join(PATIENCE * 2)
    finally:
        release.touch()
        run.cancel()
        run.join(PATIENCE)
    assert state is not None, "the run did not end"
    assert isinstance(state, Success), state.message
    assert isinstance(state.result[done], Success), state.result[done]
    survivor = ({w.pid for w in workers} - {holder}).pop()
    assert state.result[done].result == (1, survivor)  # computed again
    assert state.result[busy].result[0] == 20
