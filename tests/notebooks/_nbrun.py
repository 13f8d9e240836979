"""Execute the user notebooks of ``notebooks/`` and check what they show.

Shared by ``test_user_notebooks.py`` (the test environment's kernel) and
``test_binder.py`` (a kernel of an environment built from ``binder/``, where
this file runs as a script: ``python _nbrun.py OUT_DIR`` executes every
notebook with the running interpreter's kernel and writes the executed
notebooks to ``OUT_DIR``). Only nbformat and nbclient are needed to execute.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
#: Seconds a cell may take (a cell of 03 runs the workload; machines are busy).
CELL_TIMEOUT = 240


#: Run first in each kernel: a TCP connection to an address on the internet
#: fails, so a notebook that needs the internet fails its test (the kernel's
#: own process only; "no internet" at view time is the browser tests' job).
OFFLINE = """
import ipaddress as _ip, socket as _socket, sys as _sys

def _nbflow_offline(event, args):
    if event != "socket.connect" or args[0].type != _socket.SOCK_STREAM:
        return
    address = args[1]
    if args[0].family not in (_socket.AF_INET, _socket.AF_INET6):
        return
    host = str(address[0])
    try:
        remote = _ip.ip_address(host.split("%")[0]).is_global
    except ValueError:
        remote = host != "localhost"
    if remote:
        raise OSError(f"no internet in the notebook tests: connect to {address!r}")

_sys.addaudithook(_nbflow_offline)
"""


def execute(path: Path, cwd: Path, *, kernel: str = "python3") -> Any:
    """Run the notebook at ``path`` top to bottom in a fresh kernel, in ``cwd``,
    with no internet access from the kernel.

    A cell that raises fails the run, except cells tagged ``raises-exception``.
    """
    import nbclient

    nb = nbformat.read(path, as_version=4)
    guard = nbformat.v4.new_code_cell(OFFLINE)
    nb.cells.insert(0, guard)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=CELL_TIMEOUT, allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    assert not guard.outputs, guard.outputs
    nb.cells.remove(guard)
    return nb


def cells(nb: Any) -> dict[str, Any]:
    """The notebook's code cells by tag."""
    tagged = {}
    for cell in nb.cells:
        for tag in cell.metadata.get("tags", ()):
            tagged[tag] = cell
    return tagged


def text(cell: Any) -> str:
    """What a cell printed (stdout and stderr)."""
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def error(cell: Any) -> Any:
    """The cell's error output, or None."""
    return next((o for o in cell.outputs if o.output_type == "error"), None)


def widget_states(nb: Any) -> dict[str, dict[str, Any]]:
    """The saved state of every widget (model id -> state), as JupyterLab saves it."""
    saved = nb.metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {})
    return {k: v["state"] for k, v in saved.get("state", {}).items()}


def widgets_shown(cell: Any) -> list[str]:
    """The model ids of the widgets a cell displayed."""
    return [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for o in cell.outputs
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]


def widget_parts(states: dict[str, dict[str, Any]], model_id: str) -> dict[str, Any]:
    """The widgets in the tree under ``model_id``, by their ``nbflow-*`` class,
    each with its ``"shown"``: whether it and its ancestors are displayed."""
    parts: dict[str, Any] = {}

    def shown(state: dict[str, Any]) -> bool:
        layout = states.get(str(state.get("layout", "")).removeprefix("IPY_MODEL_"), {})
        return layout.get("display") != "none"

    def walk(mid: str, visible: bool) -> None:
        state = states[mid]
        visible = visible and shown(state)
        for css in state.get("_dom_classes", ()):
            parts[css] = {**state, "shown": visible}
        for child in state.get("children", ()):
            walk(child.removeprefix("IPY_MODEL_"), visible)

    walk(model_id, True)
    return parts


def view_html(cell: Any) -> str:
    """The static HTML of the run view a cell displayed (its final state)."""
    for o in cell.outputs:
        html = o.get("data", {}).get("text/html", "")
        if "nbflow-run-view" in html:
            return str(html)
    raise AssertionError(f"no run view among the outputs: {cell.outputs}")


