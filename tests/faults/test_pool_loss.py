"""A process of ``LocalDaskExecutor("processes")`` killed mid-run: the tasks
on it fail naming the lost process, finished results are kept, the run returns.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
from _faults import PATIENCE, hold, inc, wait_for_file

from nbflow import Flow
from nbflow.executors import LocalDaskExecutor

pytestmark = pytest.mark.slow


def test_killed_pool_process_fails_its_task_and_keeps_finished_results(
    tmp_path, no_leaked_processes
):
    pid_file, release = tmp_path / "pids", tmp_path / "never"
    with Flow("pool-loss") as flow:
        first = inc(1)
        held = hold(first, str(pid_file), str(release))
        after = inc(held)
    killed: list[int] = []

    def kill() -> None:
        pid = int(wait_for_file(pid_file).split()[0])
        killed.append(pid)
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    state = flow.run(executor=LocalDaskExecutor("processes", num_workers=2))
    killer.join(PATIENCE)
    assert killed, "the held task never started"
    assert state.is_failed()
    assert state.result[first].result == 2  # finished before: kept
    message = state.result[held].message
    assert message == (
        f"Task 'hold' failed: the process pool's worker process {killed[0]} "
        "(SIGKILL) died before this task finished (killed, or out of memory), "
        "which broke the pool; tasks that had finished keep their results; "
        "rerun the flow."
    ), message
    assert state.result[after].is_failed()
