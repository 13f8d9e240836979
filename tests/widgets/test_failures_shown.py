"""How failures read: TriggerFailed does not look like Failed, tracebacks start
at the user's cell (no cell-runner frame), the summary's grammar."""

from __future__ import annotations

from nbflow.core.flow import Flow
from nbflow.notebook import failure, register_cell, run_notebook_flow
from nbflow.widgets import RunView


def test_failed_and_trigger_failed_differ_and_tracebacks_start_at_the_cell():
    flow = Flow("notebook")
    register_cell("readings = [12.5, 'n/a']", "readings", flow=flow)
    register_cell("average = sum(readings) / len(readings)", "average", flow=flow)
    register_cell("report = f'{average:.1f}'", "report", flow=flow)
    view = RunView(flow)
    state = run_notebook_flow({}, flow=flow, listeners=[view])
    page = view.html()
    # the rows' dots, coloured by the stylesheet the snapshot carries
    assert '<tr class="nbflow-task nbflow-state-failed" data-task="average">' in page
    assert '<tr class="nbflow-task nbflow-state-trigger-failed" data-task="report">' in page
    assert ".nbflow-state-failed>td>.nbflow-dot{background:#dc3545}" in page
    assert (".nbflow-state-trigger-failed>td>.nbflow-dot{background:transparent;"
            "border:2px solid") in page  # a ring
    # and a mark each, for a page without that stylesheet
    assert '<span class="nbflow-mark">✗ </span><span class="nbflow-task-state">Failed' in page
    node = view.svg().split('<g class="nbflow-node nbflow-state-trigger-failed"')[1]
    assert 'stroke-dasharray="4 2"' in node.split("</g>")[0]
    traceback = page.split('<pre class="nbflow-traceback">')[1].split("</pre>")[0]
    assert traceback.startswith("Traceback (most recent call last):\n  File "
                                "&quot;&lt;flowtask average&gt;&quot;, line 1"), traceback
    assert "runtime.py" not in traceback and "exec(code, env)" not in traceback
    pane = view.errors.children[0].value
    assert "runtime.py" not in pane and "sum(readings)" in pane
    error = failure(state, flow)
    assert error is not None
    assert str(error).endswith(
        "; the outputs of the 1 task that succeeded were written back."), str(error)
