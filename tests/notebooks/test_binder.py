"""The Binder environment, built from ``binder/`` only as repo2docker would,
runs every notebook of ``notebooks/`` with nbflow installed from the repository.

Needs PyPI and takes minutes: ``python -m pytest tests/notebooks/test_binder.py -m binder``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")

from _nbrun import CHECKS, NAMES  # noqa: E402
from _venv import clean_env, copy_repo, run_ok  # noqa: E402

#: Seconds for each step: installing the pinned requirements downloads ~150 MB.
INSTALL_TIMEOUT = 900


@pytest.mark.slow
@pytest.mark.binder
@pytest.mark.timeout(1800)
def test_binder_environment_runs_every_notebook(tmp_path):
    repo, venv, out = tmp_path / "repo", tmp_path / "venv", tmp_path / "out"
    copy_repo(repo)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = clean_env(venv)
    python = str(venv / "bin" / "python")

    # repo2docker: install binder/requirements.txt, then run binder/postBuild
    # from the repository's root.
    run_ok([python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"],
           cwd=repo, env=env, timeout=INSTALL_TIMEOUT)
    run_ok([str(repo / "binder" / "postBuild")], cwd=repo, env=env, timeout=INSTALL_TIMEOUT)
    built = time.monotonic()

    # nbflow is installed (not the checkout), the widgets and the proxy are on.
    where = run_ok([python, "-c", "import nbflow; print(nbflow.__file__)"],
                   cwd=tmp_path, env=env, timeout=120)
    assert where.startswith(str(venv)), where
    extensions = run_ok([python, "-m", "jupyter", "server", "extension", "list"],
                        cwd=tmp_path, env=env, timeout=120)
    labextensions = run_ok([python, "-m", "jupyter", "labextension", "list"],
                           cwd=tmp_path, env=env, timeout=120)
    listed = extensions + labextensions
    assert re.search(r"jupyter_server_proxy[^\n]*enabled", listed), listed
    assert re.search(r"jupyterlab [^\n]*enabled", listed), listed
    assert "@jupyter-widgets/jupyterlab-manager" in listed, listed

    # Every notebook, in kernels of the new environment.
    ran = run_ok([python, str(repo / "tests" / "notebooks" / "_nbrun.py"), str(out)],
                 cwd=tmp_path, env=env, timeout=len(NAMES) * 300)
    print(f"binder environment built in {built - started:.0f} s, notebooks run in "
          f"{time.monotonic() - built:.0f} s")
    executable, module = (out / "kernel.txt").read_text().split()
    assert executable.startswith(str(venv)) and module.startswith(str(venv)), (
        executable, module)
    for name in NAMES:
        assert (out / name).exists(), f"{name} failed in the Binder environment: {ran}"
        CHECKS[name](nbformat.read(out / name, as_version=4), out / f"{name}.d")
