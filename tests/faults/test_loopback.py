"""Nothing nbflow starts listens beyond loopback, and nothing is left after."""

from __future__ import annotations

import os

import psutil
import pytest
from _faults import PATIENCE, StateWatch, hold
from _processes import descendants, wait_until_gone

from nbflow import Flow
from nbflow.engine.runner import FlowRun
from nbflow.executors import DaskExecutor, LocalDaskExecutor

pytestmark = pytest.mark.slow

LOOPBACK = {"127.0.0.1", "::1"}


def _listening(pids: set[int]) -> set[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket of ``pids``."""
    found = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found |= {(pid, c.laddr.ip, c.laddr.port) for c in conns
                  if c.status == psutil.CONN_LISTEN}
    return found


def test_temporary_cluster_listens_on_loopback_only(tmp_path, no_leaked_processes):
    me = os.getpid()
    before = _listening({me})
    before_children = descendants()
    pid_file, release = tmp_path / "pids", tmp_path / "release"
    with Flow("loopback") as flow:
        held = hold(1, str(pid_file), str(release))
    watch = StateWatch()
    run = FlowRun(flow, executor=DaskExecutor(), listeners=[watch]).start()
    try:
        assert watch.reached(held, "Running").wait(PATIENCE), "the task never ran"
        started = descendants() - before_children
        sockets = _listening({me} | started) - before
    finally:
        release.touch()
        state = run.join(PATIENCE)
    assert state is not None and state.is_successful(), state
    # the scheduler and its dashboard (in this process), nannies and workers
    assert started, "the temporary cluster started no process"
    assert {pid for pid, _, _ in sockets} >= started | {me}, sockets
    outside = {s for s in sockets if s[1] not in LOOPBACK}
    assert not outside, f"listening beyond loopback: {sorted(outside)}"
    # all gone after the run: the processes, and this process's listeners
    assert not wait_until_gone(started), "cluster processes left behind"
    assert not (_listening({me}) - before), "a listener of this process was left open"


def _one() -> int:
    return 1


MODES = {
    "in-process": lambda: DaskExecutor(cluster_kwargs={"processes": False}),
    "in-process-tcp": lambda: DaskExecutor(
        cluster_kwargs={"processes": False, "protocol": "tcp://", "n_workers": 1}),
    "processes": lambda: DaskExecutor(cluster_kwargs={"n_workers": 1}),
    "adaptive": lambda: DaskExecutor(
        cluster_kwargs={"n_workers": 0}, adapt_kwargs={"minimum": 1, "maximum": 1}),
    "cluster-class": lambda: DaskExecutor(
        cluster_class="distributed.LocalCluster", cluster_kwargs={"n_workers": 1}),
    "local-dask-processes": lambda: LocalDaskExecutor("processes", num_workers=1),
    "local-dask-threads": lambda: LocalDaskExecutor("threads", num_workers=1),
}


@pytest.mark.parametrize("mode", MODES)
def test_every_cluster_mode_listens_on_loopback_only(mode, no_leaked_processes):
    me = os.getpid()
    before = _listening({me})
    before_children = descendants()
    executor = MODES[mode]()
    with executor.start():
        assert executor.wait(executor.submit(_one)) == 1
        started = descendants() - before_children
        sockets = _listening({me} | started) - before
    outside = {s for s in sockets if s[1] not in LOOPBACK}
    assert not outside, f"{mode}: listening beyond loopback: {sorted(outside)}"
