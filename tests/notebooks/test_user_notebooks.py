"""Every notebook of ``notebooks/`` runs top to bottom in a real kernel and shows
what it teaches (see ``_nbrun.CHECKS``); the committed files are clean."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("nbclient")

from _nbrun import CHECKS, NAMES, NOTEBOOKS, execute  # noqa: E402


def test_notebooks_each_have_a_check():
    assert NAMES == sorted(CHECKS), "add a check to tests/notebooks/_nbrun.py"


def test_notebooks_are_generated_and_have_no_outputs():
    done = subprocess.run([sys.executable, str(NOTEBOOKS / "_make.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    import nbformat

    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
        assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_shows_its_results(name, tmp_path):
    nb = execute(NOTEBOOKS / name, tmp_path)
    CHECKS[name](nb, tmp_path)
