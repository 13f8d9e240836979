"""The Binder environment, built from ``binder/`` only as repo2docker would,
runs every notebook of ``notebooks/`` with nbflow installed from the repository.

Needs PyPI and takes minutes: ``python -m pytest tests/notebooks/test_binder.py -m binder``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from _nbrun import CHECKS, NAMES  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: Seconds for each step: installing the pinned requirements downloads ~150 MB.
INSTALL_TIMEOUT = 900


def _copy_repo(dest: Path) -> None:
    """The repository's files (tracked and new, not ignored), as repo2docker copies it."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
        capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def _clean_env(venv: Path) -> dict[str, str]:
    """An environment that sees the new venv only (not the test environment's)."""
    ours = Path(sys.prefix) / "bin"
    path = [str(venv / "bin")] + [
        p for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and Path(p) != ours
    ]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV", "IPYTHON"))}
    return {**env, "PATH": os.pathsep.join(path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.binder
@pytest.mark.timeout(1800)
def test_binder_environment_runs_every_notebook(tmp_path):
    repo, venv, out = tmp_path / "repo", tmp_path / "venv", tmp_path / "out"
    _copy_repo(repo)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = _clean_env(venv)
    python = str(venv / "bin" / "python")

    # repo2docker: install binder/requirements.txt, then run binder/postBuild
    # from the repository's root.
    _run([python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"],
         cwd=repo, env=env, timeout=INSTALL_TIMEOUT)
    _run([str(repo / "binder" / "postBuild")], cwd=repo, env=env, timeout=INSTALL_TIMEOUT)
    built = time.monotonic()

    # nbflow is installed (not the checkout), the widgets and the proxy are on.
    where = _run([python, "-c", "import nbflow; print(nbflow.__file__)"],
                 cwd=tmp_path, env=env, timeout=120)
    assert where.startswith(str(venv)), where
    extensions = _run([python, "-m", "jupyter", "server", "extension", "list"],
                      cwd=tmp_path, env=env, timeout=120)
    labextensions = _run([python, "-m", "jupyter", "labextension", "list"],
                         cwd=tmp_path, env=env, timeout=120)
    listed = extensions + labextensions
    assert re.search(r"jupyter_server_proxy[^\n]*enabled", listed), listed
    assert re.search(r"jupyterlab [^\n]*enabled", listed), listed
    assert "@jupyter-widgets/jupyterlab-manager" in listed, listed

    # Every notebook, in kernels of the new environment.
    ran = _run([python, str(repo / "tests" / "notebooks" / "_nbrun.py"), str(out)],
               cwd=tmp_path, env=env, timeout=len(NAMES) * 300)
    print(f"binder environment built in {built - started:.0f} s, notebooks run in "
          f"{time.monotonic() - built:.0f} s")
    executable, module = (out / "kernel.txt").read_text().split()
    assert executable.startswith(str(venv)) and module.startswith(str(venv)), (
        executable, module)
    for name in NAMES:
        assert (out / name).exists(), f"{name} failed in the Binder environment: {ran}"
        CHECKS[name](nbformat.read(out / name, as_version=4), out / f"{name}.d")
