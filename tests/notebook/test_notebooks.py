"""Real ``.ipynb`` files executed in a real kernel (nbclient), on every executor."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).parent / "notebooks" / "pipeline.ipynb"

EXECUTORS = {
    "local": "current_flow().executor = None",
    "threads": "from nbflow.executors import LocalDaskExecutor\n"
               "current_flow().executor = LocalDaskExecutor(num_workers=2)",
    "processes": "from nbflow.executors import LocalDaskExecutor\n"
                 "current_flow().executor = LocalDaskExecutor('processes', num_workers=2)",
    "dask-temporary": "from nbflow.executors import DaskExecutor\n"
                      "current_flow().executor = DaskExecutor(cluster_kwargs={'n_workers': 1,"
                      " 'threads_per_worker': 2, 'processes': False})",
    "dask-workers": "from nbflow.executors import DaskExecutor\n"
                    "current_flow().executor = DaskExecutor(address={address!r})",
}
#: Executors whose tasks run in other processes (values must be serialised).
REMOTE = {"processes", "dask-workers"}
TRAVELS = {"processes", "dask-temporary", "dask-workers"}


def run_notebook(tmp_path: Path, executor_code: str) -> dict[str, object]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    by_tag = {cell.metadata["tags"][0]: cell for cell in nb.cells if cell.metadata.get("tags")}
    by_tag["executor"].source = executor_code
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=150, allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return by_tag


def text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def html(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)


def error(cell) -> dict | None:
    return next((o for o in cell.outputs if o.output_type == "error"), None)


def usage_error(cell) -> str:
    """The one line IPython prints (on stderr) for a UsageError, or ''."""
    lines = [o.text for o in cell.outputs if o.get("name") == "stderr"]
    return next((line for line in "".join(lines).splitlines()
                 if line.startswith("UsageError: ")), "")


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_notebook_pipeline_runs_on_executor(kind, tmp_path, request):
    code = EXECUTORS[kind]
    if kind == "dask-workers":
        code = code.format(address=request.getfixturevalue("existing_cluster"))
    cells = run_notebook(tmp_path, code)
    for tag in ("setup", "executor", "helpers", "run", "check", "plain-flow"):
        assert error(cells[tag]) is None, (tag, error(cells[tag]))

    # Registering prints one line per cell and runs nothing.
    assert text(cells["load"]) == (
        "Task 'load': reads nothing from other tasks; provides xs.\n")
    assert "reads total (from roots)" in text(cells["augment"])
    assert "maps over xs" in text(cells["mapped"])

    # The run wrote every provided name back; the re-registered cell replaced v1.
    check = text(cells["check"])
    assert "total 118.0" in check
    assert "summary total=118.0 boxes=[1.0, 2.0, 3.0]" in check
    assert "boxes [1.0, 2.0, 3.0]" in check

    # What cells printed appears under the run, marked with the task.
    run = text(cells["run"])
    assert "[mapped[2]] element 9" not in run  # the task is named after its output
    assert "[box[0]] element 1" in run and "[box[2]] element 9" in run
    # In a kernel, %flow run shows the live view; its final state stays as HTML.
    final = html(cells["run"])
    assert 'nbflow-flow-state nbflow-state-success">Success<' in final
    assert final.count('<tr class="nbflow-task') == 5  # the cells, not the pick task
    assert 'data-task="load.' not in final
    kernel_pid = check.split("kernel pid ")[1].split()[0]
    task_pid = run.split("[load] loaded 3 pid ")[1].split()[0]
    assert (task_pid != kernel_pid) == (kind in REMOTE)

    # A failing cell: its own line in the traceback; the others still written back.
    failed = error(cells["run-boom"])
    assert failed is not None and failed["ename"] == "CellFailed"
    traceback = "\n".join(failed["traceback"])
    assert 'File "<flowtask boom>", line 1' in traceback
    assert "ratio = total / 0" in traceback
    assert "ZeroDivisionError" in traceback
    assert "total after failure 118.0 False" in text(cells["after-boom"])

    # An undefined name: a one-line error naming the cell and the name.
    undefined = usage_error(cells["run-undefined"])
    assert "Cell 'w' reads 'undefined_thing'" in undefined

    # A lock cannot travel: stopped before running, naming cell and variable.
    locky = usage_error(cells["run-locky"])
    if kind in TRAVELS:
        assert "Cell 'locked' reads 'lock' (lock)" in locky
        assert "nbflow-run-view" not in html(cells["run-locky"])  # nothing ran
    else:
        assert locky == "" and error(cells["run-locky"]) is None
        assert 'nbflow-flow-state nbflow-state-success">Success<' in html(cells["run-locky"])

    # @task functions defined in the notebook run there too.
    assert "plain [6, 12, 18]" in text(cells["plain-flow"])