def flow_state(cell: Any) -> str:
    """The flow's state the run view shows, e.g. ``"Success"``."""
    found = re.search(r'class="nbflow-flow-state [^"]*">(\w+)<', view_html(cell))
    assert found, view_html(cell)
    return found.group(1)


def widget_values(states: dict[str, dict[str, Any]], model_id: str) -> list[str]:
    """The ``value`` of every widget in the tree under ``model_id``."""
    state = states[model_id]
    values = [state["value"]] if isinstance(state.get("value"), str) else []
    for child in state.get("children", ()):
        values += widget_values(states, child.removeprefix("IPY_MODEL_"))
    return values


def _has(cell: Any, *needles: str) -> str:
    shown = text(cell)
    for needle in needles:
        assert needle in shown, (needle, shown)
    return shown


# -- what each notebook must show ---------------------------------------------------


def check_quickstart(nb: Any, cwd: Path) -> None:
    """Cells registered, the flow ran, its results are back in the namespace."""
    c = cells(nb)
    _has(c["load"], "Task 'load_numbers': reads nothing from other tasks; provides numbers.")
    _has(c["square"], "Task 'square' (maps over numbers)")
    _has(c["show"], "square -> total")
    _has(c["result"], "Sum of the squares of 1..10: 385")
    assert "[1, 4, 9, 16, 25, 36, 49, 64, 81, 100]" in json.dumps(c["result"].outputs)
    _has(c["run"], "[total] 10 squares added up")
    assert flow_state(c["run"]) == "Success"
    assert 'data-task="square"' in view_html(c["run"]) and "10/10" in view_html(c["run"])
    _has(c["rerun"], "Sum of the squares of 1..100: 338350", "[total] 100 squares")
    _has(c["flow"], "<Flow: name='notebook'")
    _has(c["plain"], "the sum is 385")


_EXECUTORS = {
    "local": ("LocalExecutor", "LocalExecutor()"),
    "threads": ('LocalDaskExecutor(scheduler="threads", num_workers=4)',
                "LocalDaskExecutor(scheduler='threads', num_workers=4)"),
    "processes": ('LocalDaskExecutor(scheduler="processes", num_workers=2)',
                  "LocalDaskExecutor(scheduler='processes', num_workers=2)"),
    "temporary": ('DaskExecutor(cluster_kwargs={"n_workers": 2, "threads_per_worker": 2})',
                  "DaskExecutor(cluster_kwargs={'n_workers': 2, 'threads_per_worker': 2})"),
    "cluster-class": ('cluster_class="distributed.LocalCluster"',
                      "DaskExecutor(cluster_class='distributed.LocalCluster', "
                      "cluster_kwargs={'n_workers': 1, 'threads_per_worker': 2, "
                      "'processes': False})"),
    "adaptive": ('adapt_kwargs={"minimum": 1, "maximum": 2}',
                 "DaskExecutor(cluster_kwargs={'processes': False}, "
                 "adapt_kwargs={'minimum': 1, 'maximum': 2})"),
    "existing": ('DaskExecutor(address="tcp://127.0.0.1:',
                 "DaskExecutor(address='tcp://127.0.0.1:"),
}


