"""HTML of a run snapshot: the header, the task table, and the static page.

Pure functions of a :class:`~nbflow.engine.run_state.RunSnapshot` (no
ipywidgets): the live :class:`~nbflow.widgets.run_view.RunView` puts them in
its widgets, and the same HTML is what a saved notebook shows without a kernel.

CSS hooks (stable, used by browser tests): ``nbflow-run-view`` on the root;
``tr.nbflow-task`` per task with ``data-task="<label>"`` and
``nbflow-state-<state>`` (e.g. ``nbflow-state-trigger-failed``), its state name
as the text of ``span.nbflow-task-state``; ``div.nbflow-map-progress`` bars of
mapped tasks; ``span.nbflow-elapsed``; ``a.nbflow-dashboard``;
``details.nbflow-error`` with the traceback in ``pre``; in the static snapshot,
``img.nbflow-graph-img`` and ``img.nbflow-timeline-img``.

Where our stylesheet does not apply (GitHub's notebook preview keeps no
``<style>``, ``class``, ``style`` or ``<svg>``), the snapshot still reads: each
state has a mark and a word (``✓ Success``, ``✗ Failed``, ``⊘ TriggerFailed``;
the row's mark is hidden where its coloured dot shows), bars have their counts
as text, and the pictures are ``<img>`` of SVG data (with the graph in words as
their ``alt`` text).
"""

from __future__ import annotations

import base64
import html
import re
import time

from nbflow.engine.run_state import STATE_COLORS, RunSnapshot, TaskSnapshot, state_class

__all__ = [
    "FOLD",
    "STYLE",
    "failure_title",
    "format_interval",
    "format_seconds",
    "header_html",
    "progress_text",
    "snapshot_html",
    "state_mark",
    "svg_image",
    "table_html",
    "timeline_svg",
    "user_traceback",
]

#: The run view's stylesheet, for the live widget and the static snapshot alike.
#: Only our own classes, so no page rule (Lab, Notebook 7, Voila, nbviewer) is
#: needed or changed; Jupyter's theme variables, with light fallbacks outside
#: Jupyter, so the dark theme reads as well as the light one.
STYLE = (
    ".nbflow-run-view{color:var(--jp-ui-font-color1,#1f1f1f);"
    "font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px}"
    ".nbflow-run-view .nbflow-run-header{margin:2px 0 4px}"
    ".nbflow-run-view table.nbflow-tasks{border-collapse:collapse;font-size:13px;"
    "margin:2px 0;color:inherit;background:transparent}"
    ".nbflow-run-view table.nbflow-tasks td,.nbflow-run-view table.nbflow-tasks th{"
    "padding:2px 8px;text-align:left;vertical-align:top;border:none;"
    "border-bottom:1px solid var(--jp-border-color2,#e0e0e0)}"
    ".nbflow-run-view table.nbflow-tasks th{font-weight:600;"
    "color:var(--jp-ui-font-color2,#616161)}"
    ".nbflow-run-view table.nbflow-tasks tbody tr:nth-child(odd){background:transparent}"
    ".nbflow-run-view .nbflow-dot{display:inline-block;width:10px;height:10px;"
    "border-radius:5px;margin-right:4px;vertical-align:middle}"
    ".nbflow-run-view .nbflow-bar{width:140px;height:10px;display:inline-flex;"
    "vertical-align:middle;overflow:hidden;border-radius:2px;"
    "background:var(--jp-layout-color3,#e8e8e8)}"
    ".nbflow-run-view .nbflow-bar>span{display:block;height:100%}"
    ".nbflow-run-view .nbflow-duration,.nbflow-run-view .nbflow-progress-text,"
    ".nbflow-run-view .nbflow-map-progress{font-variant-numeric:tabular-nums;"
    "white-space:nowrap}"
    ".nbflow-run-view pre.nbflow-traceback,.nbflow-code pre,.nbflow-code code{"
    "font-family:var(--jp-code-font-family,SFMono-Regular,Menlo,Consolas,"
    "'DejaVu Sans Mono',monospace);font-size:var(--jp-code-font-size,12px);"
    "line-height:1.35;white-space:pre-wrap;overflow-x:auto;margin:4px 0;padding:4px;"
    "color:var(--jp-content-font-color1,#1f1f1f);"
    "background:var(--jp-cell-editor-background,#f7f7f7)}"
    ".nbflow-run-view .nbflow-graph-box{max-width:100%;max-height:520px;overflow:auto}"
    ".nbflow-run-view .nbflow-graph-box>svg,.nbflow-run-view .nbflow-graph-box>img{"
    "max-width:none;height:auto}"
    # the marks are for pages without this stylesheet; here the dot shows
    ".nbflow-run-view .nbflow-mark{display:none}"
    ".nbflow-run-view tr.nbflow-folded td{color:var(--jp-ui-font-color2,#616161);"
    "font-style:italic}"
    ".nbflow-run-view a.nbflow-dashboard{color:var(--jp-content-link-color,#1a73e8);"
    "text-decoration:underline}"
    # Each state's dot, from here only: where this stylesheet is dropped (an
    # untrusted notebook in Lab, GitHub) no stray coloured box is left, and the
    # mark says the state. TriggerFailed is a ring (it did not run: its
    # upstream failed), so it does not look like the task that failed.
    ".nbflow-run-view .nbflow-dot{background:#999999}"
    + "".join(f".nbflow-run-view .{state_class(name)}>td>.nbflow-dot{{background:{color}}}"
              for name, color in sorted(STATE_COLORS.items())
              if name not in ("State", "_MetaState"))
    + ".nbflow-run-view .nbflow-state-trigger-failed>td>.nbflow-dot{background:transparent;"
    f"border:2px solid {STATE_COLORS['TriggerFailed']};box-sizing:border-box}}"
)
_STYLE = f"<style>{STYLE}</style>"


