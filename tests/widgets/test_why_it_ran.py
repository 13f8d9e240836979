"""The run view says, live, why each cell runs (first run, code changed, an
input changed, forced) and that the others were reused.

Real notebook-flow runs with the cache on (a diskcache store in a temporary
folder), watched by a real ``RunView``; a cell waits on a gate so its row is
read while it runs.
"""

from __future__ import annotations

import sys
import threading
import types

import pytest

from nbflow import Flow
from nbflow.notebook import cache, register_cell, run_notebook_flow
from nbflow.widgets import RunView

TIMEOUT = 60


@pytest.fixture
def gate(monkeypatch):
    """A module cells import and wait on (not a namespace value: not hashed)."""
    module = types.ModuleType("nbflow_test_gate")
    module.go = threading.Event()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    yield module.go
    module.go.set()


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("NBFLOW_CACHE", "on")
    monkeypatch.setattr(cache, "_settings", cache._Settings(location=str(tmp_path / "c")))
    monkeypatch.setattr(cache, "_memory", {})


def _row(view, name):
    return next(t for t in view.run_state.snapshot().tasks if t.name == name)


def _run_watched(flow, ns, **kwargs):
    """Run the notebook flow in a thread, watched by a RunView; return both."""
    view = RunView(flow)
    out: dict = {}
    thread = threading.Thread(
        target=lambda: out.update(state=run_notebook_flow(ns, flow=flow, listeners=[view],
                                                          **kwargs)), daemon=True)
    thread.start()
    return view, thread, out


def _wait_running(view, name):
    version = 0
    while _row(view, name).state != "Running":
        new = view.run_state.wait(version, timeout=TIMEOUT)
        assert new != version, f"{name} never ran"
        version = new


def _table_shows(view, text):
    """Whether the table widget shows ``text`` now or within the timeout
    (the view redraws it in its own thread).
    """
    seen = threading.Event()

    def handler(change):
        if text in change["new"]:
            seen.set()

    view.table.observe(handler, "value")
    try:
        return text in view.table.value or seen.wait(TIMEOUT)
    finally:
        view.table.unobserve(handler, "value")


def test_run_view_says_why_each_cell_runs_while_it_runs(store, gate):
    flow = Flow("why")
    ns = {"k": 1}
    register_cell("x = k * 10", "load", flow=flow)
    register_cell("import nbflow_test_gate\nnbflow_test_gate.go.wait(60)\ny = x + 1",
                  "fit", flow=flow)
    gate.set()
    view, thread, _ = _run_watched(flow, ns)
    thread.join(TIMEOUT)
    assert _row(view, "load").message == "Ran: first run."
    gate.clear()
    register_cell("import nbflow_test_gate\nnbflow_test_gate.go.wait(60)\ny = x + 2",
                  "fit", flow=flow)
    view, thread, out = _run_watched(flow, ns)
    try:
        _wait_running(view, "fit")
        # while `fit` runs: why it runs, and that `load` was reused
        assert _row(view, "fit").message == "Ran: code changed."
        assert _row(view, "load").state == "Cached"
        assert _row(view, "load").message.startswith("Reused: unchanged")
        assert _table_shows(view, "Ran: code changed.")
    finally:
        gate.set()
        thread.join(TIMEOUT)
    assert out["state"].is_successful() and ns["y"] == 12
    assert _row(view, "fit").message == "Ran: code changed."  # and after it
    # an input read from the namespace, and --fresh
    ns["k"] = 2
    view, thread, _ = _run_watched(flow, ns)
    thread.join(TIMEOUT)
    assert _row(view, "load").message == "Ran: input 'k' changed."
    view, thread, _ = _run_watched(flow, ns, fresh="fit")
    thread.join(TIMEOUT)
    assert _row(view, "fit").message == "Ran: --fresh."
    assert _row(view, "load").state == "Cached"