def check_executors(nb: Any, cwd: Path) -> None:
    """Every executor chosen in the panel (its code shown) and in code (and run)."""
    c = cells(nb)
    states = widget_states(nb)
    # The panels' widget models, each found by the code it shows (the order of
    # the saved widget state is not the notebook's: a panel shown again when
    # its flow runs moves to the end).
    found = [mid for mid, s in states.items()
             if "nbflow-executor-panel" in s.get("_dom_classes", ())]
    assert len(found) == len(_EXECUTORS), found
    panels = {}
    for key, (panel_code, _) in _EXECUTORS.items():
        panels[key] = next(
            mid for mid in found if mid not in panels.values() and panel_code in
            widget_parts(states, mid)["nbflow-code"]["value"].replace("&quot;", '"'))
    for key, (panel_code, executor_repr) in _EXECUTORS.items():
        # Once the flow ran, the panel's output is the choice as static HTML.
        assert not widgets_shown(c[f"panel-{key}"]), key
        static = "".join(o.get("data", {}).get("text/html", "")
                         for o in c[f"panel-{key}"].outputs)
        assert 'class="nbflow-executor-panel nbflow-static"' in static, key
        assert panel_code in static.replace("&quot;", '"'), (key, static)
        parts = widget_parts(states, panels[key])
        assert panel_code in parts["nbflow-code"]["value"].replace("&quot;", '"'), key
        assert not parts["nbflow-message"]["value"], (key, parts["nbflow-message"])
        _has(c[f"run-{key}"], f"{executor_repr}")
        assert re.search(r"-> 8 pieces ran in [12] process\(es\), on \d+ thread\(s\)",
                         text(c[f"run-{key}"])), (key, text(c[f"run-{key}"]))
        assert flow_state(c[f"run-{key}"]) == "Success", key
        links = re.findall(r'class="nbflow-dashboard" href="([^"]*)"', view_html(c[f"run-{key}"]))
        if key == "existing":  # a dashboard this browser can open, after the run too
            assert links and links[0].startswith("http://127.0.0.1:"), (key, links)
        elif executor_repr.startswith("DaskExecutor"):  # gone with its cluster
            assert not links, (key, links)
            assert "Dask dashboard (closed with its cluster)" in view_html(c[f"run-{key}"])
        else:
            assert not links, key
    # The controls of each choice are on view (and those of the others hidden).
    existing = widget_parts(states, panels["existing"])
    assert existing["nbflow-address"]["shown"] and existing["nbflow-address"]["value"]
    assert not existing["nbflow-n_workers"]["shown"]
    assert "2 workers, 2 threads" in existing["nbflow-connection"]["value"]
    assert "2 workers, 2 threads" in json.dumps(c["panel-existing"].outputs)
    custom = widget_parts(states, panels["cluster-class"])
    assert custom["nbflow-cluster_class"]["shown"] and custom["nbflow-cluster_kwargs"]["shown"]
    assert not custom["nbflow-address"]["shown"]
    _has(c["run-existing"], "The cluster is still up: running")
    # Moving to a real cluster: a module of the notebook's folder, a factory.
    shown = _has(c["factory"], "8 pieces, labelled by helpers.py")
    assert re.search(r"^Workers to build: Python 3\.\d+\.\d+, pip install dask==\S+ "
                     r"distributed==\S+ jupyter-nbflow==\S+$", shown, re.M), shown


def check_workload(nb: Any, cwd: Path) -> None:
    """Both runs computed the same and the speedup line is printed."""
    c = cells(nb)
    _has(c["run-local"], "LocalExecutor: ")
    _has(c["run-processes"], "LocalDaskExecutor(processes, ")
    shown = _has(c["speedup"], "384,000 readings in 32 files")
    found = re.search(r"^Speedup: (\d+\.\d)x with (\d+) processes on \d+ cores$",
                      shown, re.M)
    assert found, shown
    # The headline: a real speed-up with two processes or more, or the
    # notebook says that the machine was busy (a shared CI or Binder machine).
    if int(found.group(2)) >= 2 and float(found.group(1)) < 1.2:
        assert "The machine was busy: other programs wanted " in shown, shown


def check_report(nb: Any, cwd: Path) -> None:
    """The report was written, read in the handler, and rendered inline offline."""
    c = cells(nb)
    found = re.search(r"Terminal state handler: the flow ended Success; the performance "
                      r"report is ([\d,]+) characters of HTML\.", text(c["run"]))
    assert found, text(c["run"])
    size = int(found.group(1).replace(",", ""))
    on_disk = (cwd / "dask-report.html").read_text(encoding="utf-8")
    assert size == len(on_disk) > 10_000
    # Under the run, its view (once ended: static HTML) links to the report
    # file; render_report shows it inline.
    assert flow_state(c["run"]) == "Success"
    assert 'class="nbflow-report-link" href="dask-report.html"' in view_html(c["run"])
    assert not widgets_shown(c["run"])  # reopened: no "model not found"
    states = widget_states(nb)
    shown = widgets_shown(c["render"])
    assert shown, c["render"].outputs
    value = states[shown[0]]["value"]
    assert '<iframe class="nbflow-report-frame" sandbox="allow-scripts"' in value
    srcdoc = value.split('srcdoc="', 1)[1]
    assert "Bokeh" in srcdoc and "Task Stream" in srcdoc
    # Inline resources: no script comes from a CDN, so it draws offline.
    assert not re.search(r"<script[^>]+src=[^>]*https?://", srcdoc.replace("&quot;", '"'))


