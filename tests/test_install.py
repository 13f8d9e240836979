"""From nothing to a live notebook: the README's set-up commands, read out of
README.md and run exactly as written in a copy of the repository (tracked files
only), in a fresh virtual environment; then the ``lab`` extra, and JupyterLab
serving the notebooks on 127.0.0.1.

Needs the package index; pip's cache makes it quick:
``python -m pytest tests/test_install.py -m install``.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from _processes import descendants, stop, wait_until_gone
from _venv import REPO, clean_env, copy_repo, run_ok

pytestmark = [pytest.mark.slow, pytest.mark.install, pytest.mark.timeout(900)]

#: Seconds for an install: about 20 s on a warm pip cache, minutes on a cold one.
INSTALL_TIMEOUT = 600
TOKEN = "nbflow-install-test"


def readme_blocks(heading: str) -> list[list[str]]:
    """The code blocks of README.md's section ``heading`` (up to the next
    heading of any level), each as its lines.
    """
    blocks: list[list[str]] = []
    inside = fenced = False
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            if inside and fenced:
                blocks.append([])
            continue
        if fenced:
            if inside:
                blocks[-1].append(line)
        elif line.startswith("#"):
            if inside:
                break
            inside = line.lstrip("#").strip() == heading
    assert blocks, f"README.md has no code under a heading {heading!r}"
    return blocks


@dataclass
class Installed:
    """A copy of the repository in which the README's first command ran."""

    repo: Path
    env: dict[str, str]
    done: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def python(self) -> str:
        return str(self.repo / ".venv" / "bin" / "python")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    blocks = readme_blocks("Set up")
    assert len(blocks) == 2, f"the README's set-up has {len(blocks)} commands, not 2"
    assert blocks[1] == ["bash scripts/test.sh"], blocks[1]
    assert len(blocks[0]) == 1, blocks[0]
    repo = tmp_path_factory.mktemp("readme") / "repo"
    copy_repo(repo)
    env = clean_env()
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", blocks[0][0]], cwd=repo, env=env, capture_output=True,
        text=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    print(f"README's first command: {seconds:.0f} s")
    return Installed(repo, env, done, seconds)


def test_readme_first_command_runs_the_quickstart_notebook(installed):
    done = installed.done
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout
    assert "Running flow '01-quickstart' on LocalExecutor()\n" in out
    assert "[total] 10 squares added up\n" in out
    assert "total=385" in out
    assert out.rstrip().splitlines()[-1].startswith("Flow '01-quickstart': Success in ")
    assert "\x1b[" not in out + done.stderr  # plain text when not on a terminal
    assert "Traceback" not in out + done.stderr

    # The venv has jupyter-nbflow, importing nbflow from the copy, and the
    # command says its version.
    facts = run_ok(
        [installed.python, "-c",
         "import importlib.metadata as m, nbflow; "
         "print(m.version('jupyter-nbflow'), nbflow.__file__)"],
        cwd=installed.repo, env=installed.env, timeout=120,
    ).split()
    assert Path(facts[1]).is_relative_to(installed.repo / "nbflow"), facts
    version = run_ok([str(installed.repo / ".venv" / "bin" / "nbflow"), "--version"],
                     cwd=installed.repo, env=installed.env, timeout=120)
    assert version == f"nbflow {facts[0]}\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(port: int, path: str, method: str = "GET", body: object = None) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = response.read()
    return json.loads(data) if data else None


def test_lab_extra_serves_the_notebooks_and_opens_one(installed, tmp_path):
    assert installed.done.returncode == 0, installed.done.stderr[-3000:]
    (install, lab), *_ = readme_blocks("Opening the notebooks")
    run_ok(["bash", "-c", install], cwd=installed.repo, env=installed.env,
           timeout=INSTALL_TIMEOUT)

    # The README's `jupyter lab notebooks/`, headless on a free loopback port,
    # with its own config and runtime folders.
    port = _free_port()
    env = {**installed.env, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    argv = [*shlex.split(lab), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
            "--allow-root", "--LabApp.extension_manager=readonly"]
    before = descendants()
    with open(tmp_path / "lab.log", "wb") as log:
        server = subprocess.Popen(argv, cwd=installed.repo, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            try:
                _api(port, "/api/status")
                break
            except OSError:
                # Polling a server that is starting: nothing to wait on.
                assert time.monotonic() < deadline, "jupyter lab did not answer"
                time.sleep(0.2)

        listing = _api(port, "/api/contents")
        assert isinstance(listing, dict)
        assert "01-quickstart.ipynb" in {item["name"] for item in listing["content"]}
        notebook = _api(port, "/api/contents/01-quickstart.ipynb")
        assert isinstance(notebook, dict) and notebook["type"] == "notebook"
        sources = [cell["source"] for cell in notebook["content"]["cells"]]
        assert "%load_ext nbflow" in sources
        # The widgets' renderer is there for the panel and the live view.
        extensions = json.dumps(_api(port, "/lab/api/extensions"))
        assert "@jupyter-widgets/jupyterlab-manager" in extensions

        # Opening the notebook as JupyterLab does: a session with a kernel of
        # the new environment.
        session = _api(port, "/api/sessions", "POST", {
            "path": "01-quickstart.ipynb", "type": "notebook",
            "name": "01-quickstart.ipynb", "kernel": {"name": "python3"}})
        assert isinstance(session, dict)
        kernel_pids = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
        deadline = time.monotonic() + 60
        while not kernel_pids:
            assert time.monotonic() < deadline, "no kernel process started"
            time.sleep(0.2)
            kernel_pids = {p.pid for p in
                           psutil.Process(server.pid).children(recursive=True)}
        kernels = [psutil.Process(pid).cmdline() for pid in kernel_pids]
        venv = str(installed.repo / ".venv" / "bin")
        assert any(cmd[0].startswith(venv) for cmd in kernels), kernels
        _api(port, f"/api/sessions/{session['id']}", "DELETE")
        assert not wait_until_gone(kernel_pids, timeout=60)
    finally:
        try:
            _api(port, "/api/shutdown", "POST")
            server.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            stop(server)
    assert not wait_until_gone(descendants() - before), "processes left behind"
