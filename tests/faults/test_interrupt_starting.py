"""Ctrl-C while a temporary cluster is still starting: the run ends Cancelled
and the cluster is gone (it used to be ignored while the cluster started).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from _faults import PATIENCE
from _processes import wait_until_gone

pytestmark = pytest.mark.slow

SCRIPT = """
from nbflow import Flow, task
from nbflow.executors import DaskExecutor

@task
def one():
    return 1

if __name__ == "__main__":
    with Flow("starting") as flow:
        one()
    state = flow.run(executor=DaskExecutor(cluster_kwargs={"n_workers": 2}))
    print("STATE", state.name, state.message, flush=True)
"""


def test_ctrl_c_while_the_cluster_starts_cancels_and_leaves_nothing(tmp_path):
    script = tmp_path / "starting.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own group, as a terminal's job
    )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + PATIENCE
        while not any("spawn_main" in " ".join(p.cmdline())
                      for p in _children(proc.pid, seen)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no worker process was started"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole group
        out, err = proc.communicate(timeout=PATIENCE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "STATE Cancelled Flow run was cancelled" in out, out + err
    assert not wait_until_gone(seen), "cluster processes left behind"


def _children(pid: int, seen: set[int]) -> list[psutil.Process]:
    try:
        found = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    seen.update(p.pid for p in found)
    alive = []
    for p in found:
        try:
            p.cmdline()
            alive.append(p)
        except psutil.Error:
            pass
    return alive
