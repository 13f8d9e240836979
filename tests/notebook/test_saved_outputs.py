"""A notebook saved after its runs shows them without a kernel: the run views
and the executor panels are static HTML once they are done (no widget left to
be "not found" when it is reopened), in the .ipynb and in nbconvert's HTML."""

from __future__ import annotations

import json

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

WIDGET = "application/vnd.jupyter.widget-view+json"
CELLS = [
    "%load_ext nbflow",
    'panel = %flow panel\npanel.set(kind="local-dask", scheduler="threads", num_workers=2)'
    "\npanel",
    "%%flowtask load\nxs = list(range(6))",
    "%%flowtask square --map xs\nif xs == 4:\n    raise ValueError(f'bad {xs}')\nsq = xs * xs",
    "%flow run",
    "run = %flow run --background",
    "print(run.join(60).name)",
]


def test_saved_notebook_has_static_runs_and_panel_and_converts_to_html(tmp_path):
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells:
        for out in cell.outputs:
            assert WIDGET not in out.get("data", {}), (cell.source, out)
    panel = json.dumps(nb.cells[1].outputs)
    assert "nbflow-executor-panel nbflow-static" in panel
    assert "LocalDaskExecutor(scheduler=\\\"threads\\\", num_workers=2)" in panel.replace(
        "&quot;", '\\"')
    for index in (4, 5):  # the blocking run and the background one, as they ended
        (page,) = [o["data"]["text/html"] for o in nb.cells[index].outputs
                   if "nbflow-run-view" in o.get("data", {}).get("text/html", "")]
        assert 'nbflow-flow-state nbflow-state-failed">Failed<' in page, page
        assert "square[4] failed: ValueError: bad 4" in page
        assert "Executor: <code>LocalDaskExecutor(scheduler=&#x27;threads&#x27;, " in page
        assert "nbflow-timeline-static" in page
    assert "Failed" in "".join(o.get("text", "") for o in nb.cells[6].outputs)

    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    assert body.count('class="nbflow-run-view nbflow-static"') == 2
    assert "nbflow-executor-panel nbflow-static" in body
    assert f'<script type="{WIDGET}">' not in body  # no widget view to render
