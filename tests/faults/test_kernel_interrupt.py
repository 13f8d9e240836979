"""A kernel interrupt during ``%flow run``, on every executor, in a real kernel.

The kernel is a real ``python3`` kernel started through ``jupyter_client``. A
notebook flow of a quick cell and a long one (a loop of short sleeps, 60 s in
all) runs with ``%flow run``; once the long cell has touched its marker file the
kernel is interrupted (SIGINT, as the notebook's stop button does). The run must
end Cancelled at once, keep what finished, leave no pool or cluster behind,
leave an existing cluster alone, and the next ``%flow run`` must work.
"""

from __future__ import annotations

import contextlib
import os
import queue
import time
from pathlib import Path

import psutil
import pytest
from _faults import PATIENCE

pytestmark = pytest.mark.slow

#: The interrupted run must answer well before the long cell's 60 s are over.
REPLY_BOUND = 40

#: Children a kernel keeps for its life that nbflow did not start.
_NOT_OURS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")

QUICK = "%%flowtask quick\nquick_value = 41 + 1\nprint('QUICK DONE')"
LONG = (
    "%%flowtask long\n"
    "import pathlib, time\n"
    "pathlib.Path(marker).touch()\n"
    "for _ in range(600):\n"
    "    if pathlib.Path(release).exists():\n"
    "        break\n"
    "    time.sleep(0.1)\n"
    "long_value = quick_value + 1\n"
)
AFTER = "%%flowtask after\nafter_value = quick_value * 2"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One real kernel for the module, with nbflow loaded; shut down after."""
    from jupyter_client.manager import start_new_kernel

    cwd = tmp_path_factory.mktemp("kernel")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))
    try:
        _execute(kc, "%load_ext nbflow")
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _collect(kc, msg_id: str, timeout: float) -> tuple[dict, str]:
    """Wait for the reply to ``msg_id``; return it and the text it output."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no reply from the kernel within {timeout} s")
        try:
            reply = kc.get_shell_msg(timeout=left)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    # the reply comes after the outputs on iopub; read them up to "idle"
    parts: list[str] = []
    while True:
        msg = kc.get_iopub_msg(timeout=PATIENCE)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        kind = msg["msg_type"]
        if kind == "stream":
            parts.append(content["text"])
        elif kind == "error":
            parts.append("\n".join(content["traceback"]))
        elif kind in ("display_data", "execute_result"):
            parts.append(content["data"].get("text/plain", ""))
            parts.append(content["data"].get("text/html", ""))
        elif kind == "status" and content["execution_state"] == "idle":
            break
    return reply["content"], "".join(parts)


def _execute(kc, code: str, timeout: float = PATIENCE * 2) -> str:
    reply, text = _collect(kc, kc.execute(code), timeout)
    assert reply["status"] == "ok", text
    return text


def _pool(pid: int) -> set[int]:
    """The kernel's living descendants that nbflow may have started."""
    alive = set()
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if any(s in " ".join(child.cmdline()) for s in _NOT_OURS):
                continue
            alive.add(child.pid)
    return alive


def _gone(pid: int, before: set[int], timeout: float = 30) -> set[int]:
    """Wait for the kernel's new descendants to exit; return those left."""
    deadline = time.monotonic() + timeout
    while True:
        left = _pool(pid) - before
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _existing_cluster_pids(address: str) -> set[int]:
    """PIDs of the scheduler and workers of the cluster at ``address``."""
    from distributed import Client

    with Client(address, timeout=PATIENCE) as client:
        workers = client.run(os.getpid)
        scheduler = client.run_on_scheduler(os.getpid)
        assert client.submit(lambda x: x + 1, 1, pure=False).result(PATIENCE) == 2
    return {scheduler, *workers.values()}


EXECUTORS = {
    "local": "LocalExecutor()",
    "threads": "LocalDaskExecutor(scheduler='threads', num_workers=2)",
    "processes": "LocalDaskExecutor(scheduler='processes', num_workers=2)",
    "temporary": (
        "DaskExecutor(cluster_kwargs={'n_workers': 2, 'threads_per_worker': 1, "
        "'processes': True, 'dashboard_address': '127.0.0.1:0'})"
    ),
    "existing": "DaskExecutor(address=ADDRESS)",
}


@pytest.mark.parametrize("name", list(EXECUTORS))
def test_interrupt_cancels_run_and_next_run_works(kernel, name, request, tmp_path):
    km, kc = kernel
    address = (
        request.getfixturevalue("existing_cluster") if name == "existing" else None
    )
    cluster = _existing_cluster_pids(address) if address else set()
    marker, release = tmp_path / "long-started", tmp_path / "release"
    executor = EXECUTORS[name].replace("ADDRESS", repr(address))
    _execute(
        kc,
        (
            "%flow reset\n"
            "from nbflow.executors import LocalExecutor, LocalDaskExecutor, DaskExecutor\n"
            "from nbflow.notebook import current_flow\n"
            f"current_flow().executor = {executor}\n"
            f"marker, release = {str(marker)!r}, {str(release)!r}\n"
            "for name in ('quick_value', 'long_value', 'after_value'):\n"
            "    globals().pop(name, None)\n"
        ),
    )
    for cell in (QUICK, LONG):
        _execute(kc, cell)
    kernel_pid = km.provisioner.process.pid
    before = _pool(kernel_pid)

    msg_id = kc.execute("%flow run")
    try:
        _wait_for_marker(marker)
        km.interrupt_kernel()
        reply, text = _collect(kc, msg_id, REPLY_BOUND)
    finally:
        release.touch()  # a task no one can kill (a thread, a Dask worker) ends now
    assert reply["status"] == "ok", text
    # the magic prints the message of the flow's state only when it is Cancelled
    assert "Flow run was cancelled; 1 of 2 tasks had succeeded." in text, text
    assert "[quick] QUICK DONE" in text, text
    # the finished cell's result is in the namespace, the long one's is not
    check = _execute(kc, "print('VALUES', quick_value, 'long_value' in globals())")
    assert "VALUES 42 False" in check, check
    # no pool, no temporary cluster left in the kernel
    assert not _gone(kernel_pid, before), f"{name}: processes left in the kernel"
    # an existing cluster is untouched: the same processes, and it still computes
    if address:
        assert _existing_cluster_pids(address) == cluster

    # the next %flow run in the same kernel works
    _execute(kc, AFTER)
    text = _execute(kc, "%flow run\nprint('AFTER', after_value, long_value)")
    assert "AFTER 84 43" in text, text
    assert not _gone(kernel_pid, before), f"{name}: processes left after the next run"


def _wait_for_marker(path: Path) -> None:
    """Wait for the long cell's marker file (it touches it empty)."""
    deadline = time.monotonic() + PATIENCE
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not created within {PATIENCE} s")
        time.sleep(0.02)