#: Prefect 1's states the progress text counts besides failed and cancelled
#: (Skipped and Cached are successes, TimedOut a failure, as in Prefect).
_COUNTED = {
    "Skipped": "skipped",
    "Cached": "cached",
    "TimedOut": "timed out",
    "Looped": "looping",
    "Paused": "paused",
    "Retrying": "retrying",
}
#: States of a task that failed on its own (not TriggerFailed: it did not run).
_FAILED_ITSELF = ("Failed", "TimedOut")
#: A character per state, so that a page without our stylesheet (GitHub's
#: notebook preview) says it by more than a colour; and a colour-blind reader too.
_MARKS = {
    "Pending": "○", "Scheduled": "○", "Submitted": "○", "Queued": "○",
    "Paused": "‖", "Resume": "↻", "Retrying": "↻", "Looped": "↻",
    "Running": "●",
    "Success": "✓", "Mapped": "✓", "Cached": "✓", "Skipped": "✓",
    "Failed": "✗", "TimedOut": "✗", "TriggerFailed": "⊘",
    "Cancelled": "■",
}


def state_mark(state: str) -> str:
    """The character that marks ``state``: ✓ done, ✗ failed, ⊘ did not run
    (TriggerFailed), ● running, ○ waiting, ↻ again, ■ cancelled.

    Examples
    --------
    >>> state_mark("Success"), state_mark("TriggerFailed")
    ('✓', '⊘')

    """
    return _MARKS.get(state, "•")


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


