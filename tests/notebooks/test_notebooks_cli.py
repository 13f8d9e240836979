"""Shipped notebooks under ``nbflow run``: they run and leave nothing behind
(notebook 03's 32 temporary CSV files included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["01-quickstart.ipynb", "03-parallel-workload.ipynb"])
def test_notebook_runs_under_nbflow_run_and_leaves_nothing(name, tmp_path):
    temp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    temp.mkdir()
    cwd.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "nbflow", "run", str(NOTEBOOKS / name)],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TMPDIR": str(temp), "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": Success in " in result.stdout.splitlines()[-1], result.stdout
    assert list(temp.iterdir()) == [] and list(cwd.iterdir()) == []


def test_a_notebook_of_several_flows_runs_top_to_bottom_as_in_jupyter(tmp_path):
    """Notebook 05 empties its flow (`%flow reset`) twice: its three flows run
    one after another, each with the variables the cells before it set, as in
    Jupyter (the CLI's one flow left 'attempts' undefined)."""
    temp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    temp.mkdir()
    cwd.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "nbflow", "run",
         str(NOTEBOOKS / "05-failures-retries-cancel.ipynb")],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TMPDIR": str(temp), "NO_COLOR": "1"},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "raised CellFailed: Task 'average' failed: TypeError" in out
    assert "tagged raises-exception" in out
    assert "fetched [1, 2, 3] after 3 attempts" in out
    assert "The flow ended Cancelled: steps {" in out
    assert out.splitlines()[-1].startswith(
        "Notebook '05-failures-retries-cancel' ran to its end: 14 code cells in ")
    assert list(temp.iterdir()) == [] and list(cwd.iterdir()) == []
