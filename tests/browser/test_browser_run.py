"""The live run view in a real browser: states arrive while the cell runs, the
graph picture colours a failed task, the Cancel button stops a background run."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import _ui as ui
import pytest

from nbflow.engine.state import Failed, Success

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# the live widget (the static HTML snapshot of the same run has ``nbflow-static``
# and replaces the widget in the output once the run ended)
VIEW = ".nbflow-run-view.jupyter-widgets"
ROWS = f"{VIEW} tr.nbflow-task"
ANY_VIEW = ".nbflow-run-view"  # live or, once ended, static
STATIC = ".nbflow-run-view.nbflow-static"  # what a run's output becomes when it ends
ANY_ROWS = f"{ANY_VIEW} tr.nbflow-task"

# Records, in the page, every change of the task rows' states together with the
# run cell's prompt: a MutationObserver plus a 50 ms timer, so no sample is
# lost to the test process's own latency.
RECORD_JS = """() => {
  const seen = window.__nbflowSeen = [];
  let last = '';
  const prompt = () => %s;
  const record = () => {
    const rows = [...document.querySelectorAll(%r)];
    if (!rows.length) return;
    const states = Object.fromEntries(rows.map(r => [r.dataset.task,
      r.querySelector('span.nbflow-task-state').textContent.trim()]));
    const p = prompt();
    const key = p + JSON.stringify(states);
    if (key !== last) { last = key; seen.push({prompt: p, states}); }
  };
  new MutationObserver(record).observe(document.body,
    {childList: true, subtree: true, characterData: true});
  setInterval(record, 50);
}"""


SVG = "{http://www.w3.org/2000/svg}"


def _picture(image: Any) -> ET.Element:
    """The SVG document an ``<img>`` of the saved view shows, once it is drawn."""
    image.wait_for(state="visible")
    drawn, src = image.evaluate("e => [e.complete && e.naturalWidth > 0, e.src]")
    assert drawn, src[:80]
    assert src.startswith("data:image/svg+xml;base64,"), src[:80]
    return ET.fromstring(base64.b64decode(src.split(",", 1)[1]))


def _state_colors(graph: ET.Element) -> dict[str, dict[str, Any]]:
    """Per graph node: its ``nbflow-state-*`` class and its box's fill."""
    nodes = {}
    for g in graph.iter(f"{SVG}g"):
        classes = g.get("class", "").split()
        if "nbflow-node" in classes:
            rect = g.find(f"{SVG}rect")
            assert rect is not None
            nodes[g.get("data-task", "")] = {
                "cls": next(c for c in classes if c.startswith("nbflow-state-")),
                "fill": rect.get("fill"), "dashed": "stroke-dasharray" in rect.attrib}
    return nodes


@pytest.mark.parametrize("ui_kind", ["lab", "notebook"])
def test_run_view_shows_states_while_the_cell_runs(
    page: Any, lab: Any, artifacts: Path, ui_kind: str
) -> None:
    ui.open_notebook(page, lab, "b-live.ipynb", ui=ui_kind)
    page.evaluate(RECORD_JS % (ui.prompt_js("# RUN"), ROWS))
    ui.run_all(page)
    # a picture with a task done, one running, one pending
    second = page.locator(f"{ROWS}[data-task='second'].nbflow-state-running")
    second.wait_for(timeout=120_000)
    if ui_kind == "lab":
        page.locator(VIEW).screenshot(path=str(artifacts / "run-live.png"))
    # a blocking run cannot be cancelled from the page (the kernel is busy):
    # its button is disabled (Ctrl-C, the kernel interrupt, stops it)
    assert page.locator(f"{VIEW} button.nbflow-cancel").is_disabled()
    page.wait_for_function(
        f"""() => {{ const rows = [...document.querySelectorAll({ANY_ROWS!r})];
             return rows.length === 3 && rows.every(r =>
               r.querySelector('span.nbflow-task-state').textContent === 'Success')
             && /^\\[\\d+\\]:$/.test({ui.prompt_js("# RUN")}); }}""",
        timeout=120_000,
    )
    seen = page.evaluate("window.__nbflowSeen")
    mid_run = [s["states"] for s in seen if s["prompt"] == "[*]:"]
    by_task = {
        task: [s[task] for s in mid_run] for task in ("first", "second", "third")
    }
    for task, states in by_task.items():
        assert "Running" in states, (task, states)
    # the first task had finished while the cell still ran
    assert "Success" in by_task["first"], by_task
    # once ended, the output is the static snapshot; its run timeline (a small
    # SVG image, saved with the notebook) opens on a click
    static = page.locator(STATIC)
    static.locator(".nbflow-flow-state").wait_for(timeout=120_000)
    assert static.locator(".nbflow-flow-state").inner_text() == "Success"
    static.locator("details.nbflow-timeline-static summary").click()
    timeline = _picture(static.locator("img.nbflow-timeline-img"))
    assert len([r for r in timeline.iter(f"{SVG}rect") if r.get("x")]) == 3  # bars
    if ui_kind == "lab":
        static.screenshot(path=str(artifacts / "run-timeline.png"))
    assert ui.bad_widget_text(page) == []
    assert page.external_requests == []