def format_interval(seconds: float) -> str:
    """Tqdm's clock: ``MM:SS``, or ``H:MM:SS`` from an hour.

    Examples
    --------
    >>> format_interval(65.4), format_interval(3725)
    ('01:05', '1:02:05')

    """
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_text(snapshot: RunSnapshot) -> str:
    """The run's work as tqdm shows it: ``28% 280/1,000 [00:04<00:10, 70.00 it/s]``,
    then what failed or was cancelled (a task is one unit of work, each child
    of a mapped task one).

    Examples
    --------
    >>> from nbflow.engine.run_state import RunState
    >>> progress_text(RunState().snapshot())
    '0% 0/0'

    """
    done, failed, cancelled, total = snapshot.units
    text = f"{snapshot.progress:.0%} {done:,}/{total:,}"
    if snapshot.started is not None:
        clock = format_interval(snapshot.elapsed)
        remaining = snapshot.remaining
        if not snapshot.is_finished:
            clock += "<" + (format_interval(remaining) if remaining is not None else "?")
        rate = snapshot.rate
        if rate is None:
            speed = "? it/s"
        elif rate >= 1 or rate == 0:
            speed = f"{rate:,.2f} it/s"
        else:
            speed = f"{1 / rate:,.2f} s/it"
        text += f" [{clock}, {speed}]"
    notes = [f"{n:,} {what}" for n, what in ((failed, "failed"), (cancelled, "cancelled"))
             if n]
    counts = snapshot.counts
    notes += [f"{counts[state]:,} {what}" for state, what in _COUNTED.items()
              if counts.get(state)
              and (state not in ("Retrying", "Looped") or not snapshot.is_finished)]
    if snapshot.is_finished and total - done - failed - cancelled:
        notes.append(f"{total - done - failed - cancelled:,} not run")
    return " · ".join([text, *notes])


def _headline(snapshot: RunSnapshot) -> str:
    """What the run came to, in the user's words (not Prefect's "reference tasks")."""
    failed = [t.name for t in snapshot.tasks if t.state in _FAILED_ITSELF]
    skipped = sum(1 for t in snapshot.tasks if t.state == "TriggerFailed")
    if snapshot.state == "Success":
        return ""  # the state and the progress text say it
    if failed:
        names = ", ".join(repr(n) for n in failed[:3]) + (" ..." if len(failed) > 3 else "")
        text = f"{names} failed"
        if skipped:
            text += f"; {skipped} {'task' if skipped == 1 else 'tasks'} after it did not run"
        return text + "."
    return snapshot.message or ""


def header_html(
    snapshot: RunSnapshot,
    *,
    starting: tuple[str, float] | None = None,
    dashboard_alive: bool = True,
    progress: bool = True,
) -> str:
    """Flow name, its state, elapsed time, the progress text (unless not
    ``progress``: the live view shows it by its bar) and the Dask dashboard link.

    ``starting`` is ``(what, since)`` while the executor starts (a cluster, a
    process pool), shown with its own clock instead of a frozen "Pending";
    without ``dashboard_alive`` (the cluster is gone) the dashboard is named,
    not linked.
    """
    state = snapshot.state or ("Running" if snapshot.started else "Pending")
    if starting is not None and snapshot.started is None:
        what, since = starting
        return (
            f'<div class="nbflow-run-header"><b>{html.escape(snapshot.flow_name or "flow")}'
            f'</b> · <span class="nbflow-starting">{html.escape(what)}</span> · '
            f'<span class="nbflow-elapsed">{format_seconds(time.time() - since)}</span></div>'
        )
    parts = [
        f"<b>{html.escape(snapshot.flow_name or 'flow')}</b>",
        f'<span class="nbflow-flow-mark" style="color:{STATE_COLORS.get(state, "inherit")}">'
        f"{state_mark(state)}</span> "
        f'<span class="nbflow-flow-state {state_class(state)}">{state}</span>',
        f'<span class="nbflow-elapsed">{format_seconds(snapshot.elapsed)}</span>',
    ]
    if progress:
        parts.append(f'<span class="nbflow-progress-text">'
                     f"{html.escape(progress_text(snapshot))}</span>")
    if snapshot.dashboard_link and dashboard_alive:
        href = html.escape(snapshot.dashboard_link, quote=True)
        parts.append(
            f'<a class="nbflow-dashboard" href="{href}" target="_blank" '
            'rel="noopener">Dask dashboard</a>'
        )
    elif snapshot.dashboard_link:
        parts.append('<span class="nbflow-dashboard-gone">Dask dashboard (closed with '
                     "its cluster)</span>")
    headline = _headline(snapshot) if snapshot.is_finished else ""
    if headline:
        parts.append(f'<i class="nbflow-headline">{html.escape(headline)}</i>')
    return '<div class="nbflow-run-header">' + " · ".join(parts) + "</div>"


