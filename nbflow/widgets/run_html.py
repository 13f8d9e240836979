"""HTML of a run snapshot: the header, the task table, and the static page.

Pure functions of a :class:`~nbflow.widgets.run_state.RunSnapshot` (no
ipywidgets): the live :class:`~nbflow.widgets.run_view.RunView` puts them in
its widgets, and the same HTML is what a saved notebook shows without a kernel.

CSS hooks (stable, used by browser tests): ``nbflow-run-view`` on the root;
``tr.nbflow-task`` per task with ``data-task="<label>"`` and
``nbflow-state-<state>`` (e.g. ``nbflow-state-trigger-failed``), its state name
as the text of ``span.nbflow-task-state``; ``div.nbflow-map-progress`` bars of
mapped tasks; ``span.nbflow-elapsed``; ``a.nbflow-dashboard``;
``details.nbflow-error`` with the traceback in ``pre``.
"""

from __future__ import annotations

import html

from nbflow.engine.run_state import RunSnapshot, TaskSnapshot, state_class

__all__ = ["format_seconds", "header_html", "snapshot_html", "table_html"]

_STYLE = (
    "<style>.nbflow-run-view table.nbflow-tasks{border-collapse:collapse;"
    "font-size:13px}.nbflow-run-view .nbflow-tasks td,.nbflow-run-view "
    ".nbflow-tasks th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}"
    ".nbflow-run-view .nbflow-dot{display:inline-block;width:10px;height:10px;"
    "border-radius:5px;margin-right:4px}.nbflow-run-view .nbflow-bar{width:140px;"
    "height:10px;background:#eee;display:inline-block;vertical-align:middle}"
    ".nbflow-run-view pre{white-space:pre-wrap;font-size:12px}</style>"
)


def format_seconds(seconds: float | None) -> str:
    """``1.23 s``, ``2 min 5 s``, or ``""`` for None.

    Examples
    --------
    >>> format_seconds(125.2)
    '2 min 5 s'

    """
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def header_html(snapshot: RunSnapshot) -> str:
    """Flow name, its state, elapsed time and the Dask dashboard link."""
    state = snapshot.state or ("Running" if snapshot.started else "Pending")
    parts = [
        f"<b>{html.escape(snapshot.flow_name or 'flow')}</b>",
        f'<span class="nbflow-flow-state {state_class(state)}">{state}</span>',
        f'<span class="nbflow-elapsed">{format_seconds(snapshot.elapsed)}</span>',
        f"{snapshot.progress:.0%}",
    ]
    if snapshot.dashboard_link:
        href = html.escape(snapshot.dashboard_link, quote=True)
        parts.append(
            f'<a class="nbflow-dashboard" href="{href}" target="_blank" '
            'rel="noopener">Dask dashboard</a>'
        )
    if snapshot.is_finished and snapshot.message:
        parts.append(f"<i>{html.escape(snapshot.message)}</i>")
    return '<div class="nbflow-run-header">' + " · ".join(parts) + "</div>"


def _bar(task: TaskSnapshot) -> str:
    """A mapped task's children done (and failed) out of its size."""
    if task.size is None:
        return ""
    total = max(task.size, 1)
    succeeded = task.done - task.failed - task.cancelled
    segments = "".join(
        f'<span style="display:inline-block;height:100%;width:{100 * n / total:.1f}%;'
        f'background:{color}"></span>'
        for n, color in ((succeeded, "#28a745"), (task.failed, "#dc3545"),
                         (task.cancelled, "#6c757d"))
    )
    notes = "".join(f", {n} {what}" for n, what in
                    ((task.failed, "failed"), (task.cancelled, "cancelled")) if n)
    return (
        f'<div class="nbflow-map-progress" data-done="{task.done}" '
        f'data-failed="{task.failed}" data-total="{task.size}" '
        f'data-cancelled="{task.cancelled}">'
        f'<span class="nbflow-bar">{segments}</span> '
        f"{task.done}/{task.size}{notes}</div>"
    )


def _row(task: TaskSnapshot, *, details: bool) -> str:
    name = html.escape(task.name, quote=True)
    message = html.escape(task.message or "")
    if details and task.traceback and task.state in ("Failed", "TriggerFailed"):
        message = (
            f'<details class="nbflow-error"><summary>{message}</summary>'
            f"<pre>{html.escape(task.traceback)}</pre></details>"
        )
    return (
        f'<tr class="nbflow-task {state_class(task.state)}" data-task="{name}">'
        f"<td>{html.escape(task.name)}</td>"
        f'<td style="white-space:nowrap"><span class="nbflow-dot" style="background:{task.color}"></span>'
        f'<span class="nbflow-task-state">{task.state}</span></td>'
        f'<td class="nbflow-duration">{format_seconds(task.duration)}</td>'
        f"<td>{_bar(task)}</td><td>{message}</td></tr>"
    )


def table_html(snapshot: RunSnapshot, *, details: bool = False) -> str:
    """The task table; with ``details``, failed tasks' tracebacks in ``<details>``."""
    rows = "".join(_row(t, details=details) for t in snapshot.tasks)
    return (
        '<table class="nbflow-tasks"><thead><tr><th>task</th><th>state</th>'
        "<th>duration</th><th>children</th><th>message</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def snapshot_html(snapshot: RunSnapshot, svg: str = "") -> str:
    """A self-contained page fragment of the run: header, table, graph picture.

    It is what a notebook saved after the run shows with no kernel (GitHub,
    nbviewer): static HTML, no script.
    """
    return (
        f'<div class="nbflow-run-view nbflow-static">{_STYLE}{header_html(snapshot)}'
        f"{table_html(snapshot, details=True)}{svg}</div>"
    )
