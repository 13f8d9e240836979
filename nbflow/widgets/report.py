"""Reports shown after a run: Dask's performance report inline, or our run timeline.

Both draw with no internet. Dask's report (written with ``mode="inline"``, see
``DaskExecutor(performance_report_path=...)``) and our timeline (Bokeh with its
resources inline) are whole HTML documents; each is shown in a sandboxed
``<iframe srcdoc=...>`` inside an ``ipywidgets.HTML``, so its scripts run
without touching the notebook page.

CSS hooks (stable, used by browser tests): ``div.nbflow-report`` holds an
``iframe.nbflow-report-frame``, and ``a.nbflow-report-link`` the link to the
report's file when there is one; the timeline's div also has
``nbflow-timeline``.
"""

from __future__ import annotations

import html
import os
import time
from typing import TYPE_CHECKING, Any

from nbflow.engine.run_state import STATE_COLORS
from nbflow.errors import NoReportError

if TYPE_CHECKING:
    import ipywidgets

    from nbflow.engine.run_state import RunSnapshot

__all__ = [
    "NoReportError",
    "embed_html",
    "render_report",
    "render_timeline",
    "report_html",
    "timeline_html",
    "timeline_rows",
]

_HEIGHT = 620


def embed_html(
    document: str,
    *,
    path: str | None = None,
    height: int = _HEIGHT,
    css_class: str = "nbflow-report",
) -> str:
    """Wrap a whole HTML ``document`` in a sandboxed ``<iframe srcdoc>`` in a ``<div>``.

    Parameters
    ----------
    document : str
        A complete HTML page (its scripts run inside the iframe only).
    path : str, optional
        A file to link to under the frame.
    height : int
        Of the frame, in pixels.
    css_class : str
        Classes of the wrapping ``<div>``.

    Returns
    -------
    str

    Examples
    --------
    >>> embed_html("<p>hi</p>").count('sandbox="allow-scripts"')
    1

    """
    srcdoc = html.escape(document, quote=True)
    link = ""
    if path:
        shown = html.escape(path)
        href = html.escape(_href(path), quote=True)
        link = (
            f'<div><a class="nbflow-report-link" href="{href}" target="_blank" '
            f'rel="noopener" {_OPEN_FILE}>{shown}</a></div>'
        )
    return (
        f'<div class="{html.escape(css_class, quote=True)}">'
        f'<iframe class="nbflow-report-frame" sandbox="allow-scripts" '
        f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" '
        f'srcdoc="{srcdoc}"></iframe>{link}</div>'
    )


#: A click on the report's link in a widget (which the page does not rewrite):
#: open the server's file URL of the path next to the notebook (Lab's
#: ``/lab/tree/DIR/NB``, Notebook 7's ``/notebooks/DIR/NB`` -> ``/files/DIR/``)
#: in a new tab, where the report draws, instead of Lab's HTML viewer, where it
#: stays blank until "Trust HTML". Elsewhere, the plain link.
_OPEN_FILE = (
    'onclick="var m=location.pathname.match('
    "/^(.*?)\\/(?:lab\\/tree|lab\\/workspaces\\/[^\\/]+\\/tree|notebooks|doc\\/tree)"
    "\\/((?:.*\\/)?)[^\\/]*$/);if(m){event.preventDefault();"
    "window.open(m[1]+'/files/'+m[2]+this.getAttribute('href'),'_blank','noopener');}\""
)


def _href(path: str) -> str:
    """A link the notebook server can open: relative to the working directory
    (the notebook's) when the file is below it, else the path as given.
    """
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return relative if not relative.startswith("..") else path


def report_html(source: Any, *, path: str | None = None) -> str:
    """The HTML that shows a Dask performance report inline.

    Parameters
    ----------
    source : DaskExecutor or str
        An executor after a run with ``performance_report_path`` (its
        ``performance_report`` and path are used), or the report's HTML.
    path : str, optional
        The report's file, to link to (default the executor's path).

    Returns
    -------
    str
        A ``<div class="nbflow-report">`` with the sandboxed iframe and the link.

    Raises
    ------
    NoReportError
        If ``source`` has no report.

    """
    if isinstance(source, str):
        document = source
    else:
        document = source.performance_report
        if path is None:
            path = getattr(source, "performance_report_path", None)
    if not document:
        raise NoReportError(source)
    return embed_html(document, path=path)


def render_report(source: Any, *, path: str | None = None) -> ipywidgets.HTML:
    """An ``ipywidgets.HTML`` showing a Dask performance report inline.

    Parameters
    ----------
    source : DaskExecutor or str
        See :func:`report_html`.
    path : str, optional
        The report's file, to link to.

    Returns
    -------
    ipywidgets.HTML

    Examples
    --------
    >>> from nbflow.executors import DaskExecutor  # doctest: +SKIP
    >>> ex = DaskExecutor(performance_report_path="report.html")  # doctest: +SKIP
    >>> flow.run(executor=ex)  # doctest: +SKIP
    >>> render_report(ex)  # doctest: +SKIP

    """
    import ipywidgets

    return ipywidgets.HTML(
        report_html(source, path=path), layout=ipywidgets.Layout(width="100%")
    )