def _bar(task: TaskSnapshot) -> str:
    """A mapped task's children done (and failed) out of its size."""
    if task.size is None:
        return ""
    total = max(task.size, 1)
    succeeded, failed, cancelled, _ = task.units
    # Skipped and Cached children are successes, TimedOut ones failures (as in
    # Prefect), each in its own colour.
    kinds = {s: task.children.get(s, 0) for s in ("Skipped", "Cached", "TimedOut")}
    parts = (
        (succeeded - kinds["Skipped"] - kinds["Cached"], STATE_COLORS["Success"]),
        (kinds["Cached"], STATE_COLORS["Cached"]),
        (kinds["Skipped"], STATE_COLORS["Skipped"]),
        (failed - kinds["TimedOut"], STATE_COLORS["Failed"]),
        (kinds["TimedOut"], STATE_COLORS["TimedOut"]),
        (cancelled, STATE_COLORS["Cancelled"]),
    )
    segments = "".join(
        f'<span style="width:{100 * n / total:.1f}%;'
        f'background:{color}"></span>'
        for n, color in parts if n > 0
    )
    notes = "".join(f", {n:,} {what}" for n, what in
                    ((failed, "failed"), (cancelled, "cancelled"),
                     (kinds["Skipped"], "skipped"), (kinds["Cached"], "cached"),
                     (kinds["TimedOut"], "timed out")) if n)
    return (
        f'<div class="nbflow-map-progress" data-done="{succeeded}" '
        f'data-failed="{failed}" data-total="{task.size}" '
        f'data-cancelled="{cancelled}">'
        f'<span class="nbflow-bar">{segments}</span> '
        f"{succeeded:,}/{task.size:,}{notes}</div>"
    )


def _row(task: TaskSnapshot, *, details: bool, data: bool = False) -> str:
    name = html.escape(task.name, quote=True)
    message = html.escape(_message(task))
    if details and task.traceback and task.state in (*_FAILED_ITSELF, "TriggerFailed"):
        message = (
            f'<details class="nbflow-error"><summary>{message}</summary>'
            f'<pre class="nbflow-traceback">{html.escape(user_traceback(task))}</pre>'
            "</details>"
        )
    return (
        f'<tr class="nbflow-task {state_class(task.state)}" data-task="{name}">'
        f"<td>{html.escape(task.name)}</td>"
        # the style beats the page's td rules (Lab's); `nowrap` stays where
        # style attributes are dropped (GitHub)
        f'<td nowrap style="white-space:nowrap"><span class="nbflow-dot"></span>'
        f'<span class="nbflow-mark">{state_mark(task.state)} </span>'
        f'<span class="nbflow-task-state">{task.state}</span>{_attempts(task)}</td>'
        f'<td class="nbflow-duration">{format_seconds(task.duration)}</td>'
        f"<td>{_bar(task)}</td><td>{message}</td>"
        + (f'<td class="nbflow-lives">{html.escape(task.lives or "")}</td>' if data else "")
        + "</tr>"
    )


def _attempts(task: TaskSnapshot) -> str:
    """`` · 3 attempts`` for a task that was retried (`` · 2 retries`` for a map)."""
    if not task.retries:
        return ""
    if task.size is not None:
        text = f"{task.retries} {'retry' if task.retries == 1 else 'retries'}"
    else:
        text = f"{task.retries + 1} attempts"
    return f' <span class="nbflow-attempts">· {text}</span>'


