"""Shared fixtures: real Dask clusters and real scheduler/worker processes."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Tests that count runs or side effects must not reuse another test's (or an
# earlier session's) stored cell results: the notebook cache is off unless a
# test turns it on (its kernels and subprocesses inherit this).
os.environ["NBFLOW_CACHE"] = "off"

from _processes import dask_cluster_processes, descendants, wait_until_gone  # noqa: E402


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"pytest got signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # scripts/test.sh ends a stuck run with `timeout` (SIGTERM): end it as
    # Ctrl-C does, so the fixtures stop the servers, clusters and browsers
    # they started instead of leaving them behind.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


@pytest.fixture(scope="session")
def dask_cluster():
    """An in-process LocalCluster: two workers, random ports, dashboard on port 0."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=2, processes=False, protocol="tcp://",
        host="127.0.0.1", dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def existing_cluster(tmp_path_factory):
    """Real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1.

    Yields the scheduler address; the processes are stopped by PID afterwards.
    """
    directory = tmp_path_factory.mktemp("existing-cluster")
    with dask_cluster_processes(directory, 2) as (address, _, _):
        yield address


@pytest.fixture
def no_leaked_processes():
    """Fail if the test leaves a process behind that it started."""
    before = descendants()
    yield
    left = wait_until_gone(descendants() - before)
    assert not left, f"processes left behind: {_described(left)}"


def _described(pids: set[int]) -> list[str]:
    """``pid: command line`` of each of ``pids`` (what leaked, to find who)."""
    import psutil

    out = []
    for pid in sorted(pids):
        try:
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:200]}")
        except psutil.Error:
            out.append(f"{pid}: (gone)")
    return out
