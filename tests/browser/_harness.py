"""Start and stop a JupyterLab server for the browser tests; launch Chromium.

Adapted from ``shared/recipes/browser/harness.py``: ``jupyter lab`` on a free
127.0.0.1 port with a fixed token, ``allow_root`` (CI runs as root) and
throw-away config, runtime, settings and IPython dirs; it is stopped by REST
``/api/shutdown``, then SIGTERM and SIGKILL of its PID, then the descendant
PIDs recorded while it ran (kernels run in their own session, so a
process-group kill would miss them). :func:`chromium` drives Debian's
``/usr/bin/chromium`` with Playwright; :func:`block_external` aborts every
request that does not go to loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "CHROMIUM",
    "Server",
    "block_external",
    "chromium",
    "server",
    "shutdown_kernels",
    "start_server",
    "stop_server",
]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Flags known to work as root, headless, on a machine with no internet.
CHROMIUM_ARGS = [
    "--no-sandbox",  # required as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # otherwise many refused connections
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
]
TOKEN = "nbflow-browser-test-token"
_LOOPBACK = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_settings(settings_dir: Path) -> None:
    """User settings that make JupyterLab deterministic for tests."""
    files = {
        # render every cell (no virtual scrolling): off-screen outputs stay in the DOM
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "windowingMode": "none"
        },
        # never save a notebook behind a test's back (a later test opens it again)
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {
            "autosave": False
        },
        # no news or update checks (no internet; no toast over the page)
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for rel, data in files.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))


@dataclass
class Server:
    """A running ``jupyter lab`` that serves ``root`` (and Notebook 7's pages)."""

    port: int
    root: Path
    proc: subprocess.Popen
    log: Path
    jhome: Path
    token: str = TOKEN
    started_s: float = 0.0
    pids_seen: set = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """``path`` on this server, with the token."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", data: bytes | None = None) -> Any:
        """Call the REST API; return the decoded JSON (or None)."""
        req = urllib.request.Request(
            self.base + path,
            method=method,
            data=data,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            return json.loads(body) if body else None

    def remember_children(self) -> None:
        """Record descendant PIDs (kernels), to stop them by PID at the end."""
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.pids_seen.add((child.pid, child.create_time()))
        except psutil.NoSuchProcess:
            pass

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def start_server(root: Path, timeout: float = 120) -> Server:
    """Start ``jupyter lab`` serving ``root``; return once ``/api/status`` answers."""
    jhome = Path(tempfile.mkdtemp(prefix="nbflow-jhome-"))
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(jhome / "config"),
        JUPYTER_RUNTIME_DIR=str(jhome / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jhome / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jhome / "lab-workspaces"),
        IPYTHONDIR=str(jhome / "ipython"),
        PYTHONUNBUFFERED="1",
    )
    _lab_settings(jhome / "lab-settings")
    port = _free_port()
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
        f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",  # CI runs as root
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp
        "--JupyterNotebookApp.expose_app_in_browser=True",  # same, Notebook 7
        "--LabApp.extension_manager=readonly",  # no PyPI queries
    ]  # fmt: skip
    log = jhome / "lab.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    srv = Server(port, root, proc, log, jhome)
    deadline = t0 + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited rc={proc.returncode}:\n{srv.log_tail()}"
            )
        with contextlib.suppress(OSError):
            srv.api("/api/status")
            break
        if time.monotonic() > deadline:
            stop_server(srv)
            raise TimeoutError(
                f"jupyter lab did not answer in {timeout} s:\n{srv.log_tail()}"
            )
        time.sleep(0.2)  # polling a server that is starting: nothing to wait on
    srv.started_s = time.monotonic() - t0
    return srv


def shutdown_kernels(srv: Server) -> None:
    """Shut down every kernel of the server (between tests: less load)."""
    srv.remember_children()
    with contextlib.suppress(OSError):
        for kernel in srv.api("/api/kernels") or []:
            with contextlib.suppress(OSError):
                srv.api(f"/api/kernels/{kernel['id']}", method="DELETE")


def stop_server(srv: Server, grace: float = 10) -> dict:
    """REST shutdown (kernels too), then SIGTERM/SIGKILL of the server PID and of
    the descendant PIDs recorded; return what happened."""
    srv.remember_children()
    how = "already-dead"
    if srv.proc.poll() is None:
        how = "rest"
        with contextlib.suppress(OSError):
            srv.api("/api/shutdown", method="POST", data=b"")
        try:
            srv.proc.wait(grace)
        except subprocess.TimeoutExpired:
            how = "sigterm"
            srv.proc.send_signal(signal.SIGTERM)
            try:
                srv.proc.wait(grace)
            except subprocess.TimeoutExpired:
                how = "sigkill"
                srv.proc.kill()
                srv.proc.wait(5)
    leftovers = []
    for pid, ctime in srv.pids_seen:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - ctime) > 0.01:
                continue  # the PID was reused by someone else: not ours
            leftovers.append(pid)
            proc.terminate()
            with contextlib.suppress(psutil.TimeoutExpired):
                proc.wait(3)
            if proc.is_running():
                proc.kill()
        except psutil.NoSuchProcess:
            pass
    if os.environ.get("NBFLOW_KEEP_LOGS") != "1":
        shutil.rmtree(srv.jhome, ignore_errors=True)
    return {
        "how": how,
        "rc": srv.proc.returncode,
        "leftover_children_killed": leftovers,
    }


@contextlib.contextmanager
def server(root: Path) -> Iterator[Server]:
    """A JupyterLab server on ``root`` for the duration of the block."""
    srv = start_server(root)
    try:
        yield srv
    finally:
        info = stop_server(srv)
        print(f"[browser] jupyter lab on :{srv.port} stopped: {info}", flush=True)


@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator[Any]:
    """Playwright driving Debian's chromium, with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=headless, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def block_external(target: Any, log: list[str]) -> None:
    """Abort every request of ``target`` (a page or context) not to loopback;
    append the URLs tried to ``log``.

    Requests from a sandboxed (opaque-origin) srcdoc iframe are not routed by
    Playwright; the report test checks that frame's scripts are inline instead.
    """

    def handler(route: Any) -> None:
        url = route.request.url
        if url.startswith(_LOOPBACK):
            route.continue_()
        else:
            log.append(url)
            route.abort()

    target.route("**/*", handler)