def test_graph_colours_a_failed_task(page: Any, lab: Any, artifacts: Path) -> None:
    ui.open_notebook(page, lab, "b-failed.ipynb")
    ui.run_all(page)
    ui.wait_all_executed(page, 5)
    # the run ended: the saved view's graph is an image of its SVG
    graph = page.locator(".nbflow-run-view.nbflow-static img.nbflow-graph-img")
    colours = _state_colors(_picture(graph))
    assert colours == {
        "readings": {"cls": "nbflow-state-success", "fill": Success.color, "dashed": False},
        "average": {"cls": "nbflow-state-failed", "fill": Failed.color, "dashed": False},
        # did not run: an outline, so it does not look like the task that failed
        "report": {"cls": "nbflow-state-trigger-failed", "fill": "#fdecea", "dashed": True},
    }
    # the traceback of the failed task opens in place
    view = page.locator(".nbflow-run-view.nbflow-static")
    view.locator("tr[data-task='average'] details.nbflow-error summary").click()
    view.locator("pre.nbflow-traceback:has-text('TypeError')").wait_for(state="visible")
    view.screenshot(path=str(artifacts / "run-failed.png"))
    # the cell shows the failing task's traceback too
    out = ui.code_cell(page, "# RUN").locator(".jp-OutputArea-output")
    assert "TypeError" in out.all_inner_texts()[-1]


def test_cancel_button_stops_a_background_run(
    page: Any, lab: Any, artifacts: Path
) -> None:
    ui.open_notebook(page, lab, "b-cancel.ipynb")
    readback = ui.code_cell(page, "# READBACK")
    readback.locator(".jp-InputPrompt").click()  # select it, then run those above
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-above')")
    page.wait_for_function(f"/^\\[\\d+\\]:$/.test({ui.prompt_js('# RUN')})")
    ui.wait_kernel_idle(page)  # so the button's callback runs at once
    page.locator(f"{ROWS}[data-task='step'] .nbflow-map-progress").wait_for()
    button = page.locator(f"{VIEW} button.nbflow-cancel:enabled")
    button.click()
    # The live view says Cancelled, then the output becomes its static
    # snapshot: the picture is of the snapshot (the live one is detached).
    ended = page.locator(f"{STATIC} .nbflow-flow-state.nbflow-state-cancelled")
    ended.wait_for(timeout=120_000)
    page.locator(STATIC).first.screenshot(path=str(artifacts / "run-cancelled.png"))
    before = readback.locator(".jp-InputPrompt").inner_text().strip()
    ui.run_cell_in_place(page, readback)
    ui.wait_prompt_changed(page, "# READBACK", before)
    final = readback.locator(".jp-OutputArea-output").inner_text().strip()
    assert final.startswith("FINAL Cancelled ["), final
    assert "'Cancelled'" in final, final  # unfinished steps were cancelled