def user_traceback(task: TaskSnapshot) -> str:
    """The task's traceback from the user's own frames (no cell-runner frame)."""
    from nbflow.notebook.runtime import strip_runtime_frames

    return strip_runtime_frames(task.traceback or "")


def _message(task: TaskSnapshot) -> str:
    """The task's message; for a mapped task, which child failed first."""
    if task.failed_index is None:
        return task.message or ""
    more = task.failed - 1
    others = f" (and {more:,} more)" if more > 0 else ""
    why = (task.message or "").removeprefix(f"Task {task.name!r} failed: ")
    return f"{task.name}[{task.failed_index}] failed{others}: {why}"


def failure_title(task: TaskSnapshot) -> str:
    """The title of a failed task's traceback: which task (or child), and why."""
    if task.failed_index is not None:
        return _message(task)
    return f"{task.name}: {task.message or task.state}"


#: Rows of the task table shown before the rest is folded.
FOLD = 20
_HEAD = (
    '<table class="nbflow-tasks"><thead><tr><th>task</th><th>state</th>'
    "<th>duration</th><th>children</th><th>message</th></tr></thead>"
)
#: ... with the column saying where each value lives (a run that left any on
#: a cluster).
_HEAD_DATA = _HEAD.replace("<th>message</th>", "<th>message</th><th>data</th>")


def table_html(snapshot: RunSnapshot, *, details: bool = False, fold: int = FOLD) -> str:
    """The task table; with ``details``, failed tasks' tracebacks in ``<details>``.

    A long table shows ``fold`` rows: the tasks running, retrying or failed, then
    the first ones. The rest is one summary row (counts by state) in the live
    view (``details`` off: only what is shown is sent), and a ``<details>``
    with all their rows in the static snapshot (``details`` on).
    """
    tasks = snapshot.tasks
    data = any(t.lives not in (None, "here") for t in tasks)
    head, columns = (_HEAD_DATA, 6) if data else (_HEAD, 5)
    if len(tasks) <= fold:
        rows = "".join(_row(t, details=details, data=data) for t in tasks)
        return f"{head}<tbody>{rows}</tbody></table>"
    urgent = [i for i, t in enumerate(tasks)
              if t.state in ("Running", "Retrying", *_FAILED_ITSELF)][:fold]
    chosen = set(urgent)
    for i in range(len(tasks)):
        if len(chosen) >= fold:
            break
        chosen.add(i)
    shown = "".join(_row(tasks[i], details=details, data=data) for i in sorted(chosen))
    rest = [t for i, t in enumerate(tasks) if i not in chosen]
    counts: dict[str, int] = {}
    for t in rest:
        counts[t.state] = counts.get(t.state, 0) + 1
    summary = (f"{len(rest):,} more tasks: "
               + ", ".join(f"{n:,} {state}" for state, n in counts.items()))
    if not details:
        return (f'{head}<tbody>{shown}<tr class="nbflow-folded"><td colspan="{columns}">'
                f"{html.escape(summary)}</td></tr></tbody></table>")
    more = "".join(_row(t, details=details, data=data) for t in rest)
    return (f"{head}<tbody>{shown}</tbody></table>"
            f'<details class="nbflow-folded"><summary>{html.escape(summary)}</summary>'
            f"{head}<tbody>{more}</tbody></table></details>")


