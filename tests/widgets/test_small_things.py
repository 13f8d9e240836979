"""The small things a person notices: no dead Cancel button on a blocking run,
a headline without Prefect's jargon, the notebook's name, retries shown, the
report path offered, placeholders not cut."""

from __future__ import annotations

import datetime
import html
import itertools

from nbflow import Flow, task
from nbflow.engine.runner import FlowRun
from nbflow.notebook.flow import notebook_name
from nbflow.widgets import ExecutorPanel, RunView


def _boom(x):
    raise ValueError(f"boom {x}")


def _inc(x):
    return x + 1


def test_a_blocking_run_shows_how_to_cancel_instead_of_a_dead_button():
    inc = task(name="inc")(_inc)
    with Flow("f") as flow:
        inc(1)
    view = RunView(flow)
    run = FlowRun(flow, listeners=[view])
    view.attach(run, cancellable=False)
    assert view.cancel_button.layout.display == "none"
    assert view.interrupt_hint.layout.display is None  # shown while it runs
    assert "interrupt the kernel" in view.interrupt_hint.value
    run.run()
    assert view.interrupt_hint.layout.display == "none"
    background = RunView(flow)
    background.attach(FlowRun(flow, listeners=[background]), cancellable=True)
    assert background.cancel_button.layout.display is None
    assert background.interrupt_hint.layout.display == "none"


def test_headline_names_the_failed_task_in_plain_words():
    boom, inc = task(name="boom")(_boom), task(name="inc")(_inc)
    with Flow("f") as flow:
        inc(boom(1))
    view = RunView(flow)
    flow.run(listeners=[view])
    assert "'boom' failed; 1 task after it did not run." in html.unescape(view.header.value)
    assert "· 1 failed · 1 not run" in view.progress_label.value
    assert "reference tasks" not in view.header.value
    with Flow("ok") as flow:
        inc(1)
    view = RunView(flow)
    flow.run(listeners=[view])
    assert "reference tasks" not in view.header.value


def test_the_flow_is_named_after_the_notebook(monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/work/01-quickstart.ipynb")
    assert notebook_name() == "01-quickstart"
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert notebook_name() is None


def test_retries_are_shown_as_attempts():
    calls = itertools.count()

    def flaky():
        if next(calls) < 2:
            raise RuntimeError("not yet")
        return 1

    flaky_task = task(name="flaky", max_retries=2,
                      retry_delay=datetime.timedelta(0))(flaky)
    with Flow("f") as flow:
        flaky_task()
    view = RunView(flow)
    assert flow.run(listeners=[view]).is_successful()
    assert '<span class="nbflow-attempts">· 3 attempts</span>' in view.table.value


def test_ticking_the_report_offers_a_path_and_placeholders_fit():
    panel = ExecutorPanel()
    panel.set(kind="dask")
    panel.controls["performance_report"].value = True
    assert panel.controls["performance_report_path"].value == "dask-report.html"
    assert panel.problem is None and panel.config.performance_report_path == "dask-report.html"
    assert panel.controls["n_workers"].layout.width == "380px"


def test_every_bad_field_of_the_panel_is_shown_not_only_the_first():
    panel = ExecutorPanel()
    panel.set(kind="dask", cluster="temporary")
    panel.controls["n_workers"].value = "two"
    panel.controls["threads_per_worker"].value = "many"
    assert "'two'" in panel.problem and "'many'" in panel.problem, panel.problem
    assert "'two'" in panel._message.value and "'many'" in panel._message.value
