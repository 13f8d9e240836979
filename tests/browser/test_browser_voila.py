"""Voila: the executor panel and the live run view render and keep our own
monospace on code and tracebacks (Voila's page styles ``<pre>`` its own way,
so the ``^^^`` markers of a traceback line up only if we style them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import _ui as ui
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIVE = ".nbflow-run-view.jupyter-widgets"
FONT = "e => getComputedStyle(e).fontFamily"


def test_panel_and_live_run_view_render_in_voila_with_monospace_code(
    page: Any, lab: Any, artifacts: Path
) -> None:
    assert importlib.util.find_spec("voila"), "Voila is missing: pip install -e '.[test]'"
    page.goto(lab.url("/voila/render/b-voila.ipynb"))  # Voila's server extension
    view = page.locator(LIVE)
    view.locator(".nbflow-flow-state.nbflow-state-failed").wait_for(timeout=180_000)
    # the panel: live, its code preview in a monospace font
    code = page.locator(".nbflow-executor-panel .nbflow-code pre")
    assert "LocalDaskExecutor(" in code.inner_text()
    assert "mono" in code.evaluate(FONT).lower(), code.evaluate(FONT)
    # the run view: live, state dots styled, the failure's traceback monospace
    dot = view.locator("tr.nbflow-task .nbflow-dot").first.evaluate(
        "e => [getComputedStyle(e).display, getComputedStyle(e).width]")
    assert dot == ["inline-block", "10px"], dot
    text = view.inner_text()
    assert "average" in text and "TypeError" in text, text
    view.get_by_text("average: Task 'average' failed").first.click()  # the accordion
    traceback = view.locator("pre.nbflow-traceback").first
    traceback.wait_for(state="visible")
    assert "sum(readings)" in traceback.inner_text(), traceback.inner_text()
    assert "^^^^^^^^^^^^^" in traceback.inner_text()  # the markers, lined up below
    assert "mono" in traceback.evaluate(FONT).lower(), traceback.evaluate(FONT)
    assert ui.bad_widget_text(page) == []
    # Voila's own template asks the internet for Font Awesome and MathJax (and
    # renders without them); nothing of ours does.
    ours = [u for u in page.external_requests
            if "fontawesome" not in u and "mathjax" not in u]
    assert ours == [], page.external_requests
    page.screenshot(path=str(artifacts / "voila-panel-and-run.png"), full_page=True)
