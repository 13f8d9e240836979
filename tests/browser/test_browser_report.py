"""The Dask performance report of ``notebooks/04-performance-report.ipynb`` draws
its Bokeh plots inside its sandboxed iframe, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _ui as ui
import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "04-performance-report.ipynb"

# Inside the report's frame: Bokeh rendered a document, and every script is
# inline (a <script src> would need a network, e.g. Bokeh's CDN).
FRAME_JS = """() => ({
  bokeh: typeof Bokeh !== 'undefined' ? Bokeh.version : null,
  documents: typeof Bokeh !== 'undefined' ? Bokeh.documents.length : 0,
  external_scripts: [...document.scripts].map(s => s.src).filter(s => s),
  origin: window.origin,
})"""


#: True once ``el`` has kept its place for a few animation frames (drawn there).
SETTLED_JS = """(el) => {
  const r = el.getBoundingClientRect();
  const at = [r.x, r.y, r.width, r.height].join();
  if (el.nbflowAt !== at) { el.nbflowAt = at; el.nbflowFrames = 0; }
  return ++el.nbflowFrames >= 3;
}"""

#: Count the clicks a person's pointer (trusted events) gives ``el``.
COUNT_CLICKS_JS = """(el) => {
  el.nbflowClicks = 0;
  el.addEventListener('click', e => { if (e.isTrusted) el.nbflowClicks++; });
}"""


def _open_by_click(page: Any, link: Any) -> Any:
    """Click ``link`` as a person does; return the browser tab it opens.

    Chromium's browser process sends a mouse press to the frame found under the
    pointer in the last picture of the page it has. The report's sandboxed
    iframe runs in a process of its own, and before the link is scrolled into
    view the iframe is where the link then is: a click right after the scroll,
    on a loaded machine, can go to the iframe, and the page never sees it (the
    flake: no event, no tab, 60 s). So scroll first and wait until the link has
    been drawn in place for a few frames; if the page still got no click, click
    again. A click the link did get must open the tab, within the deadline.
    """
    handle = link.element_handle()
    link.scroll_into_view_if_needed()
    page.wait_for_function(SETTLED_JS, arg=handle, polling="raf", timeout=60_000)
    handle.evaluate(COUNT_CLICKS_JS)
    with page.context.expect_page(timeout=60_000) as opened:
        for _ in range(3):
            link.click()
            if handle.evaluate("el => el.nbflowClicks") > 0:
                break
        else:
            pytest.fail("three clicks on the report's link never reached the page")
    return opened.value


@pytest.mark.timeout(420)
def test_performance_report_draws_offline(
    page: Any, lab: Any, notebook_root: Path, artifacts: Path
) -> None:
    nb = nbformat.read(notebook_root / NOTEBOOK, as_version=4)
    n_code = sum(cell.cell_type == "code" for cell in nb.cells)
    ui.open_notebook(page, lab, NOTEBOOK)
    ui.run_all(page)
    ui.wait_all_executed(page, n_code, timeout=300_000)
    assert ui.bad_widget_text(page) == []
    # render_report() draws it inline; the run view (static once the run ended,
    # saved with the notebook) links to the file instead of carrying 2 MB
    frames = page.locator("div.nbflow-report iframe.nbflow-report-frame")
    assert frames.count() == 1
    static = page.locator(".nbflow-run-view.nbflow-static .nbflow-report-static")
    link = static.locator("a.nbflow-report-link")
    assert link.inner_text() == "dask-report.html"
    # each link (under the run; under render_report's frame) opens the file so
    # that it draws (not in Lab's HTML viewer, blank until "Trust HTML")
    widget_link = page.locator("div.nbflow-report a.nbflow-report-link")
    for i, each in enumerate((link, widget_link)):
        tab = _open_by_click(page, each)
        tab.wait_for_load_state()
        assert "/files/dask-report.html" in tab.url, tab.url
        tab.wait_for_function(
            "() => typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0",
            timeout=60_000,
        )
        tab.locator(".bk-tab:text-is('Task Stream')").click()
        tab.locator("canvas:visible").first.wait_for(timeout=60_000)
        if i == 0:
            tab.screenshot(path=str(artifacts / "report-link-opened.png"))
        tab.close()
    for i in range(1):
        element = frames.nth(i)
        assert element.get_attribute("sandbox") == "allow-scripts"
        element.scroll_into_view_if_needed()
        frame = element.element_handle().content_frame()
        frame.wait_for_function(
            "() => typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0",
            timeout=60_000,
        )
        info = frame.evaluate(FRAME_JS)
        assert info["documents"] > 0 and info["external_scripts"] == [], info
        assert info["origin"] == "null", info  # sandboxed: an opaque origin
        # Playwright's CSS pierces Bokeh's shadow DOM; the report opens on its
        # Summary tab, whose plots are hidden: show the task stream
        frame.locator(".bk-tab:text-is('Task Stream')").click()
        frame.locator("canvas:visible").first.wait_for(timeout=60_000)
        if i == 0:
            element.screenshot(path=str(artifacts / "report.png"))
    assert widget_link.inner_text() == "dask-report.html"
    assert (notebook_root / "dask-report.html").stat().st_size > 500_000
    # nothing tried to leave the machine (those seen are aborted anyway)
    assert page.external_requests == [], json.dumps(page.external_requests)
