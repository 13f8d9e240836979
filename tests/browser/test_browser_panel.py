"""The executor panel in a real browser: it renders, and edits in the page reach
the kernel's flow (valid ones) or show their message (invalid ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _ui as ui
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PANEL = ".nbflow-executor-panel"


def _type_into(page: Any, css: str, text: str) -> None:
    """Replace the text of the ``<input>`` in ``css`` with ``text``, then Enter."""
    box = page.locator(f"{PANEL} {css} input")
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def _read_back(page: Any) -> str:
    """Run the read-back cell again; return its new output."""
    cell = ui.code_cell(page, "# READBACK")
    before = cell.locator(".jp-InputPrompt").inner_text().strip()
    ui.run_cell_in_place(page, cell)
    ui.wait_prompt_changed(page, "# READBACK", before)
    return cell.locator(".jp-OutputArea-output").inner_text().strip()


@pytest.mark.parametrize("ui_kind", ["lab", "notebook"])
def test_panel_edits_reach_the_kernel(
    page: Any, lab: Any, artifacts: Path, ui_kind: str
) -> None:
    ui.open_notebook(page, lab, "b-panel.ipynb", ui=ui_kind)
    ui.run_all(page)
    ui.wait_all_executed(page, 3)
    panel = page.locator(PANEL)
    panel.wait_for(state="visible")
    assert ui.bad_widget_text(page) == []
    assert "EXECUTOR" in ui.code_cell(page, "# READBACK").inner_text()

    # choose LocalDask in the page: its num_workers box appears
    page.locator(f'{PANEL} .nbflow-kind button:text-is("LocalDask")').click()
    page.locator(f"{PANEL} .nbflow-num_workers input").wait_for(state="visible")
    _type_into(page, ".nbflow-num_workers", "3")
    want = 'LocalDaskExecutor(scheduler="threads", num_workers=3)'
    page.locator(f"{PANEL} .nbflow-code:has-text('{want}')").wait_for()
    assert page.locator(f"{PANEL} .nbflow-message").inner_text().strip() == ""
    panel.screenshot(path=str(artifacts / f"panel-{ui_kind}.png"))
    # the kernel's notebook flow now has that executor
    assert _read_back(page) == (
        "EXECUTOR LocalDaskExecutor(scheduler='threads', num_workers=3)"
    )

    # an invalid value shows its message and is not applied
    _type_into(page, ".nbflow-num_workers", "0")
    message = page.locator(f"{PANEL} .nbflow-message")
    message.locator(
        ":text('num_workers must be a whole number >= 1, got 0')"
    ).wait_for()
    assert "The last valid choice stays in use." in message.inner_text()
    assert want in page.locator(f"{PANEL} .nbflow-code").inner_text()
    panel.screenshot(path=str(artifacts / f"panel-invalid-{ui_kind}.png"))
    assert _read_back(page) == (
        "EXECUTOR LocalDaskExecutor(scheduler='threads', num_workers=3)"
    )
    assert page.external_requests == []
