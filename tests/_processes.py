"""Real ``dask scheduler`` / ``dask worker`` processes on 127.0.0.1 for tests.

Started with ``subprocess``, found through a scheduler file, stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

DASK = str(Path(sys.executable).with_name("dask"))


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def start_scheduler(directory: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start ``dask scheduler`` on a free loopback port; return (process, address)."""
    scheduler_file = directory / "scheduler.json"
    log = open(directory / "scheduler.log", "wb")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file),
         *extra],
        stdout=log, stderr=subprocess.STDOUT, cwd=directory,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited: {(directory / 'scheduler.log').read_text()}")
        try:
            return bool(json.loads(scheduler_file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            return False

    _wait_for(ready, 60, "the dask scheduler")
    return proc, json.loads(scheduler_file.read_text())["address"]


def start_worker(directory: Path, address: str, *extra: str, name: str = "w") -> subprocess.Popen:
    """Start one ``dask worker`` process (no nanny unless asked) for ``address``."""
    log = open(directory / f"worker-{name}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
         "--no-dashboard", "--name", name, *extra],
        stdout=log, stderr=subprocess.STDOUT, cwd=directory,
    )


def wait_for_workers(address: str, n: int, timeout: float = 60, **client_kwargs) -> None:
    from distributed import Client

    with Client(address, timeout=timeout, **client_kwargs) as client:
        client.wait_for_workers(n, timeout=timeout)


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a process we started, and everything it started, by PID."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@contextlib.contextmanager
def dask_cluster_processes(directory: Path, n_workers: int = 2, *worker_args: str) -> Iterator[tuple[str, subprocess.Popen, list[subprocess.Popen]]]:
    """A real scheduler and ``n_workers`` worker processes; all stopped after."""
    scheduler, address = start_scheduler(directory)
    workers: list[subprocess.Popen] = []
    try:
        workers = [start_worker(directory, address, *worker_args, name=f"w{i}")
                   for i in range(n_workers)]
        wait_for_workers(address, n_workers)
        yield address, scheduler, workers
    finally:
        for w in workers:
            stop(w)
        stop(scheduler)


#: Helpers the standard library starts once and keeps for the life of the
#: parent process; not started by nbflow, not a leak.
_STDLIB_SINGLETONS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def descendants() -> set[int]:
    """PIDs of every living process this test process started."""
    alive = set()
    for p in psutil.Process(os.getpid()).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            command = " ".join(p.cmdline())
            if any(s in command for s in _STDLIB_SINGLETONS):
                continue
            # The browser tests' Chromium (a session fixture) starts helper
            # processes of its own whenever it likes: not the running test's.
            if command.startswith(_CHROMIUM):
                continue
            alive.add(p.pid)
    return alive


#: Debian's Chromium, which tests/browser drives (its helpers run this binary).
_CHROMIUM = "/usr/lib/chromium/chromium"


def wait_until_gone(pids: set[int], timeout: float = 15) -> set[int]:
    """Wait for ``pids`` to exit; return those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {p for p in left if psutil.pid_exists(p) and
                psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
        time.sleep(0.1)
    return left
