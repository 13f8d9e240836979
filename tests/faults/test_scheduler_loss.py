"""The scheduler of an existing cluster killed mid-run: a quick, clear failure
that keeps what finished, and an executor that works again afterwards.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from _faults import PATIENCE, StateWatch, hold, inc, spread, total
from _processes import start_scheduler, start_worker, stop, wait_for_workers

from nbflow import Flow, unmapped
from nbflow.engine.runner import FlowRun
from nbflow.engine.state import Failed, Success
from nbflow.errors import ClusterConnectionError
from nbflow.executors import DaskExecutor
from nbflow.executors.dask import ResultNotKeptError

pytestmark = pytest.mark.slow

#: The run must end this soon after the scheduler dies (it takes well under a
#: second when the machine is idle).
BOUND = 30


def _cluster(directory, *scheduler_args):
    scheduler, address = start_scheduler(directory, *scheduler_args)
    worker = start_worker(directory, address, "--no-nanny", name="w")
    wait_for_workers(address, 1)
    return scheduler, worker, address


def test_scheduler_killed_mid_run_fails_fast_keeps_finished(tmp_path, no_leaked_processes):
    scheduler, worker, address = _cluster(tmp_path)
    started = [scheduler, worker]
    release = tmp_path / "release"
    try:
        with Flow("chain") as flow:
            a = inc(1)
            b = spread(a)
            # Mapping over b's result makes the runner wait for b's length
            # (and so for a): both have finished, on the cluster only, before
            # any child of c can start.
            c = hold.map(b, unmapped(str(tmp_path / "pids")), unmapped(str(release)))
            d = total(c)
        executor = DaskExecutor(address=address)
        watch = StateWatch()
        run = FlowRun(flow, executor=executor, listeners=[watch]).start()
        assert watch.reached(c, "Running").wait(PATIENCE), "task c never ran"
        assert watch.reached(b, "Success").is_set()
        os.kill(scheduler.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        state = run.join(BOUND)
        assert state is not None, f"the run did not end within {BOUND} s of the kill"
        ended_in = time.monotonic() - killed_at

        assert isinstance(state, Failed), state.message
        assert address in state.message
        # A finished task stays Success; its value was only on the cluster.
        for kept_there in (a, b):
            assert isinstance(state.result[kept_there], Success)
            with pytest.raises(ResultNotKeptError, match="lost with the Dask scheduler"
                               ) as lost:
                state.result[kept_there].result  # noqa: B018 - reading fetches
            assert address in str(lost.value)
        for lost in (c, d):
            assert isinstance(state.result[lost], Failed), state.result[lost]
            assert address in state.result[lost].message
        assert isinstance(state.result[d].result, ClusterConnectionError)
        print(f"run ended {ended_in:.2f} s after the scheduler was killed")

        # The same executor works again once the scheduler is back at its address.
        release.touch()
        stop(worker)
        port = address.rsplit(":", 1)[1]
        scheduler, worker, again = _cluster(tmp_path, "--port", port)
        started += [scheduler, worker]
        assert again == address
        state = flow.run(executor=executor)
        assert isinstance(state, Success), state.message
        assert [v for v, _ in state.result[c].result] == [20, 30]
        assert state.result[b].result == [2, 3]  # c and b: read from the cluster
    finally:
        release.touch()
        for proc in started:
            stop(proc)


#: The processes of the temporary clusters the next test made (to stop them
#: whatever happens).
_MADE: list = []


class ProcessCluster:
    """A temporary cluster (``cluster_class``) of real ``dask scheduler`` and
    ``dask worker`` processes, so a test can kill its scheduler by PID.
    """

    dashboard_link = None

    def __init__(self, directory: str) -> None:
        from distributed.core import Status

        self.status = Status.running  # what a Client asks of a cluster
        self.scheduler, self.worker, self.scheduler_address = _cluster(Path(directory))
        _MADE.extend([self.scheduler, self.worker, self.scheduler_address])

    def close(self) -> None:
        stop(self.worker)
        stop(self.scheduler)


def test_temporary_cluster_scheduler_killed_mid_run(tmp_path, no_leaked_processes):
    release = tmp_path / "release"
    with Flow("chain") as flow:
        a = inc(1)
        b = spread(a)
        c = hold.map(b, unmapped(str(tmp_path / "pids")), unmapped(str(release)))
        total(c)
    executor = DaskExecutor(cluster_class=ProcessCluster,
                            cluster_kwargs={"directory": str(tmp_path)})
    watch = StateWatch()
    try:
        run = FlowRun(flow, executor=executor, listeners=[watch],
                      return_tasks=[a]).start()
        assert watch.reached(c, "Running").wait(PATIENCE), "task c never ran"
        assert watch.reached(a, "Success").is_set()
        scheduler, address = _MADE[0], _MADE[2]
        _wait_until_sent(address, "inc-")  # a's value reached the driver
        os.kill(scheduler.pid, signal.SIGKILL)
        state = run.join(BOUND)
        assert state is not None, f"the run did not end within {BOUND} s of the kill"
        assert isinstance(state, Failed), state.message
        assert address in state.message
        # Fetched as it finished: it keeps its value.
        assert isinstance(state.result[a], Success) and state.result[a].result == 2
        # Only on the cluster: Success, and reading it says it was not kept.
        assert isinstance(state.result[b], Success)
        with pytest.raises(ResultNotKeptError):
            state.result[b].result  # noqa: B018 - reading fetches
        assert isinstance(state.result[c], Failed)
        assert address in state.result[c].message
    finally:
        release.touch()
        for proc in _MADE[:2]:
            stop(proc)
        _MADE.clear()



def _wait_until_sent(address: str, prefix: str) -> None:
    """Wait until the worker sent (to the driver) a key starting with ``prefix``."""
    from distributed import Client

    def sent(dask_worker):
        return [k for entry in dask_worker.transfer_outgoing_log
                for k in entry["keys"] if str(k).startswith(prefix)]

    deadline = time.monotonic() + PATIENCE
    with Client(address, timeout=30) as client:
        while not any(client.run(sent).values()):
            assert time.monotonic() < deadline, f"no {prefix}* value was fetched"
            time.sleep(0.05)


def test_a_task_that_finished_stays_success_when_its_value_had_not_come_home(
    tmp_path, no_leaked_processes
):
    # The runner waits for b's length (to map over it) when the scheduler
    # dies: a, a reference task, finished but was not fetched yet.
    scheduler, worker, address = _cluster(tmp_path)
    release = tmp_path / "release"
    try:
        with Flow("early") as flow:
            a = inc(1)
            b = hold(2, str(tmp_path / "pids"), str(release))
            c = inc.map(b)
        watch = StateWatch()
        run = FlowRun(flow, executor=DaskExecutor(address=address), listeners=[watch],
                      return_tasks=[a]).start()
        assert watch.reached(b, "Running").wait(PATIENCE), "task b never ran"
        assert watch.reached(a, "Success").wait(PATIENCE)
        os.kill(scheduler.pid, signal.SIGKILL)
        state = run.join(BOUND)
        assert state is not None, f"the run did not end within {BOUND} s of the kill"
        assert isinstance(state, Failed) and address in state.message
        assert isinstance(state.result[a], Success), state.result[a]
        with pytest.raises(ResultNotKeptError, match="lost with the Dask scheduler"):
            state.result[a].result  # noqa: B018 - reading fetches
        assert isinstance(state.result[c], Failed)
    finally:
        release.touch()
        stop(worker)
        stop(scheduler)
