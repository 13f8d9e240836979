"""``nbflow run -p FILE.py``: the real command line, run as a subprocess."""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from _cli import TIMEOUT, assert_usage_error, nbflow_cmd, run
from _processes import wait_until_gone

import nbflow

ROOT = Path(__file__).resolve().parents[1]

FLOWS = """
from nbflow import Flow, Parameter, task

@task
def numbers(n):
    return list(range(1, n + 1))

@task
def square(x):
    return x * x

@task
def total(values):
    return sum(values)

@task
def describe(word, xs):
    return f"{word.upper()}|{sum(xs)}"

with Flow("sums") as flow:
    n = Parameter("n", default=10)
    result = total(square.map(numbers(n)))

with Flow("words") as words:
    described = describe(Parameter("word", default="hi"), Parameter("xs", default=[1]))

if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run under nbflow run")
"""

FAILING = """
from nbflow import Flow, task

@task
def one():
    return 1

@task
def boom(x):
    raise ValueError(f"bad value {x}")

@task
def after(x):
    return x

with Flow("failing") as flow:
    after(boom(one()))
"""

WHERE = """
import multiprocessing
from nbflow import Flow, task

@task
def where():
    try:
        from distributed import get_worker
        return "worker " + get_worker().address
    except (ImportError, ValueError):
        return "process " + multiprocessing.current_process().name

with Flow("where") as flow:
    where()
"""

SLEEPY = """
import time
from nbflow import Flow, task

@task
def nap(x):
    time.sleep(0.01)
    return x

@task
def sleep_long():
    time.sleep(600)

with Flow("map") as flow:
    nap.map(list(range({size})))

with Flow("hang") as hang:
    sleep_long()
"""






