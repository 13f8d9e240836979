"""A script that runs a flow on worker processes at module level, without
``if __name__ == "__main__":``, is told so in one line (it used to print
hundreds of lines of multiprocessing tracebacks)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
from nbflow import Flow, task
from nbflow.executors import DaskExecutor, LocalDaskExecutor

@task
def inc(x):
    return x + 1

with Flow("f") as flow:
    inc(1)
{run}
"""

EXECUTORS = {
    "processes": 'LocalDaskExecutor("processes", num_workers=1)',
    "cluster": 'DaskExecutor(cluster_kwargs={"n_workers": 1})',
}


def _python(tmp_path, run: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(run=run))
    return subprocess.run(
        [sys.executable, *(args or [str(script)])], capture_output=True, text=True,
        timeout=150, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _told(stderr: str, executor: str, line: int) -> None:
    """The whole of stderr is the error's one line, which names the fix."""
    assert stderr.strip() == (
        f"MainGuardError: {executor} starts worker processes, which import "
        f"'job.py' again, and its line {line} runs the flow at module level; put "
        'the code that runs the flow under `if __name__ == "__main__":`.'
    ), stderr


@pytest.mark.parametrize("kind", EXECUTORS)
def test_unguarded_script_is_told_what_to_do(tmp_path, kind):
    result = _python(tmp_path, f"state = flow.run(executor={EXECUTORS[kind]})")
    assert result.returncode == 1
    shown = {"processes": "LocalDaskExecutor(scheduler='processes', num_workers=1)",
             "cluster": "DaskExecutor(cluster_kwargs={'n_workers': 1})"}
    _told(result.stderr, shown[kind], 11)  # was 129-510 lines, then 25


def test_unguarded_call_of_a_function_is_told_too(tmp_path):
    # `main()` at module level starts the processes just the same
    run = f"def main():\n    flow.run(executor={EXECUTORS['processes']})\nmain()"
    result = _python(tmp_path, run)
    assert result.returncode == 1
    _told(result.stderr, "LocalDaskExecutor(scheduler='processes', num_workers=1)", 13)


def test_unguarded_error_can_be_caught(tmp_path):
    # only Python's report of an uncaught one is shortened
    run = (
        "from nbflow.errors import MainGuardError\n"
        "try:\n"
        f"    flow.run(executor={EXECUTORS['processes']})\n"
        "except MainGuardError as exc:\n"
        "    print('caught', type(exc).__name__)\n"
        "raise ValueError('after')"
    )
    result = _python(tmp_path, run)
    assert result.stdout == "caught MainGuardError\n"
    assert "Traceback" in result.stderr and "ValueError: after" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", EXECUTORS)
def test_guarded_script_runs(tmp_path, kind):
    result = _python(
        tmp_path,
        f'if __name__ == "__main__":\n    print(flow.run(executor={EXECUTORS[kind]}))',
    )
    assert result.returncode == 0, result.stderr
    assert "<Success" in result.stdout


@pytest.mark.slow
def test_unguarded_script_runs_under_nbflow_run(tmp_path):
    # `nbflow run` loads the file as module `__nbflow__`: new processes import
    # nbflow's command, not the file, so its module-level run works
    result = _python(
        tmp_path, f"print(flow.run(executor={EXECUTORS['processes']}))",
        "-m", "nbflow", "run", "job.py",
    )
    assert result.returncode == 0, result.stderr
    assert "<Success" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
def test_package_run_with_dash_m_is_not_refused(tmp_path):
    # `python -m package` runs package/__main__.py, which new processes do not
    # run again: no guard is needed there
    package = tmp_path / "job"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        SCRIPT.format(run=f"print(flow.run(executor={EXECUTORS['processes']}))")
    )
    result = _python(tmp_path, "", "-m", "job")
    assert result.returncode == 0, result.stderr
    assert "<Success" in result.stdout
