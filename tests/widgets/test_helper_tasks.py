"""Helper tasks nbflow adds (picking a mapped-over name out of a cell's result)
are never shown by name: run view, graph, the flow's repr, text progress, CLI."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from nbflow.cli.progress import TextProgress
from nbflow.core.flow import Flow
from nbflow.notebook import register_cell, run_notebook_flow
from nbflow.notebook.flow import PickTask, describe_flow
from nbflow.widgets import RunView
from nbflow.widgets.graph import flow_layout


def _notebook_flow() -> Flow:
    flow = Flow("notebook")
    register_cell("xs = list(range(5))\nlabel = 'n'", "load", flow=flow)
    register_cell("sq = xs * xs", "square", map_var="xs", flow=flow)
    register_cell("total = sum(sq)", "total", flow=flow)
    return flow


def test_the_notebook_flow_has_a_helper_but_shows_three_tasks():
    flow = _notebook_flow()
    assert any(isinstance(t, PickTask) for t in flow.ordered_tasks())  # load.xs
    assert repr(flow) == "<Flow: name='notebook', 3 tasks>"
    assert "3 tasks" in describe_flow(flow)
    layout = flow_layout(flow)
    assert sorted(layout.positions) == ["load", "square", "total"]
    assert ("load", "square") in layout.edges and ("square", "total") in layout.edges


def test_run_view_and_progress_name_only_the_cells():
    flow = _notebook_flow()
    view = RunView(flow)
    text = io.StringIO()
    state = run_notebook_flow({}, flow=flow,
                              listeners=[view, TextProgress(text, summary=True)])
    assert state.is_successful()
    shown = view.header.value + view.table.value + view.graph.value + view.html()
    assert sorted(set(re.findall(r'data-task="([^"]+)"', shown))) == [
        "load", "square", "total"]
    assert "load.xs" not in shown
    assert [t.name for t in view.run_state.snapshot().tasks] == ["load", "square", "total"]
    printed = text.getvalue()
    assert "square" in printed and "total" in printed, printed
    assert "load.xs" not in printed, printed


def test_nbflow_run_prints_only_the_cells(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _cli import run

    cells = ["%load_ext nbflow", "%%flowtask load\nxs = list(range(5))",
             "%%flowtask square --map xs\nsq = xs * xs", "%flow run"]
    path = tmp_path / "helpers.ipynb"
    nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in cells]), str(path))
    result = run("run", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "square" in result.stdout and "load.xs" not in result.stdout, result.stdout
