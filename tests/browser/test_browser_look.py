"""What a person sees: the live run view styled as the static snapshot (state
dots, per-map progress bars, monospace tracebacks, light and dark theme), tqdm's
progress text at a known point, no helper task names, a failed map child named;
then the saved notebook reopened in a new kernel: the last run and the chosen
executor as they ended, no widget error."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import _harness
import _ui as ui
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIVE = ".nbflow-run-view.jupyter-widgets"
STATIC = ".nbflow-run-view.nbflow-static"

STYLES_JS = """(root) => {
  const el = document.querySelector(root);
  const css = (sel, ...props) => { const e = el.querySelector(sel);
    if (!e) return null; const s = getComputedStyle(e);
    return Object.fromEntries(props.map(p => [p, s.getPropertyValue(p)])); };
  return {
    dot: css('tr.nbflow-task .nbflow-dot', 'display', 'width', 'height',
             'border-top-left-radius', 'background-color'),
    bar: css('.nbflow-map-progress .nbflow-bar', 'display', 'width', 'height',
             'background-color'),
    th: css('table.nbflow-tasks th', 'text-align'),
    state: css('tr.nbflow-task td:nth-child(2)', 'white-space'),
    root: {color: getComputedStyle(el).getPropertyValue('color')},
  };
}"""


def _rgb(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", text)[:3])


def _check_styles(page: Any, root: str) -> dict[str, Any]:
    styles = page.evaluate(STYLES_JS, root)
    assert styles["dot"] == {
        "display": "inline-block", "width": "10px", "height": "10px",
        "border-top-left-radius": "5px", "background-color": styles["dot"]["background-color"],
    }, styles
    assert _rgb(styles["dot"]["background-color"]) != (0, 0, 0), styles
    assert styles["bar"]["width"] == "140px" and styles["bar"]["height"] == "10px", styles
    assert styles["bar"]["display"] == "inline-flex", styles
    assert styles["th"] == {"text-align": "left"}, styles
    assert styles["state"] == {"white-space": "nowrap"}, styles  # "○ TriggerFailed"
    return styles


def _saved_outputs(lab: Any, name: str) -> str:
    model = lab.api(f"/api/contents/{name}?content=1")
    return str(model["content"])


@pytest.mark.parametrize("ui_kind", ["lab", "notebook"])
def test_live_view_is_styled_then_the_saved_notebook_reopens_as_it_ended(
    page: Any, browser: Any, lab: Any, notebook_root: Path, artifacts: Path, ui_kind: str
) -> None:
    name = "b-look.ipynb" if ui_kind == "lab" else "b-look-nb7.ipynb"
    prefix = "lab" if ui_kind == "lab" else "nb7"
    release = notebook_root / f"{Path(name).stem}.release"
    release.unlink(missing_ok=True)
    ui.open_notebook(page, lab, name, ui=ui_kind)
    ui.run_all(page)
    # held at a known point: load and children 0-2 done, child 3 running
    label = page.locator(f"{LIVE} .nbflow-progress-label")
    label.locator("text=/^36% 4\\/11 \\[/").wait_for(timeout=120_000)
    text = label.inner_text().strip()
    assert re.fullmatch(r"36% 4/11 \[\d\d:\d\d<\d\d:\d\d, [\d,.]+ it/s\]", text), text
    seen = page.locator(LIVE).inner_text()
    assert seen.count("4/11 [") == 1, seen  # by the bar, not again in the header
    live = _check_styles(page, LIVE)
    page.locator(LIVE).screenshot(path=str(artifacts / f"{prefix}-run-live-styled.png"))
    body = page.locator(".jp-Notebook").inner_text()
    assert "load.xs" not in body and "square.sq" not in body  # no helper task names
    release.write_text("go")
    # the blocking run ended: its output is the static snapshot, styled alike
    page.locator(f"{STATIC} .nbflow-flow-state.nbflow-state-success").first.wait_for(
        timeout=120_000)
    ui.wait_all_executed(page, 7)
    static = _check_styles(page, STATIC)
    assert static["dot"] == live["dot"] and static["bar"]["width"] == live["bar"]["width"]
    # the failed run names its child, its traceback in a monospace font
    failed = page.locator(STATIC).last
    assert "check[7] failed: ValueError: bad 49" in failed.inner_text()
    failed.locator("details.nbflow-error summary").first.click()
    font = failed.locator("pre.nbflow-traceback").first.evaluate(
        "e => getComputedStyle(e).fontFamily")
    assert "mono" in font.lower(), font
    failed.screenshot(path=str(artifacts / f"{prefix}-run-failed-static.png"))
    if ui_kind == "lab":
        page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Dark'})")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
        dark = _check_styles(page, STATIC)
        assert sum(_rgb(dark["root"]["color"])) > 3 * 150, dark  # light text on dark
        page.locator(STATIC).first.screenshot(path=str(artifacts / "lab-run-dark.png"))
        page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Light'})")
    assert ui.bad_widget_text(page) == [] and page.external_requests == []
    # save, stop the kernel, reopen in a new page: as it ended, no widget error
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    deadline = time.monotonic() + 60
    while "nbflow-executor-panel nbflow-static" not in _saved_outputs(lab, name):
        assert time.monotonic() < deadline, "the notebook was not saved"
        time.sleep(0.2)  # polling the server's file: no event to wait on
    page.context.close()
    _harness.shutdown_kernels(lab)
    context = browser.new_context(viewport={"width": 1280, "height": 1200})
    try:
        blocked: list[str] = []
        _harness.block_external(context, blocked)
        again = context.new_page()
        ui.open_notebook(again, lab, name, ui=ui_kind)
        again.locator(f"{STATIC} .nbflow-flow-state").first.wait_for()
        states = again.locator(f"{STATIC} .nbflow-flow-state").all_inner_texts()
        assert states == ["Success", "Failed"], states
        panel = again.locator(".nbflow-executor-panel.nbflow-static").inner_text()
        assert "LocalExecutor()" in panel, panel
        assert "Executor: LocalExecutor()" in again.locator(STATIC).first.inner_text()
        assert ui.bad_widget_text(again) == []
        _check_styles(again, STATIC)
        again.screenshot(path=str(artifacts / f"{prefix}-reopened.png"), full_page=True)
        assert blocked == []
    finally:
        context.close()