def check_failures(nb: Any, cwd: Path) -> None:
    """The failing cell's traceback, TriggerFailed downstream, retries, a cancel."""
    c = cells(nb)
    failed = error(c["fail"])
    assert failed is not None and failed["ename"] == "CellFailed", c["fail"].outputs
    traceback = "\n".join(failed["traceback"])
    assert "average = sum(readings) / len(readings)" in traceback, traceback
    assert "TypeError: unsupported operand type(s) for +" in traceback
    view = view_html(c["fail"])
    assert flow_state(c["fail"]) == "Failed"
    assert 'class="nbflow-task nbflow-state-trigger-failed" data-task="report"' in view
    assert 'class="nbflow-task nbflow-state-failed" data-task="average"' in view
    assert "average = sum(readings) / len(readings)" in view  # its traceback, in place
    states = text(c["states"])
    # Cached when the notebook store is on (as for a user: the second run in
    # this kernel reuses `readings`), Success when it is off (the test suite).
    assert re.search(r"^  readings\s+(Success|Cached)", states, re.M), states
    assert re.search(r"^  average\s+Failed\s+.*TypeError", states, re.M), states
    assert re.search(r"^  report\s+TriggerFailed\s+", states, re.M), states
    _has(c["retries"], "fetched [1, 2, 3] after 3 attempts")
    assert flow_state(c["retries"]) == "Success"
    assert flow_state(c["background"]) == "Cancelled"  # the view, updated at the end
    cancelled = text(c["cancel"])
    assert re.search(r"The flow ended Cancelled: steps \{.*'Cancelled': \d+", cancelled), (
        cancelled)


def check_incremental(nb: Any, cwd: Path) -> None:
    """Each run says what it reused and why the rest ran; reused cells are Cached."""
    c = cells(nb)
    _has(c["first"], "Cache: reused 0 of 4 tasks; ran load (first run)")
    _has(c["edit"], "Cache: reused 3 of 4 tasks; ran report (code changed).")
    assert 'class="nbflow-task nbflow-state-cached" data-task="load"' in view_html(
        c["edit"])
    assert "Ran: code changed." in view_html(c["edit"])  # why, in report's row
    _has(c["comment"], "Cache: reused 4 of 4 tasks.")
    _has(c["helper"], "ran clean (helper 'normalise' changed); stats (upstream "
                      "'clean' changed); report (upstream 'stats' changed).")
    _has(c["listing"], "load:")
    _has(c["fresh"], "ran stats (--fresh); report (--fresh).")


CHECKS: dict[str, Callable[[Any, Path], None]] = {
    "01-quickstart.ipynb": check_quickstart,
    "02-executors.ipynb": check_executors,
    "03-parallel-workload.ipynb": check_workload,
    "04-performance-report.ipynb": check_report,
    "05-failures-retries-cancel.ipynb": check_failures,
    "06-incremental.ipynb": check_incremental,
}


def main(argv: list[str]) -> int:
    """Execute every notebook into ``argv[0]`` (cwd of each: ``argv[0]/NAME.d``)."""
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    # Which Python and which nbflow a kernel gets here, for the caller to check.
    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys, nbflow\nprint(sys.executable)\nprint(nbflow.__file__)")])
    probe_dir = out / "probe.d"
    probe_dir.mkdir(exist_ok=True)
    nbformat.write(probe, out / "probe.ipynb")
    (out / "kernel.txt").write_text(text(execute(out / "probe.ipynb", probe_dir).cells[0]))
    for name in NAMES:
        cwd = out / f"{name}.d"
        cwd.mkdir(exist_ok=True)
        try:
            nb = execute(NOTEBOOKS / name, cwd)
        except Exception as exc:  # report which notebook, then go on with the next
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        nbformat.write(nb, out / name)
        print(f"{name}: executed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or [tempfile.mkdtemp(prefix="nbflow-notebooks-")]))
