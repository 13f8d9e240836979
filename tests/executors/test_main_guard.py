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


def _python(tmp_path, run: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(run=run))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=150,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


@pytest.mark.parametrize("kind", EXECUTORS)
def test_unguarded_script_is_told_what_to_do(tmp_path, kind):
    result = _python(tmp_path, f"state = flow.run(executor={EXECUTORS[kind]})")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith(
        "starts worker processes, which import 'job.py' again, and its line 11 "
        'runs the flow at module level; put the code that runs the flow under '
        '`if __name__ == "__main__":`.'
    ), result.stderr
    assert len(result.stderr.splitlines()) < 30, result.stderr  # was 129-510
    assert "BrokenProcessPool" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", EXECUTORS)
def test_guarded_script_runs(tmp_path, kind):
    result = _python(
        tmp_path,
        f'if __name__ == "__main__":\n    print(flow.run(executor={EXECUTORS[kind]}))',
    )
    assert result.returncode == 0, result.stderr
    assert "<Success" in result.stdout
