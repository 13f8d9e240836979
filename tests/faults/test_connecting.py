"""Connecting to something that is not a working Dask cluster: one line, in
seconds, from Python, the CLI and the panel's Test connection.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest
from _cli import assert_usage_error, run
from _processes import start_scheduler, stop

from nbflow import Flow, task
from nbflow.errors import ClusterConnectionError
from nbflow.executors import DaskExecutor

#: Far below the 100 s a silent port used to hang; generous for a loaded machine.
BOUND = 40

SCRIPT = """
from nbflow import Flow, task

@task
def inc(x):
    return x + 1

with Flow("one") as flow:
    inc(1)
"""


@task
def inc(x):
    return x + 1


def _flow() -> Flow:
    with Flow("one") as flow:
        inc(1)
    return flow


@pytest.fixture
def silent_address():
    """A port that accepts connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"tcp://127.0.0.1:{s.getsockname()[1]}"


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_address():
    """A tiny HTTP server on 127.0.0.1 (as a dashboard port would be)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["silent", "http"])
def not_a_scheduler(request):
    return request.getfixturevalue(f"{request.param}_address")


def _one_line_refusal(address: str, error: BaseException) -> None:
    message = str(error)
    assert "\n" not in message, message
    assert message.startswith(f"Could not connect to the Dask scheduler at {address!r}")
    assert "did not answer as a Dask scheduler" in message, message


def test_not_a_scheduler_is_one_line_within_seconds(not_a_scheduler):
    started = time.monotonic()
    with pytest.raises(ClusterConnectionError) as info:
        _flow().run(executor=DaskExecutor(address=not_a_scheduler))
    assert time.monotonic() - started < BOUND
    _one_line_refusal(not_a_scheduler, info.value)


def test_not_a_scheduler_in_the_cli_is_a_usage_error(not_a_scheduler, tmp_path):
    script = tmp_path / "one.py"
    script.write_text(SCRIPT)
    result = run("run", "-p", script, "--address", not_a_scheduler)
    assert_usage_error(result, "did not answer as a Dask scheduler", started=True)


def test_not_a_scheduler_in_the_panels_test_connection(not_a_scheduler):
    from nbflow.widgets import ExecutorPanel

    panel = ExecutorPanel()
    panel.set(kind="dask", cluster="existing", address=not_a_scheduler)
    future = panel.test_connection(timeout=3)
    with pytest.raises(ClusterConnectionError) as info:
        future.result(timeout=BOUND)
    _one_line_refusal(not_a_scheduler, info.value)
    assert "did not answer as a Dask scheduler" in panel._connection.value


@pytest.fixture
def lonely_scheduler(tmp_path):
    """A real ``dask scheduler`` process that no worker ever joins."""
    proc, address = start_scheduler(tmp_path)
    try:
        yield address
    finally:
        stop(proc)


@pytest.mark.slow
def test_scheduler_without_workers_fails_after_worker_timeout(lonely_scheduler):
    started = time.monotonic()
    executor = DaskExecutor(address=lonely_scheduler, worker_timeout=1)
    said: list[str] = []
    executor.on_starting = said.append
    with pytest.raises(ClusterConnectionError) as info:
        _flow().run(executor=executor)
    assert time.monotonic() - started < BOUND
    assert said == [f"Connected to {lonely_scheduler}: 0 of 1 workers up; waiting up "
                    f"to 1 s for one (`dask worker {lonely_scheduler}`) …"]
    message = str(info.value)
    assert message.startswith(
        f"The Dask scheduler at {lonely_scheduler!r} has no workers and none joined "
        "within 1 s; start one with `dask worker "
    ), message
    assert "worker_timeout=SECONDS" in message


@pytest.mark.slow
def test_scheduler_without_workers_in_the_cli(lonely_scheduler, tmp_path):
    script = tmp_path / "one.py"
    script.write_text(SCRIPT)
    result = run(
        "run", "-p", script, "--address", lonely_scheduler, "--worker-timeout", "1"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("nbflow: error: The Dask scheduler at "), result.stderr
    assert "has no workers and none joined within 1 s" in last
    assert "waiting up to 1 s" in result.stderr  # said while it waited
    assert "0 of 1 workers up" in result.stdout, result.stdout


def test_worker_timeout_is_checked():
    with pytest.raises(ValueError, match=r"worker_timeout must be a number of seconds"):
        DaskExecutor(address="tcp://127.0.0.1:8786", worker_timeout=-1)
    assert "worker_timeout=None" in repr(
        DaskExecutor(address="tcp://127.0.0.1:8786", worker_timeout=None)
    )


def test_in_process_scheduler_address_is_accepted():
    from distributed import Client

    with Flow("inproc") as flow:
        result = inc(1)
    # dashboard_address=None still starts the scheduler's HTTP server, on the
    # default port 8787: under load another test's cluster may hold it.
    with Client(processes=False, dashboard_address="127.0.0.1:0") as client:
        address = client.scheduler.address
        assert address.startswith("inproc://")
        state = flow.run(executor=DaskExecutor(address=address))
    assert state.is_successful(), state.message
    assert state.result[result].result == 2
