"""A saved notebook where no Jupyter runs it: GitHub's notebook preview and VS
Code without widget state. Each shows an output's ``text/html`` alone: GitHub
after a sanitiser that drops ``<style>``, ``class``, ``style``, ``<svg>`` and
scripts; VS Code as it is, with no widget manager. Either way a person sees
each task's state (a mark and a word, not only a colour), the failed task's
message, the executor chosen and the graph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _harness
import _ui as ui
import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDGET = "application/vnd.jupyter.widget-view+json"
CELLS = [
    "%load_ext nbflow",
    'panel = %flow panel\npanel.set(kind="local-dask", scheduler="threads", num_workers=2)'
    "\npanel",
    "%%flowtask load\nxs = list(range(6))",
    "%%flowtask square --map xs\nif xs == 4:\n    raise ValueError(f'bad {xs}')\nsq = xs * xs",
    "%%flowtask total\ntotal = sum(sq)",
    "%flow run",
    # a panel the flow never ran with: its output keeps the widget (with its
    # text/html beside it, what VS Code shows when the widget state is missing)
    "%flow panel",
]
#: Each task's row as a person reads it with no CSS: a mark, then the state.
ROWS = {"load": "✓ Success", "square": "✗ Failed", "total": "⊘ TriggerFailed"}
FAILURE = "square[4] failed: ValueError: bad 4"
EXECUTOR = "LocalDaskExecutor(scheduler='threads', num_workers=2)"

# GitHub's allowlist, written out from html-pipeline's SanitizationFilter
# WHITELIST (github.com/gjtorikian/html-pipeline,
# lib/html/pipeline/sanitization_filter.rb, 2.x; started at GitHub for user
# content; the list of GitHub's current notebook preview is not published, and
# this is the closest published one, the stricter of its versions): these
# elements, these attributes, these URL schemes; no <style>, no <svg>, no
# `class`, `style` or `id` (GitHub strips them from notebooks too:
# jupyter/nbviewer#450). One addition for notebooks: images may be data: URIs
# (GitHub shows matplotlib's base64 PNG outputs, and turned notebooks' inline
# SVG into base64 data: images itself, "for security reasons": GitHub staff in
# IRkernel/IRkernel#145).
GITHUB_TAGS = set(
    "h1 h2 h3 h4 h5 h6 h7 h8 br b i strong em a pre code img tt div ins del sup "
    "sub p ol ul table thead tbody tfoot blockquote dl dt dd kbd q samp var hr "
    "ruby rt rp li tr td th s strike summary details".split()
)
GITHUB_ATTRIBUTES = {
    "a": {"href"},
    "img": {"src", "longdesc"},
    "div": {"itemscope", "itemtype"},
    "blockquote": {"cite"},
    "del": {"cite"},
    "ins": {"cite"},
    "q": {"cite"},
    "*": set(
        "abbr accept accept-charset accesskey action align alt axis border "
        "cellpadding cellspacing char charoff charset checked clear cols colspan "
        "color compact coords datetime dir disabled enctype for frame headers "
        "height hreflang hspace ismap label lang maxlength media method multiple "
        "name nohref noshade nowrap open prompt readonly rel rev rows rowspan "
        "rules scope selected shape size span start summary tabindex target title "
        "type usemap valign value vspace width itemprop".split()
    ),
}
_ANCHOR_SCHEMES = ("http:", "https:", "mailto:", "github-windows:", "github-mac:")


def _github_url(element: str, attribute: str, value: str) -> str | None:
    """html-pipeline's protocols: ``a href`` http(s), mailto or relative; image
    sources http(s) or relative, and (notebooks) ``data:image/``.
    """
    if attribute not in ("href", "src", "longdesc", "cite"):
        return value
    scheme = value.split(":", 1)[0].lower() + ":" if ":" in value else ""
    relative = not scheme or "/" in scheme or "?" in scheme or "#" in scheme
    if relative or scheme in ("http:", "https:"):
        return value
    if element == "a" and scheme in _ANCHOR_SCHEMES:
        return value
    if element == "img" and attribute == "src" and value.startswith("data:image/"):
        return value
    return None


def github_sanitize(html: str) -> str:
    """``html`` as GitHub's notebook preview keeps it (see the allowlist above)."""
    import nh3

    return nh3.clean(
        html,
        tags=GITHUB_TAGS,
        # html-pipeline removes <script> with its content; <style>'s content is
        # not shown as text either (ammonia's default, kept here).
        clean_content_tags={"script", "style"},
        attributes=GITHUB_ATTRIBUTES,
        attribute_filter=_github_url,
        url_schemes={"http", "https", "mailto", "github-windows", "github-mac", "data"},
        link_rel=None,
        strip_comments=True,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    """The notebook run in a real kernel, saved to disk, read back."""
    folder = tmp_path_factory.mktemp("saved-elsewhere")
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(nb, folder / "saved.ipynb")
    return nbformat.read(folder / "saved.ipynb", as_version=4)


@pytest.fixture
def blank(browser: Any) -> Iterator[Any]:
    """A page with no Jupyter and no widget manager; external requests blocked."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.external_requests = []
    _harness.block_external(context, page.external_requests)
    try:
        yield page
    finally:
        context.close()


def _html_outputs(nb: nbformat.NotebookNode, *, widgets: bool) -> list[str]:
    """Each output's text/html; with ``widgets``, also those beside a widget view."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data and (widgets or WIDGET not in data):
                found.append(data["text/html"])
    return found


def _show(page: Any, outputs: list[str]) -> None:
    """Lay the outputs out one after another, as a notebook preview does."""
    body = "".join(f'<div data-output="{i}">{html}</div>' for i, html in enumerate(outputs))
    # the page's own frame (not part of any output): as wide as what it shows
    page.set_content('<!doctype html><html><body><main style="display:inline-block;'
                     f'padding:8px 12px">{body}</main></body></html>')


def _check_what_a_person_sees(page: Any, run: Any, *, marks: bool) -> None:
    """The run's output: each task's state (with its mark where unstyled), the
    failure, the executor, the graph.
    """
    for name, state in ROWS.items():
        state = state if marks else state.split()[1]
        row = run.locator("tr", has=page.locator(f"td:text-is('{name}')"))
        assert row.count() == 1, name
        assert row.is_visible(), name
        cells = row.locator("td").all_inner_texts()
        assert cells[1].startswith(state), (name, cells)
    failure = run.get_by_text(FAILURE).first
    assert failure.is_visible()
    assert f"Executor: {EXECUTOR}" in run.inner_text()
    graph = run.locator("img[alt^='Graph']")
    assert graph.count() == 1
    graph.scroll_into_view_if_needed()
    size = graph.evaluate("e => [e.complete, e.naturalWidth, e.naturalHeight]")
    assert size[0] and size[1] > 0 and size[2] > 0, size
    box = graph.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 20, box
    assert "load" in graph.get_attribute("alt") and "Failed" in graph.get_attribute("alt")


def test_saved_notebook_reads_in_a_github_style_preview(
    saved: nbformat.NotebookNode, blank: Any, artifacts: Path
) -> None:
    outputs = [github_sanitize(h) for h in _html_outputs(saved, widgets=False)]
    cleaned = "".join(outputs)
    # what the sanitiser took: no CSS, no classes, no inline SVG, no script
    for gone in ("<style", "class=", "style=", "<svg", "<script", "onclick"):
        assert gone not in cleaned, gone
    _show(blank, outputs)
    page = blank
    text = page.locator("body").inner_text()
    assert "{" not in text and "var(--jp" not in text  # no stylesheet shown as text
    assert "Executor (chosen in the panel)" in text and EXECUTOR.replace("'", '"') in text
    run = page.locator("[data-output]", has_text="Executor: LocalDaskExecutor")
    assert run.count() == 1
    # the flow's state in the header, as a mark and a word
    assert "✗ Failed" in run.inner_text()
    _check_what_a_person_sees(page, run, marks=True)
    # a traceback opens in place (<details> is kept)
    run.locator("details summary", has_text=FAILURE).first.click()
    assert run.locator("pre", has_text="ValueError: bad 4").first.is_visible()
    page.locator("main").screenshot(path=str(artifacts / "github-saved-run.png"))
    assert page.external_requests == []


def test_saved_notebook_reads_in_vs_code_without_widget_state(
    saved: nbformat.NotebookNode, blank: Any, artifacts: Path
) -> None:
    # the last panel still carries its widget view; its text/html is what shows
    last = saved.cells[-1].outputs[-1]["data"]
    assert WIDGET in last and "nbflow-executor-panel nbflow-static" in last["text/html"]
    outputs = _html_outputs(saved, widgets=True)
    assert len(outputs) == 3 and json.dumps(outputs).count("<script") == 0
    _show(blank, outputs)
    page = blank
    run = page.locator(".nbflow-run-view.nbflow-static")
    assert run.count() == 1
    _check_what_a_person_sees(page, run, marks=False)
    # our stylesheet applies: coloured dots (the marks are for unstyled pages)
    dot = run.locator("tr.nbflow-task .nbflow-dot").first.evaluate(
        "e => [getComputedStyle(e).display, getComputedStyle(e).width]")
    assert dot == ["inline-block", "10px"], dot
    assert not run.locator("tr.nbflow-task .nbflow-mark").first.is_visible()
    panels = page.locator(".nbflow-executor-panel.nbflow-static")
    assert panels.count() == 2
    for i in range(2):
        assert EXECUTOR.replace("'", '"') in panels.nth(i).inner_text()
    page.locator("main").screenshot(path=str(artifacts / "vscode-saved-run.png"))
    assert page.external_requests == []


def test_saved_notebook_reads_untrusted_in_jupyterlab(
    saved: nbformat.NotebookNode, page: Any, lab: Any, notebook_root: Path, artifacts: Path
) -> None:
    # as cloned from git (not signed on this machine): Lab sanitises its HTML
    # outputs, dropping <style> and <svg> (JupyterLab's allowedTags)
    nbformat.write(saved, notebook_root / "b-untrusted.ipynb")
    ui.open_notebook(page, lab, "b-untrusted.ipynb")
    run = page.locator(".jp-OutputArea-output", has_text="Executor: LocalDaskExecutor")
    run.wait_for()
    assert page.locator(".jp-Notebook style").count() == 0  # untrusted indeed
    _check_what_a_person_sees(page, run, marks=True)
    assert ui.bad_widget_text(page) == []
    run.screenshot(path=str(artifacts / "lab-untrusted-saved-run.png"))
    assert page.external_requests == []
