"""Playwright helpers for JupyterLab 4 and Notebook 7 pages (sync API).

Adapted from ``shared/recipes/browser/jupyter_ui.py``; the selectors were
checked against JupyterLab 4.6, Notebook 7.6 and ipywidgets 8.1. nbflow's own
widgets carry ``nbflow-*`` CSS classes (set with ``add_class``), the stable hooks.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = [
    "BAD_WIDGET_TEXT",
    "bad_widget_text",
    "code_cell",
    "open_notebook",
    "prompt_js",
    "run_all",
    "run_cell_in_place",
    "wait_all_executed",
    "wait_kernel_idle",
    "wait_prompt_changed",
]

KERNEL_IDLE_JS = """() => {
  // window.jupyterapp: --LabApp.expose_app_in_browser (Notebook 7: its own flag)
  const app = window.jupyterapp;
  const w = app && app.shell && app.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session
    && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && k.connectionStatus === 'connected';
}"""

#: What ipywidgets shows instead of a widget it cannot render.
BAD_WIDGET_TEXT = (
    "Loading widget...",
    "Error displaying widget",
    "Error rendering",
    "model not found",
    "Failed to load model class",
)


def open_notebook(
    page: Any, srv: Any, path: str, ui: str = "lab", timeout: float = 120_000
) -> dict:
    """Open ``path`` in JupyterLab (``ui="lab"``) or Notebook 7 (``"notebook"``)
    and wait until its kernel is connected and idle; return timings in s."""
    t0 = time.monotonic()
    url = f"/lab/tree/{path}?reset" if ui == "lab" else f"/notebooks/{path}"
    page.goto(srv.url(url), timeout=timeout)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout)
    t_dom = time.monotonic() - t0
    wait_kernel_idle(page, timeout)
    return {
        "notebook_dom_s": round(t_dom, 2),
        "kernel_idle_s": round(time.monotonic() - t0, 2),
    }


def wait_kernel_idle(page: Any, timeout: float = 120_000) -> None:
    """Wait until the notebook's kernel is connected and idle.

    The toolbar's execution indicator says idle before the kernel is connected,
    so ask the application instead.
    """
    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout, polling=200)


def run_all(page: Any) -> None:
    """Run every cell: the Run menu's *Run All Cells*."""
    page.locator('.lm-MenuBar-itemLabel:text-is("Run")').first.click()
    page.locator('.lm-Menu .lm-Menu-itemLabel:text-is("Run All Cells")').first.click()


def code_cell(page: Any, text: str) -> Any:
    """The first code cell whose source contains ``text``."""
    return page.locator(
        f".jp-Notebook .jp-CodeCell:has(.jp-InputArea-editor:has-text({text!r}))"
    ).first


def prompt_js(marker: str) -> str:
    """JS expression: the input prompt (``[*]:``, ``[3]:``) of the code cell
    whose source contains ``marker``."""
    return (
        "[...document.querySelectorAll('.jp-Notebook .jp-CodeCell')]"
        f".filter(c => (c.querySelector('.jp-InputArea-editor') || {{}})"
        f".textContent.includes({marker!r}))"
        ".map(c => c.querySelector('.jp-InputPrompt').textContent.trim())[0]"
    )


def wait_all_executed(page: Any, n_code_cells: int, timeout: float = 120_000) -> None:
    """Wait until every code cell shows a number prompt ``[n]:``."""
    page.wait_for_function(
        """(n) => {
          const ps = [...document.querySelectorAll(
              '.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
            .map(e => e.textContent.trim());
          return ps.length >= n && ps.every(p => /^\\[\\d+\\]:$/.test(p));
        }""",
        arg=n_code_cells, timeout=timeout, polling=200,
    )  # fmt: skip


def bad_widget_text(page: Any) -> list[str]:
    """The texts of widgets that did not render, found in the notebook."""
    body = page.locator(".jp-Notebook").inner_text()
    return [t for t in BAD_WIDGET_TEXT if t in body]


def run_cell_in_place(page: Any, cell: Any) -> None:
    """Select ``cell`` and run it with Ctrl+Enter (run, do not advance)."""
    cell.locator(".jp-InputPrompt").first.click()  # select it (command mode)
    page.keyboard.press("Control+Enter")


def wait_prompt_changed(
    page: Any, marker: str, before: str, timeout: float = 120_000
) -> None:
    """Wait until the cell with ``marker`` shows a number prompt other than
    ``before`` (it ran again and finished)."""
    page.wait_for_function(
        f"""() => {{ const p = {prompt_js(marker)};
             return p !== {before!r} && /^\\[\\d+\\]:$/.test(p); }}""",
        timeout=timeout, polling=200,
    )  # fmt: skip