def write(tmp_path: Path, source: str, name: str = "flows.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path




# -- running ------------------------------------------------------------------------


def test_run_prints_each_task_state_and_exits_0(tmp_path):
    path = write(tmp_path, FLOWS)
    result = run("run", "-p", path, "--name", "sums")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Running flow 'sums' on LocalExecutor()")
    assert "numbers  Running" in out
    assert "square   mapped over 10 items" in out
    assert "square   10/10 done" in out
    summary = out[out.index("\n  n ") :]
    assert "  numbers  Success  -> [1, 2, 3, 4, 5, 6, ...]" in summary
    assert "  square   Mapped   10 children" in summary
    assert "  total    Success  -> 385" in summary
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("Flow 'sums': Success in ")
    assert last.endswith(" s  (All reference tasks succeeded.)")
    assert "__main__" not in out + result.stderr


def test_run_quickstart_example_from_the_readme():
    result = run("run", "-p", "examples/quickstart.py", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "total         Success  -> 385" in result.stdout
    assert "Flow 'quickstart': Success" in result.stdout


def test_run_failed_flow_exits_1_with_one_traceback(tmp_path):
    result = run("run", "-p", write(tmp_path, FAILING))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "  boom   Failed         Task 'boom' failed: ValueError: bad value 1" in out
    assert (
        "  after  TriggerFailed  Task 'after' did not run: upstream task 'boom'" in out
    )
    assert out.count("Traceback (most recent call last)") == 1
    assert out.count('raise ValueError(f"bad value {x}")') == 1
    assert "Flow 'failing': Failed" in out


def test_run_params_are_json_when_they_parse_else_strings(tmp_path):
    path = write(tmp_path, FLOWS)
    result = run(
        "run", "-p", path, "-P", "n=3", "--param", "word=hello", "-P", "xs=[1, 2, 3]"
    )
    assert result.returncode == 0, result.stderr
    assert "total    Success  -> 14" in result.stdout
    assert "describe  Success  -> 'HELLO|6'" in result.stdout


def test_run_all_flows_in_file_order_or_one_by_name(tmp_path):
    path = write(tmp_path, FLOWS)
    both = run("run", path)  # FILE also works without -p
    assert both.returncode == 0, both.stderr
    assert both.stdout.index("Running flow 'sums'") < both.stdout.index(
        "Running flow 'words'"
    )
    one = run("run", "-p", path, "--name", "words")
    assert one.returncode == 0, one.stderr
    assert "'sums'" not in one.stdout
    assert "describe  Success  -> 'HI|1'" in one.stdout


def test_run_big_map_prints_counts_not_a_line_per_child(tmp_path):
    path = write(tmp_path, SLEEPY.replace("time.sleep(0.01)", "pass").format(size=3000))
    result = run("run", "-p", path, "--name", "map")
    assert result.returncode == 0, result.stderr
    assert "nap  3000/3000 done" in result.stdout
    assert len(result.stdout.splitlines()) < 30, result.stdout


def test_run_on_a_terminal_redraws_counts_in_place(tmp_path):
    path = write(tmp_path, SLEEPY.format(size=100))
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        nbflow_cmd("run", "-p", path, "--name", "map"), stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=TIMEOUT) == 0
    out = b"".join(chunks).decode()
    assert "\r\x1b[K  nap " in out  # the status line, redrawn
    assert "nap  100/100 done" in out
    assert "\x1b[32mSuccess\x1b[0m" in out  # coloured on a terminal


@pytest.mark.parametrize(
    "executor", [[], ["--executor", "local-dask"]], ids=["local", "local-dask-threads"]
)
def test_run_ctrl_c_cancels_the_run_and_exits_1(tmp_path, executor):
    path = write(tmp_path, SLEEPY.format(size=1))
    proc = subprocess.Popen(
        nbflow_cmd("run", "-p", path, "--name", "hang", *executor),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "sleep_long  Running" in line:
            proc.send_signal(signal.SIGINT)
            break
    # The task sleeps 600 s: the command must end without waiting for it.
    out, err = proc.communicate(timeout=TIMEOUT)
    out = "".join(seen) + out
    assert proc.returncode == 1, out + err
    assert "  sleep_long  Cancelled" in out
    assert "Flow 'hang': Cancelled" in out


@pytest.mark.slow
def test_run_local_dask_processes(tmp_path):
    result = run(
        "run",
        "-p",
        write(tmp_path, WHERE),
        "--executor",
        "local-dask",
        "--scheduler",
        "processes",
        "--num-workers",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert "on LocalDaskExecutor(scheduler='processes', num_workers=2)" in result.stdout
    assert "where  Success  -> 'process " in result.stdout
    assert "-> 'process MainProcess'" not in result.stdout


@pytest.mark.slow
def test_run_dask_temporary_cluster_leaves_no_process(tmp_path):
    cmd = nbflow_cmd(
        "run", "-p", write(tmp_path, WHERE), "--executor", "dask", "--num-workers", "1"
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen, cluster = [], set()
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("Dask dashboard: http://127.0.0.1:"):
            cluster = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    out, err = proc.communicate(timeout=TIMEOUT)
    out = "".join(seen) + out
    assert proc.returncode == 0, out + err
    assert "on DaskExecutor(cluster_kwargs={'n_workers': 1})" in out
    starting = "Starting a temporary Dask cluster (LocalCluster): "
    assert f"{starting}0 of 1 workers up …\n{starting}1 of 1 workers up …\n" in out
    assert "where  Success  -> 'worker tcp://127.0.0.1:" in out
    assert cluster, "the temporary cluster started no process"
    assert not wait_until_gone(cluster)


@pytest.mark.slow
def test_run_existing_cluster_with_performance_report(tmp_path, existing_cluster):
    report = tmp_path / "report.html"
    result = run(
        "run",
        "-p",
        write(tmp_path, WHERE),
        "--address",
        existing_cluster,
        "--report",
        report,
    )
    assert result.returncode == 0, result.stderr
    assert f"on DaskExecutor(address={existing_cluster!r}" in result.stdout
    assert "where  Success  -> 'worker tcp://127.0.0.1:" in result.stdout
    assert "bokeh" in report.read_text(encoding="utf-8")


@pytest.mark.slow
def test_run_unreachable_address_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    result = run("run", "-p", write(tmp_path, WHERE), "--address", address)
    assert_usage_error(
        result, f"Could not connect to the Dask scheduler at {address!r}", started=True
    )


# -- bad usage ------------------------------------------------------------------------

BAD = [
    (["--num-workers", "0"], "--num-workers must be a whole number >= 1, got 0;"),
    (["--num-workers", "x"], "--num-workers must be a whole number >= 1, got 'x';"),
    (["--scheduler", "bogus"], "Unknown scheduler 'bogus'; expected one of"),
    (["--address", "nonsense"], "Malformed scheduler address 'nonsense'"),
    (["--executor", "bogus"], "Unknown executor kind 'bogus'"),
    (
        ["--executor", "local", "--scheduler", "threads"],
        "--scheduler does not apply to --executor local",
    ),
    (["--report", "/no/such/folder/r.html"], "'/no/such/folder/r.html' does not exist"),
    (["-P", "n"], "Malformed --param 'n'; expected NAME=VALUE"),
    (["-P", "m=1"], "Unknown parameter 'm'; the flows have parameters"),
    (["--name", "nope"], "No flow named 'nope' in "),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_run_bad_option_is_one_line_and_exit_2(tmp_path, args, message):
    result = run("run", "-p", write(tmp_path, FLOWS), *args)
    assert_usage_error(result, message)
    assert "Running flow" not in result.stdout


FILES = [
    (None, "does not exist"),
    ("raise RuntimeError('oops')\n", "raised RuntimeError: oops (line 1)"),
    ("x = (\n", "raised SyntaxError"),
    ("x = 1\n", "defines no Flow"),
    (
        "from nbflow import Flow, Parameter\nwith Flow('f') as f:\n    Parameter('n')\n",
        "Parameter 'n' of flow 'f' is required; pass --param n=VALUE.",
    ),
]


@pytest.mark.parametrize(
    "source, message", FILES, ids=["missing", "raises", "syntax", "no-flow", "required"]
)
def test_run_bad_file_is_one_line_and_exit_2(tmp_path, source, message):
    path = tmp_path / "flows.py"
    if source is not None:
        path.write_text(source)
    assert_usage_error(run("run", "-p", path), message)


def test_cli_version_prints_the_version_and_exits_0():
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"nbflow {nbflow.__version__}\n"


def test_cli_without_command_prints_usage_and_exits_2():
    result = run()
    assert result.returncode == 2
    assert "usage: nbflow" in result.stderr


def test_cli_console_script_is_installed():
    script = Path(sys.executable).parent / "nbflow"
    assert script.exists(), f"{script} missing; install nbflow with pip install -e ."
    result = subprocess.run(
        [script, "run", "--help"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0
    assert "--num-workers N" in result.stdout


LONG = """
import time
from nbflow import Flow, task

@task
def long(i):
    time.sleep(120)
    return i

with Flow("term") as flow:
    long.map([1, 2])
"""


@pytest.mark.slow
@pytest.mark.parametrize("executor", [
    ["--executor", "local-dask", "--scheduler", "processes", "--num-workers", "2"],
    ["--executor", "dask", "--num-workers", "2"],
], ids=["processes", "temporary-cluster"])
def test_sigterm_leaves_no_pool_or_cluster_process_behind(tmp_path, executor):
    proc = subprocess.Popen(
        nbflow_cmd("run", "-p", write(tmp_path, LONG), *executor),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:  # until both tasks run in their worker processes
            try:
                children = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            seen.update(c.pid for c in children)
            workers = [c for c in children if _cmdline(c).find("spawn_main") >= 0]
            if len(workers) >= 2:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out + err
    assert "Flow 'term': Cancelled" in out, out + err
    assert not wait_until_gone(seen), "pool or cluster processes left behind"


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""