def timeline_svg(snapshot: RunSnapshot, width: int = 560) -> str:
    """When each task ran, as a small static SVG: a bar per task from its first
    start to its end, in its state's colour (a mapped task's bar spans all its
    children), dark text on a light card (it is shown as an image, where no
    theme colour reaches it). Empty before the run started.
    """
    rows = [t for t in snapshot.tasks if t.start is not None]
    if snapshot.started is None or not rows:
        return ""
    end = max([snapshot.finished or 0.0, *((t.end or t.start or 0.0) for t in rows)])
    span = max(end - snapshot.started, 1e-9)
    label_w, row_h = 150, 16
    plot_w = width - label_w - 70
    parts = []
    for i, t in enumerate(rows):
        y = 4 + i * row_h
        x0 = label_w + plot_w * ((t.start or snapshot.started) - snapshot.started) / span
        x1 = label_w + plot_w * ((t.end or end) - snapshot.started) / span
        name = t.name if len(t.name) <= 22 else t.name[:21] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 11}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 1.5):.1f}" height="{row_h - 4}"'
            f' fill="{t.color}"><title>{html.escape(t.name)}: {t.state}, '
            f"{format_seconds(t.duration)}</title></rect>"
            f'<text x="{max(x1, x0 + 1.5) + 4:.1f}" y="{y + 11}">'
            f"{format_seconds(t.duration)}</text>"
        )
    height = 8 + len(rows) * row_h + 14
    axis = (f'<text x="{label_w}" y="{height - 3}">0 s</text>'
            f'<text x="{label_w + plot_w}" y="{height - 3}" text-anchor="end">'
            f"{format_seconds(span)}</text>")
    return (
        f'<svg class="nbflow-timeline-svg" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="11" '
        f'fill="#333"><rect width="100%" height="100%" rx="4" fill="#fcfcfc"/>'
        f"{''.join(parts)}{axis}</svg>"
    )


_SIZE = re.compile(r'<svg\b[^>]*?\swidth="([\d.]+)"[^>]*?\sheight="([\d.]+)"')


def svg_image(svg: str, *, alt: str, cls: str) -> str:
    """``svg`` as an ``<img>`` of a base64 ``data:`` URI, ``alt`` its words.

    The picture every renderer shows: GitHub's notebook preview drops inline
    ``<svg>`` (its labels would spill out as loose text) but keeps images with
    data URIs, and turns inline SVG into such images itself. Anything that is
    not an ``<svg>`` (a note that a graph is too big to draw) is returned as is.

    Examples
    --------
    >>> svg_image('<svg width="10" height="5"></svg>', alt="x", cls="c")[:48]
    '<img class="c" src="data:image/svg+xml;base64,PH'

    """
    if not svg.startswith("<svg"):
        return svg
    data = base64.b64encode(svg.encode()).decode("ascii")
    match = _SIZE.match(svg)
    size = f' width="{match[1]}" height="{match[2]}"' if match else ""
    return (f'<img class="{cls}" src="data:image/svg+xml;base64,{data}"{size} '
            f'alt="{html.escape(alt, quote=True)}">')


def _graph_box(svg: str, alt: str) -> str:
    """The graph picture in a box that scrolls rather than cut a big graph."""
    if not svg:
        return ""
    return (f'<div class="nbflow-graph-box">'
            f'{svg_image(svg, alt=alt, cls="nbflow-graph-img")}</div>')


def snapshot_html(
    snapshot: RunSnapshot,
    svg: str = "",
    extra: str = "",
    *,
    dashboard_alive: bool = True,
    graph_alt: str = "",
) -> str:
    """A self-contained page fragment of the run: header, table, graph picture
    (an image of ``svg``, ``graph_alt`` its words), then ``extra`` (the
    executor, the timeline, a link to the report).

    It is what a notebook saved after the run shows with no kernel (Lab,
    Notebook 7, VS Code, nbconvert, GitHub, nbviewer): static HTML, no script,
    readable without its stylesheet.
    """
    alt = graph_alt or f"Graph of flow {snapshot.flow_name or 'flow'!r}"
    return (
        f'<div class="nbflow-run-view nbflow-static">{_STYLE}'
        f"{header_html(snapshot, dashboard_alive=dashboard_alive)}"
        f"{table_html(snapshot, details=True)}{_graph_box(svg, alt)}{extra}</div>"
    )
