"""`%flow run` and `%flow run --background` in a real kernel, through nbclient."""

from __future__ import annotations

import json
import re

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

CELLS = [
    "%load_ext nbflow",
    "%%flowtask load\nxs = list(range(5))",
    "%%flowtask --map xs\nsq = xs * xs",
    "%flow run",
    "print('SQ', sq)",
    # a slow cell, cancelled from code while it runs in the background
    "import os, tempfile\nmarker = os.path.join(tempfile.mkdtemp(), 'started')",
    "%%flowtask slow\nimport pathlib, time\nn = len(sq)\npathlib.Path(marker).touch()\n"
    "for _ in range(600):\n    time.sleep(0.1)\nslow_done = True",
    "del sq\nrun = %flow run --background\nprint('RETURNED', run)",
    "import time\ndeadline = time.time() + 60\n"
    "while not os.path.exists(marker) and time.time() < deadline:\n    time.sleep(0.05)\n"
    "run.cancel()\nstate = run.join(60)\n"
    "print('STATE', state.name, 'SQ', sq, 'SLOW', 'slow_done' in globals())",
]


def _text(cell) -> str:
    # A print can arrive in several stream messages (a busy kernel flushes
    # early): a stream's pieces are joined as they were written.
    parts = ["".join(o["text"] for o in cell.outputs if o.get("output_type") == "stream")]
    for out in cell.outputs:
        for value in out.get("data", {}).values():
            parts.append(value if isinstance(value, str) else json.dumps(value))
    return "\n".join(parts)


def test_flow_run_shows_live_view_and_background_run_cancels(tmp_path):
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    run_cell, after, background, joined = nb.cells[3], nb.cells[4], nb.cells[7], nb.cells[8]
    # the live view was a widget; once the run ended, the output is its final
    # state as HTML alone (reopened, no "model not found")
    kinds = {k for out in run_cell.outputs for k in out.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" not in kinds
    assert "text/html" in kinds
    assert "nbflow-run-view" in _text(run_cell) and "Success" in _text(run_cell)
    assert "SQ [0, 1, 4, 9, 16]" in _text(after)
    # the background run returned at once, and cancelling it kept what finished
    assert re.search(r"RETURNED <NotebookRun of flow '[^']+': running>", _text(background))
    assert "STATE Cancelled SQ [0, 1, 4, 9, 16] SLOW False" in _text(joined)
