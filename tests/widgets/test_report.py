"""Reports after a run: Dask's performance report inline, our Bokeh run timeline."""

from __future__ import annotations

import html
import re

import pytest

from nbflow import Flow, task
from nbflow.executors import DaskExecutor, LocalDaskExecutor
from nbflow.widgets import RunState, RunView, render_report, render_timeline
from nbflow.widgets.report import NoReportError, embed_html, report_html, timeline_html

FRAME = '<iframe class="nbflow-report-frame" sandbox="allow-scripts"'


def _double(x):
    return 2 * x


def _total(xs):
    return sum(xs)


double = task(name="double")(_double)
total = task(name="total")(_total)


def small_flow():
    with Flow("report-me") as flow:
        total(double.map(range(5)))
    return flow


def srcdoc(page):
    """The document inside the (only) iframe of ``page``."""
    (escaped,) = re.findall(r'srcdoc="([^"]*)"', page)
    return html.unescape(escaped)


def test_embed_html_sandboxes_and_escapes_the_document():
    document = (
        '<html><body><p title="a &amp; b">x</p><script>1 < 2</script></body></html>'
    )
    page = embed_html(document, path="out/report.html")
    assert page.startswith('<div class="nbflow-report">') and page.endswith("</div>")
    assert FRAME in page
    assert "<script>" not in page  # only inside the escaped srcdoc
    assert srcdoc(page) == document
    assert '<a class="nbflow-report-link" href="out/report.html"' in page


def test_report_html_needs_a_report():
    with pytest.raises(NoReportError, match="performance_report_path"):
        report_html(DaskExecutor())
    with pytest.raises(ValueError):
        report_html("")


def test_timeline_draws_offline_with_bokeh_inline():
    run_state = RunState()
    flow = small_flow()
    flow.run(executor=LocalDaskExecutor(num_workers=2), listeners=[run_state])
    page = timeline_html(run_state.snapshot())
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert "Bokeh" in page and len(page) > 200_000  # BokehJS itself is in the page
    assert not re.search(r"<script[^>]*\bsrc=", page), "no external script"
    assert "cdn.bokeh.org/bokeh" not in page.split("</head>")[0]
    assert '"double"' in page and '"total"' in page
    assert "children" in page  # the mapped task's row says how many
    # the second plot: one row per thread of the pool, a bar per task run there
    assert "Where the tasks ran" in page
    assert re.search(r'"nbflow-dask-[01]"', page)
    widget = render_timeline(run_state.snapshot())
    assert (
        FRAME in widget.value
        and 'class="nbflow-report nbflow-timeline"' in widget.value
    )
    inner = srcdoc(widget.value)
    assert "Bokeh" in inner and '"double"' in inner


@pytest.mark.slow
def test_run_view_shows_the_dask_performance_report_inline(
    tmp_path, no_leaked_processes
):
    path = tmp_path / "report.html"
    executor = DaskExecutor(
        cluster_kwargs={"n_workers": 1, "threads_per_worker": 2, "processes": False},
        performance_report_path=str(path),
    )
    flow = small_flow()
    view = RunView(flow, executor=executor)
    state = flow.run(executor=executor, listeners=[view])
    assert state.is_successful()
    assert path.exists() and executor.performance_report
    (widget,) = view.report_area.children
    page = widget.value
    assert FRAME in page
    document = srcdoc(page)
    assert document == executor.performance_report
    assert "Dask Performance Report" in document and "Bokeh" in document
    assert not re.search(r"<script[^>]*\bsrc=", document), "the report draws offline"
    assert f'href="{path}"' in page or 'class="nbflow-report-link"' in page
    assert render_report(executor).value == page
    snapshot = view.run_state.snapshot()
    assert snapshot.dashboard_link and snapshot.dashboard_link.startswith("http")
    # its temporary cluster is gone: the dashboard is named, no longer linked
    assert "Dask dashboard (closed with its cluster)" in view.header.value


def test_timeline_rows_are_the_bars_without_bokeh():
    from nbflow.widgets.report import timeline_rows

    run_state = RunState()
    small_flow().run(executor=LocalDaskExecutor(num_workers=2), listeners=[run_state])
    rows = timeline_rows(run_state.snapshot())
    bars = list(zip(rows["task"], rows["height"], rows["what"]))
    assert ("double", 0.7, "5 children") in bars and ("total", 0.7, "task") in bars
    children = sorted(w for t, h, w in bars if t == "double" and h == 0.3)
    assert children == [f"child {i}" for i in range(5)]
    assert all(0 <= left <= right for left, right in zip(rows["left"], rows["right"]))
    assert {w for t, w in zip(rows["task"], rows["where"]) if t == "total"} != {""}
