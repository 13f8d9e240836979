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
