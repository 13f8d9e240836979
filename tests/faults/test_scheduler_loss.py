"""The scheduler of an existing cluster killed mid-run: a quick, clear failure
that keeps what finished, and an executor that works again afterwards.
"""

from __future__ import annotations

import os
import signal
import time

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