def timeline_html(snapshot: RunSnapshot) -> str:
    """A standalone HTML page: when each task ran, drawn by Bokeh, resources inline.

    One row per task: a bar from its first start to its end, in its state's
    colour; for a mapped task, also thin bars for its first children. Below it,
    one row per place the tasks ran (a thread, a process, a Dask worker), with a
    bar for each task and each of those children: which task ran where, and when.

    Parameters
    ----------
    snapshot : RunSnapshot
        Of a :class:`~nbflow.engine.run_state.RunState`, usually at the end.

    Returns
    -------
    str
        A complete HTML document with BokehJS inlined (it draws offline).

    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    layout = _timeline_plot(snapshot, timeline_rows(snapshot))
    return str(
        file_html(
            layout, resources=INLINE, title=f"nbflow run timeline: {snapshot.flow_name}"
        )
    )


def timeline_rows(snapshot: RunSnapshot) -> dict[str, list[Any]]:
    """The bars of the run timeline, as columns (no Bokeh needed).

    One bar per task that started (height 0.7) and one per kept child of a
    mapped task (height 0.3); times in seconds since the run started.
    """
    zero = snapshot.started or 0.0
    end = snapshot.finished or time.time()
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "task",
            "left",
            "right",
            "height",
            "color",
            "state",
            "what",
            "seconds",
            "where",
        )
    }

    def add(
        task: str,
        start: float,
        stop: float,
        height: float,
        color: str,
        state: str,
        what: str,
        where: str | None,
    ) -> None:
        for key, value in zip(
            rows,
            (
                task,
                start - zero,
                stop - zero,
                height,
                color,
                state,
                what,
                round(stop - start, 4),
                where or "",
            ),
        ):
            rows[key].append(value)

    for t in snapshot.tasks:
        if t.start is None:
            continue
        add(
            t.name,
            t.start,
            t.end or end,
            0.7,
            t.color,
            t.state,
            f"{t.size} children" if t.size is not None else "task",
            None if t.size is not None else t.where,
        )
        for index, start, stop, state, where in t.spans:
            add(
                t.name,
                start,
                stop,
                0.3,
                STATE_COLORS.get(state, "#333333"),
                state,
                f"child {index}",
                where,
            )
        for where, start, stop, count in t.busy:  # all the other children
            add(t.name, start, stop, 0.3, t.color, "busy",
                f"{count} children, merged", where)
    return rows


def _timeline_plot(snapshot: RunSnapshot, rows: dict[str, list[Any]]) -> Any:
    """The Bokeh layout of the timeline: tasks, then places, over ``rows``."""
    from bokeh.layouts import column
    from bokeh.models import (
        BasicTickFormatter,
        ColumnDataSource,
        FactorRange,
        HoverTool,
    )
    from bokeh.plotting import figure

    names = [t.name for t in snapshot.tasks]
    plot = figure(
        title=f"Run timeline of flow {snapshot.flow_name!r} ({snapshot.state})",
        y_range=FactorRange(factors=list(reversed(names))),
        min_border_left=_LABELS,  # both plots' time axes start at one x
        x_axis_label="seconds since the run started",
        height=max(160, 60 + 28 * len(names)),
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
    )
    plot.hbar(
        y="task",
        left="left",
        right="right",
        height="height",
        color="color",
        source=ColumnDataSource(rows),
        line_color="#222222",
        line_width=0.5,
    )
    plot.xaxis.formatter = BasicTickFormatter(use_scientific=False)
    plot.add_tools(
        HoverTool(
            tooltips=[
                ("task", "@task"),
                ("", "@what"),
                ("state", "@state"),
                ("start", "@left{0.000} s"),
                ("duration", "@seconds{0.000} s"),
            ]
        )
    )
    places = _places(rows)
    if not places:
        return plot
    return column(plot, _by_place(rows, places, plot), sizing_mode="stretch_width")


#: Room for the row labels of both timeline plots, so their time axes line up.
_LABELS = 220


def _places(rows: dict[str, list[Any]]) -> list[str]:
    """The places tasks ran, in the order they were first used."""
    order = sorted(zip(rows["left"], rows["where"]))
    return list(dict.fromkeys(where for _, where in order if where))


def _by_place(rows: dict[str, list[Any]], places: list[str], above: Any) -> Any:
    """The timeline's second plot: one row per place, a bar per task run there."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure

    keep = [i for i, where in enumerate(rows["where"]) if where]
    source = ColumnDataSource({k: [v[i] for i in keep] for k, v in rows.items()})
    plot = figure(
        title="Where the tasks ran (each child of a mapped task; many: merged)",
        y_range=FactorRange(factors=list(reversed(places))),
        x_range=above.x_range,
        min_border_left=_LABELS,
        x_axis_label="seconds since the run started",
        height=max(140, 60 + 28 * len(places)),
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
    )
    plot.hbar(
        y="where", left="left", right="right", height=0.7, color="color",
        source=source, line_color="#222222", line_width=0.5,
    )
    plot.add_tools(
        HoverTool(
            tooltips=[
                ("task", "@task"),
                ("", "@what"),
                ("where", "@where"),
                ("state", "@state"),
                ("duration", "@seconds{0.000} s"),
            ]
        )
    )
    return plot


def render_timeline(snapshot: RunSnapshot) -> ipywidgets.HTML:
    """An ``ipywidgets.HTML`` showing :func:`timeline_html` in a sandboxed iframe.

    Parameters
    ----------
    snapshot : RunSnapshot

    Returns
    -------
    ipywidgets.HTML

    """
    import ipywidgets

    places = {t.where for t in snapshot.tasks if t.size is None and t.where}
    places.update(span[4] for t in snapshot.tasks for span in t.spans if span[4])
    places.update(busy[0] for t in snapshot.tasks for busy in t.busy if busy[0])
    height = max(220, 110 + 28 * len(snapshot.tasks))
    if places:  # the second plot, one row per place
        height += max(140, 60 + 28 * len(places)) + 20
    height = min(_HEIGHT, height)
    page = embed_html(
        timeline_html(snapshot),
        height=height,
        css_class="nbflow-report nbflow-timeline",
    )
    return ipywidgets.HTML(page, layout=ipywidgets.Layout(width="100%"))
