"""Big flows fit the output: the live table folds (only what is shown is sent),
the graph scrolls instead of being cut, and a 1,000-task live view stays under
100 KB/s of widget traffic; the saved snapshot keeps every row."""

from __future__ import annotations

import time

from nbflow import Flow, task
from nbflow.widgets import RunView
from nbflow.widgets.run_html import FOLD


def _work(x):
    time.sleep(0.003)
    return x


def test_a_1000_task_live_view_folds_its_table_and_stays_under_100_kb_per_s():
    work = task(name="work")(_work)
    with Flow("big") as flow:
        for i in range(1000):
            work(i)
    view = RunView(flow)
    sent = []
    for widget in (view.header, view.table, view.graph, view.progress_label):
        widget.observe(lambda change: sent.append(len(change["new"])), names="value")
    started = time.monotonic()
    assert flow.run(listeners=[view]).is_successful()
    seconds = time.monotonic() - started
    rate = sum(sent) / seconds
    print(f"{sum(sent):,} bytes in {seconds:.1f} s: {rate / 1e3:.0f} KB/s")
    assert rate < 100_000, rate
    live = view.table.value
    assert live.count('<tr class="nbflow-task') == FOLD
    assert "980 more tasks: 980 Success" in live
    page = view.html()
    assert page.count('<tr class="nbflow-task') == 1000  # saved: every row, folded
    assert '<details class="nbflow-folded"><summary>980 more tasks' in page


def test_the_graph_scrolls_rather_than_being_cut():
    work = task(name="work")(_work)
    with Flow("wide") as flow:
        previous = work(0)
        for _ in range(1, 30):
            previous = work(previous)
    view = RunView(flow)
    assert view.graph.layout.overflow == "auto" and view.graph.layout.max_width == "100%"
    flow.run(listeners=[view])
    assert '<div class="nbflow-graph-box"><img class="nbflow-graph-img"' in view.html()
