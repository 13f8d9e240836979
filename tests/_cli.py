"""Running the ``nbflow`` command in a subprocess, for the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TIMEOUT = 150


def nbflow_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "nbflow", *map(str, args)]


def run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``nbflow ARGS``, without colour, its output captured."""
    return subprocess.run(
        nbflow_cmd(*args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
    )


def assert_usage_error(
    result: subprocess.CompletedProcess[str], *parts: str, started: bool = False
) -> None:
    """Exit status 2, one line on stderr naming each of ``parts``; no flow run
    started unless ``started`` (an error found only once it runs).
    """
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nbflow: error: ")
    for part in parts:
        assert part in lines[0], lines[0]
    if not started:
        assert "Running flow" not in result.stdout
