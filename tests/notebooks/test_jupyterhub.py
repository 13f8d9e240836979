"""On a JupyterHub (Binder) the Dask dashboard link nbflow shows opens through
jupyter-server-proxy: derived from ``JUPYTERHUB_SERVICE_PREFIX``, and served."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from nbflow import Flow, task
from nbflow.engine.events import FlowStarted
from nbflow.executors import DaskExecutor
from nbflow.executors._dashboard import hub_dashboard_link

PREFIX = "/user/ada/"


@pytest.mark.parametrize(("link", "expected"), [
    ("http://127.0.0.1:8787/status", "/user/ada/proxy/8787/status"),
    ("http://localhost:40123/status", "/user/ada/proxy/40123/status"),
    ("https://[::1]:8787/individual-task-stream?x=1",
     "/user/ada/proxy/8787/individual-task-stream?x=1"),
    ("http://127.0.0.1:8787", "/user/ada/proxy/8787/status"),
    # A remote cluster's dashboard: the proxy cannot reach it.
    ("http://10.0.0.5:8787/status", "http://10.0.0.5:8787/status"),
    # Already made relative by distributed.dashboard.link.
    ("/user/ada/proxy/8787/status", "/user/ada/proxy/8787/status"),
    (None, None),
])
def test_hub_dashboard_link_goes_through_the_proxy(monkeypatch, link, expected):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
    assert hub_dashboard_link(link) == expected


def test_hub_dashboard_link_unchanged_off_a_hub(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert hub_dashboard_link("http://127.0.0.1:8787/status") == (
        "http://127.0.0.1:8787/status")


@task
def one():
    return 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.fixture
def jupyter_server(tmp_path):
    """A Jupyter server with jupyter-server-proxy, at base URL ``PREFIX``."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--ServerApp.base_url={PREFIX}", "--allow-root",
         "--IdentityProvider.token=nbflow-test", f"--ServerApp.root_dir={tmp_path}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _status(f"{base}{PREFIX}api/status?token=nbflow-test") != 200:
            assert proc.poll() is None, "jupyter server exited"
            assert time.monotonic() < deadline, "jupyter server did not start in 120 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _status(url: str) -> int | None:
    try:
        return _get(url, timeout=2)[0]
    except OSError:
        return None


@pytest.mark.slow
def test_dashboard_link_on_a_hub_opens_through_the_proxy(monkeypatch, jupyter_server):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False})
    with executor.start():
        port = urlsplit(executor.client.dashboard_link).port
        link = executor.dashboard_link
        assert link == f"{PREFIX}proxy/{port}/status"
        status, page = _get(f"{jupyter_server}{link}?token=nbflow-test", timeout=60)
    assert status == 200
    assert "Dask" in page and "bokeh" in page.lower()

    # The run view and the terminal progress get it from the FlowStarted event.
    events = []
    with Flow("hub", executor=DaskExecutor(
            cluster_kwargs={"n_workers": 1, "processes": False})) as flow:
        one()
    assert flow.run(listeners=[events.extend]).is_successful()
    started = next(e for e in events if isinstance(e, FlowStarted))
    assert started.dashboard_link.startswith(f"{PREFIX}proxy/")
    assert started.dashboard_link.endswith("/status")


@pytest.mark.slow
def test_dashboard_link_of_an_in_process_cluster_opens(monkeypatch):
    # processes=False: distributed names the machine's address in the link,
    # but nbflow binds the dashboard to 127.0.0.1.
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False})
    with executor.start():
        link = executor.dashboard_link
        assert urlsplit(link).hostname == "127.0.0.1", link
        status, page = _get(link, timeout=60)
    assert status == 200 and "Dask" in page
