"""Run All twice in one kernel, a renamed cell, two cells providing one name:
real kernels through nbclient, with and without the cell ids Jupyter sends."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

CELLS = [
    "%load_ext nbflow",
    "%%flowtask load\nxs = list(range(4))",
    "%%flowtask --map xs\nsq = xs * xs",
    "%flow run",
    "%%flowtask later\nprint('LATER RAN')\ntotal = sum(sq)",
    "%flow run",
    "print('TOTAL', total)",
]


def _send_cell_ids(client: NotebookClient) -> None:
    """Send each cell's id with its execute request, as JupyterLab does."""
    kc = client.kc
    assert kc is not None

    def execute(code: str, silent: bool = False, store_history: bool = True,
                user_expressions: Any = None, allow_stdin: Any = None,
                stop_on_error: bool = True) -> str:
        content = {"code": code, "silent": silent, "store_history": store_history,
                   "user_expressions": user_expressions or {}, "allow_stdin": False,
                   "stop_on_error": stop_on_error}
        msg = kc.session.msg("execute_request", content,
                             metadata={"cellId": client.cell_id_now})
        kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    kc.execute = execute


@contextlib.contextmanager
def _kernel(nb: Any, tmp_path: Any, *, cell_ids: bool) -> Iterator[Any]:
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        if cell_ids:
            _send_cell_ids(client)

        def run(index: int, source: str | None = None) -> Any:
            cell = nb.cells[index]
            if source is not None:
                cell.source = source
            client.cell_id_now = cell.id
            client.execute_cell(cell, index)
            return cell

        yield run


def _shown(cell: Any) -> str:
    # A print can arrive in several stream messages (a busy kernel flushes
    # early): a stream's pieces are joined as they were written.
    parts = ["".join(o.get("text", "") for o in cell.outputs
                     if o.get("output_type") == "stream")]
    for out in cell.outputs:
        parts.extend(str(v) for v in out.get("data", {}).values())
        parts.extend(out.get("traceback", ()))
    return "\n".join(parts)


def _tasks_in_view(cell: Any) -> list[str]:
    return sorted(set(re.findall(r'data-task="([^"]+)"', _shown(cell))))


@pytest.mark.parametrize("cell_ids", [True, False], ids=["cell-ids", "no-cell-ids"])
def test_run_all_twice_runs_the_same_tasks(tmp_path, cell_ids):
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    with _kernel(nb, tmp_path, cell_ids=cell_ids) as run:
        passes = []
        for _ in range(2):
            shown = [_shown(run(i)) for i in range(len(CELLS))]
            passes.append((shown, _tasks_in_view(nb.cells[3]), _tasks_in_view(nb.cells[5])))
    for shown, first_run, second_run in passes:
        assert first_run == ["load", "sq"], first_run
        assert "LATER RAN" not in shown[3], shown[3]
        assert second_run == ["later", "load", "sq"], second_run
        assert "[later] LATER RAN" in shown[5]
        assert "TOTAL 14" in shown[6]


def test_renamed_cell_replaces_its_task_and_duplicates_fail_naming_both(tmp_path):
    nb = new_notebook(cells=[new_code_cell(c) for c in [*CELLS, "%flow show", ""]])
    with _kernel(nb, tmp_path, cell_ids=True) as run:
        for i in range(len(CELLS)):
            run(i)
        run(4, "%%flowtask summed\ntotal = sum(sq)")
        shown = _shown(run(7))
        assert "summed" in shown and "later" not in shown, shown
        assert "3 tasks" in shown, shown
        run(8, "%%flowtask other\ntotal = 0")
        with pytest.raises(CellExecutionError) as failed:
            run(5)
    message = str(failed.value)
    assert "Cells 'summed' and 'other' both provide 'total'" in message, message
    assert "[summed]" not in message  # nothing ran


def test_one_cell_may_register_several_tasks(tmp_path):
    cells = ["%load_ext nbflow",
             "ip = get_ipython()\nfor i in range(3):\n"
             "    ip.run_cell_magic('flowtask', f'part{i}', f'v{i} = {i}')",
             "%flow run",
             "print('SUM', v0 + v1 + v2)"]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    with _kernel(nb, tmp_path, cell_ids=True) as run:
        for _ in range(2):
            shown = [_shown(run(i)) for i in range(len(cells))]
            assert _tasks_in_view(nb.cells[2]) == ["part0", "part1", "part2"], shown
            assert "SUM 3" in shown[3]
