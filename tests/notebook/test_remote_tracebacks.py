"""A helper defined in an ordinary cell and failing in another process shows its
own source line in the cell's traceback (README's promise), in a real kernel."""

from __future__ import annotations

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

CELLS = [
    "%load_ext nbflow\nfrom nbflow.executors import LocalDaskExecutor\n"
    "from nbflow.notebook import current_flow\n"
    "current_flow().executor = LocalDaskExecutor(scheduler='processes', num_workers=1)",
    "def helper(x):\n    y = x * 2\n    raise ValueError(f'helper says no to {y}')",
    "%%flowtask boom\nvalue = helper(21)",
    "%flow run",
]


def test_helper_from_an_ordinary_cell_shows_its_source_line_from_a_process(tmp_path):
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    (error,) = [o for o in nb.cells[3].outputs if o["output_type"] == "error"]
    traceback = "\n".join(error["traceback"])
    assert "raise ValueError(f'helper says no to {y}')" in traceback, traceback
    assert "<dynamic-code>" not in traceback, traceback
    html = "".join(o.get("data", {}).get("text/html", "") for o in nb.cells[3].outputs)
    assert "helper says no to {y}" in html and "&lt;dynamic-code&gt;" not in html
