"""Fresh environments built from the repository alone, for the install and
Binder tests: a copy of the repository as a clone has it, an environment that
sees none of the test environment, and a command that must succeed.

pip's own cache (``~/.cache/pip``) is left on, so a warm cache makes these quick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_repo(dest: Path) -> None:
    """The repository's files (tracked and new, not ignored), as a clone has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
        capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def clean_env(venv: Path | None = None) -> dict[str, str]:
    """The environment less the test environment's venv, Python and Jupyter
    variables; ``venv``'s ``bin`` first on ``PATH`` if given.
    """
    ours = Path(sys.prefix) / "bin"
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and Path(p) != ours]
    if venv is not None:
        path.insert(0, str(venv / "bin"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV", "IPYTHON"))}
    return {**env, "PATH": os.pathsep.join(path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run_ok(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run ``args``; fail the test unless it exits 0; return stdout and stderr."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout + done.stderr
