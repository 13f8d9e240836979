"""Fixtures of the fault tests: a cluster of nanny workers with a memory limit."""

from __future__ import annotations

import pytest
from _processes import start_scheduler, start_worker, stop, wait_for_workers

#: Workers restarted by their nanny after a crash or a memory overrun.
NANNY_WORKER_ARGS = ("--nanny", "--memory-limit", "200MB")


@pytest.fixture(scope="session")
def nanny_cluster(tmp_path_factory):
    """A real scheduler that gives up on a task after 2 worker deaths (not 4),
    and two nanny workers of 200 MB each. Yields the scheduler address.
    """
    directory = tmp_path_factory.mktemp("nanny-cluster")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "1")
        scheduler, address = start_scheduler(directory)
    workers = []
    try:
        workers = [start_worker(directory, address, *NANNY_WORKER_ARGS, name=f"n{i}")
                   for i in range(2)]
        wait_for_workers(address, 2)
        yield address
    finally:
        for worker in workers:
            stop(worker)
        stop(scheduler)


@pytest.fixture
def nanny_address(nanny_cluster):
    """The nanny cluster, once both its workers are back (a test may kill them)."""
    wait_for_workers(nanny_cluster, 2, timeout=120)
    return nanny_cluster
