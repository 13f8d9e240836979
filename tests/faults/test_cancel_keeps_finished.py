"""A run cancelled while the client lags behind the scheduler keeps what finished.

On a loaded machine the client hears that a task finished a moment after the
scheduler does, and the task's dependents may already run meanwhile. A Ctrl-C
in that moment (``%flow run`` interrupted once the dependent had started) made
the finished task end Cancelled. Here the lag is made certain: the client's
event loop is held while the first task finishes and its dependent starts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from _faults import PATIENCE

from nbflow.executors import DaskExecutor

pytestmark = pytest.mark.slow


def _wait_for(path: Path, future: object) -> None:
    deadline = time.monotonic() + PATIENCE
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not created in {PATIENCE} s: {future}"
        time.sleep(0.02)


def test_cancel_keeps_a_task_the_client_has_not_heard_finish(existing_cluster, tmp_path):
    started, release = tmp_path / "first-started", tmp_path / "release"
    marker = tmp_path / "second-started"

    # Local functions: pickled by value, the workers cannot import this module.
    def first() -> int:
        started.touch()
        deadline = time.monotonic() + PATIENCE
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return 42

    def second(value: int) -> int:
        marker.touch()
        return value + 1

    executor = DaskExecutor(address=existing_cluster)
    with executor.start():
        one = executor.submit(first)
        two = executor.submit(second, one)
        _wait_for(started, one)  # both are on the scheduler now
        client = executor._client
        held, free = threading.Event(), threading.Event()

        def hold_the_loop() -> None:
            held.set()
            free.wait(PATIENCE)

        client.loop.add_callback(hold_the_loop)
        try:
            assert held.wait(PATIENCE)
            release.touch()
            _wait_for(marker, two)  # the scheduler holds `one`; the client cannot know
            assert one.status == "pending"
            # the loop is let go while the run is being cancelled, not before
            threading.Timer(2.0, free.set).start()
            values = executor.collect_finished([one, two])
        finally:
            free.set()
        assert values[0] == 42
        executor.cancel([one, two])
