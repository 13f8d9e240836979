"""Tasks and helpers shared by the fault tests (pickled by value to workers)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import cloudpickle

from nbflow import task
from nbflow.engine.events import TaskStateChanged

cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: Generous bound for anything a loaded 2-core machine must do "within seconds".
PATIENCE = 60


class StateWatch:
    """A run listener: ``reached(task, "Running")`` is set when the task gets there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[tuple[object, str], threading.Event] = {}

    def reached(self, t: object, state: str) -> threading.Event:
        with self._lock:
            return self._flags.setdefault((t, state), threading.Event())

    def __call__(self, batch: list[object]) -> None:
        for event in batch:
            if isinstance(event, TaskStateChanged):
                self.reached(event.task, event.new.name).set()


def wait_for_file(path: Path, timeout: float = PATIENCE) -> str:
    """Wait until ``path`` exists and has content; return the content."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.02)
    raise TimeoutError(f"{path} was not written within {timeout} s")


@task
def inc(x: int) -> int:
    return x + 1


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(xs: list) -> object:
    return sum(x[0] if isinstance(x, tuple) else x for x in xs)


@task
def spread(x: int) -> list[int]:
    return [x, x + 1]


@task
def hold(x: int, pid_file: str, release: str) -> tuple[int, int]:
    """Append this process's PID to ``pid_file``, wait for ``release`` to exist,
    then return ``(x * 10, pid)``: a task the test can catch while it runs.
    """
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + PATIENCE
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.02)
    return x * 10, os.getpid()


@task
def crash(x: int) -> int:
    """Kill the process running this task, as a segfault would."""
    os.kill(os.getpid(), signal.SIGKILL)
    return x


@task
def hog(megabytes: int, _after: object = None) -> int:
    """Take ``megabytes`` of memory (touched, so it counts) and keep it a while."""
    data = [b"\x01" * (10 << 20) for _ in range(megabytes // 10)]
    time.sleep(PATIENCE)
    return len(data)


@task(timeout=1)
def never_returns(x: int) -> int:
    time.sleep(30)
    return x


@task
def make_lock(x: int) -> threading.Lock:
    return threading.Lock()


@task
def make_generator(n: int):
    return (i for i in range(n))


@task
def type_name(value: object) -> str:
    return type(value).__name__


@task
def tag(x: int, pid_file: str) -> tuple[int, int]:
    """Return ``(x, pid)``, appending this process's PID to ``pid_file``."""
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\n")
    return x, os.getpid()
