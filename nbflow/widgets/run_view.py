"""``RunView``: a flow run watched live in the notebook, and runs in the background.

A :class:`RunView` is an ipywidgets ``VBox`` and an events listener:
``flow.run(listeners=[view])``. It feeds a :class:`~nbflow.engine.run_state.RunState`
and redraws from its snapshot in a thread of its own at most every ``interval``
seconds (0.1 by default), so a 10,000-child map is not slowed by its display;
the final state is always drawn, in the event bus thread, before ``run()``
returns. When the run ends, the displayed output is updated to carry the final
state as plain HTML too, so the saved notebook shows it without a kernel.

:func:`run_with_view` runs a flow with a view, in the background if asked, as
a :class:`~nbflow.notebook.NotebookRun` (the handle ``%flow run`` gives too);
the view's Cancel button then stops it as Ctrl-C would.

CSS hooks (stable, used by browser tests): the root has class
``nbflow-run-view``; ``nbflow-task`` rows, ``nbflow-state-<state>`` classes and
``span.nbflow-task-state`` (see :mod:`nbflow.widgets.run_html`); the graph
``svg.nbflow-graph`` with ``g.nbflow-node[data-task]`` (see
:mod:`nbflow.widgets.graph`); ``nbflow-cancel`` on the Cancel button,
``nbflow-errors`` on the accordion of failed tasks' tracebacks,
``nbflow-progress`` on the overall progress bar; reports in ``div.nbflow-report``.
"""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets

from nbflow.engine.events import Event, FlowFinished, FlowStarted
from nbflow.engine.run_state import RunSnapshot, RunState, shown_edges, shown_tasks
from nbflow.engine.runner import FlowRun
from nbflow.notebook.run import NotebookRun
from nbflow.widgets._snapshot import StaticSnapshot
from nbflow.widgets.graph import (
    MAX_NODES,
    GraphLayout,
    describe_graph,
    layout_graph,
    render_svg,
)
from nbflow.widgets.report import _href, render_report, render_timeline
from nbflow.widgets.run_html import (
    STYLE,
    failure_title,
    header_html,
    progress_text,
    snapshot_html,
    svg_image,
    table_html,
    timeline_svg,
    user_traceback,
)

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.core.task import Task
    from nbflow.engine.state import State
    from nbflow.executors.base import Executor

__all__ = ["RunView", "run_with_view", "starting_text"]

log = logging.getLogger(__name__)

#: How the report's link opens the file so that it draws: JupyterLab and
#: Notebook 7 point a relative link at the server's file URL but open it in
#: their HTML viewer, where a report stays blank until "Trust HTML"; with
#: ``download`` they leave the click alone, and this opens the file URL in a
#: new tab, where the report's scripts run. (Where outputs are not trusted the
#: handler is removed and the file downloads.)
_OPEN_IN_TAB = ('onclick="event.preventDefault();'
                "window.open(this.href, '_blank', 'noopener')\"")

#: The graph picture's share of a live view's traffic, at most (bytes/second).
GRAPH_BYTES_PER_S = 40_000
_BAR_STYLE = {"Success": "success", "Failed": "danger", "Cancelled": "warning"}


class RunView(StaticSnapshot, ipywidgets.VBox):
    """Watch a flow run: task states, progress, the graph, errors, the report.

    Parameters
    ----------
    flow : Flow, optional
        Its edges draw the graph picture (without it, tasks are drawn unlinked).
    run : NotebookRun or FlowRun, optional
        The run the Cancel button cancels (see :meth:`attach`).
    executor : Executor, optional
        The run's executor, when it is not ``flow.executor`` nor the attached
        run's: a ``DaskExecutor``'s performance report is shown after the run.
    interval : float
        Seconds between redraws at least.
    timeline : bool
        Draw the run timeline as soon as a run (not a Dask one with a
        performance report, which is shown instead) ends; else on a click.

    Attributes
    ----------
    run_state : RunState
        What the view shows; ``run_state.snapshot()`` for a consistent copy.
    header, table, graph : ipywidgets.HTML
        Flow state, elapsed time and dashboard link; the task table; the graph.
    progress : ipywidgets.FloatProgress
        The share of the run's work that succeeded (a task is one unit of
        work, each child of a mapped task one), from 0 to 1.
    progress_label : ipywidgets.HTML
        That work as tqdm shows it: ``28% 280/1,000 [00:04<00:10, 70.00 it/s]``.
    cancel_button : ipywidgets.Button
        Cancels the attached run.
    errors : ipywidgets.Accordion
        One pane per failed task with its traceback.
    report_area : ipywidgets.VBox
        The Dask performance report or the run timeline, after the run.

    Examples
    --------
    >>> view = RunView(flow)  # doctest: +SKIP
    >>> display(view)  # doctest: +SKIP
    >>> flow.run(listeners=[view])  # doctest: +SKIP

    """

    def __init__(
        self,
        flow: Flow | None = None,
        *,
        run: NotebookRun | FlowRun | None = None,
        executor: Executor | None = None,
        interval: float = 0.1,
        timeline: bool = False,
    ) -> None:
        self.flow = flow
        self.executor = executor
        tasks = shown_tasks(flow.sorted_tasks()) if flow is not None else []
        self.run_state = RunState(flow.name if flow is not None else None, tasks)
        self.interval = interval
        self.timeline = timeline
        self.draws = 0
        self._run: NotebookRun | FlowRun | None = None
        self._cancellable = True
        self._layout = self._make_layout(tasks) if tasks else None
        self._draw_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handles: list[Any] = []
        self._errors_shown: set[str] = set()
        self._starting: tuple[str, float] | None = None
        self._graph_at = 0.0
        self.header = ipywidgets.HTML()
        self.progress = ipywidgets.FloatProgress(value=0.0, min=0.0, max=1.0)
        self.progress.add_class("nbflow-progress")
        self.progress_label = ipywidgets.HTML()
        self.progress_label.add_class("nbflow-progress-label")
        self.cancel_button = ipywidgets.Button(
            description="Cancel", icon="stop", disabled=True, button_style="warning"
        )
        self.cancel_button.add_class("nbflow-cancel")
        self.cancel_button.on_click(self._on_cancel)
        self.interrupt_hint = ipywidgets.HTML(
            '<span class="nbflow-interrupt-hint" style="white-space:nowrap">'
            "To cancel: interrupt the kernel (■)</span>",
            layout=ipywidgets.Layout(display="none"),
        )
        self.interrupt_hint.add_class("nbflow-interrupt")
        self.table = ipywidgets.HTML()
        # fits the output's width; a big graph scrolls instead of being cut
        self.graph = ipywidgets.HTML(layout=ipywidgets.Layout(
            max_width="100%", max_height="520px", overflow="auto"))
        self.graph.add_class("nbflow-graph-box")
        self.errors = ipywidgets.Accordion()
        self.errors.add_class("nbflow-errors")
        self.report_area = ipywidgets.VBox()
        # The stylesheet the static snapshot carries too, sent once; a <style>
        # applies from an element that is not displayed.
        style = ipywidgets.HTML(f"<style>{STYLE}</style>",
                                layout=ipywidgets.Layout(display="none"))
        style.add_class("nbflow-style")
        super().__init__(
            [
                style,
                ipywidgets.HBox([self.progress, self.progress_label, self.cancel_button,
                                 self.interrupt_hint]),
                self.header,
                self.table,
                self.graph,
                self.errors,
                self.report_area,
            ]
        )
        self.add_class("nbflow-run-view")
        if run is not None:
            self.attach(run)
        self._draw()

    def __repr__(self) -> str:
        name = self.flow.name if self.flow is not None else None
        return f"<RunView of flow {name!r}>"

    # -- wiring -------------------------------------------------------------------------

    @property
    def listener(self) -> Callable[[Sequence[Event]], None]:
        """The events listener (the view itself)."""
        return self

    def follow(self, run: NotebookRun, *, cancellable: bool) -> None:
        """Watch ``run`` (before it starts): its events, its Cancel button
        (when ``cancellable``: it runs in the background), and the error it
        raises instead of ending, if it does.
        """
        run.add_listener(self)
        run.view = self
        self.attach(run, cancellable=cancellable)
        run.add_done_callback(self._on_done)

    def _on_done(self, run: NotebookRun) -> None:
        if run.error is not None:
            self.show_error(run.error)

    def attach(self, run: NotebookRun | FlowRun, *, cancellable: bool = True) -> None:
        """Let the Cancel button cancel ``run`` (unless not ``cancellable``:
        during a blocking run the kernel would handle the click only after it).
        """
        self._run = run
        self._cancellable = cancellable
        self.cancel_button.disabled = run.state is not None or not cancellable
        # A blocking run: the kernel would see a click only after the run, so
        # no button; the kernel's interrupt (■, or I I) cancels it.
        self.cancel_button.layout.display = None if cancellable else "none"
        self.interrupt_hint.layout.display = (
            "none" if cancellable or run.state is not None else None)
        what = starting_text(run.executor) if run.state is None else None
        if what is not None:  # say what happens until the flow starts, clock going
            self._starting = (what, time.time())
            run.executor.on_starting = self._on_starting
            self._restart()
            self._draw()
    def _on_starting(self, what: str) -> None:
        """The executor's word on its start ("1 of 2 workers up"), shown at once
        (it comes a few times a second at most), the clock kept.
        """
        starting = self._starting
        if starting is None:  # the flow started: a late or stray word
            return
        self._starting = (what, starting[1])
        self._draw()

    def _on_cancel(self, _button: object = None) -> None:
        run = self._run
        if run is None:
            return
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling"
        run.cancel()

    def __call__(self, events: Sequence[Event]) -> None:
        """Take a batch of events (the listener interface)."""
        if not events:
            return
        first = events[0]
        if isinstance(first, FlowStarted):
            self._layout = self._make_layout(first.tasks)
            self._starting = None
            run = self._run
            if run is not None and run.executor.on_starting == self._on_starting:
                run.executor.on_starting = None
            self._restart()
            self._show_live()
        self.run_state(events)
        if isinstance(events[-1], FlowFinished):
            self._finish(events[-1].state)

    def _make_layout(self, tasks: Sequence[Task]) -> GraphLayout | None:
        tasks = shown_tasks(tasks)
        if len(tasks) > MAX_NODES:
            return None
        edges = shown_edges(self.flow.edges) if self.flow else ()
        return layout_graph(tasks, edges)

    # -- drawing ------------------------------------------------------------------------

    def _restart(self) -> None:
        self._stop.set()
        self._stop = threading.Event()
        self._errors_shown.clear()
        self.errors.children = ()
        self.report_area.children = ()
        self.cancel_button.description = "Cancel"
        self.cancel_button.disabled = self._run is None or not self._cancellable
        self._thread = threading.Thread(
            target=self._loop, args=(self._stop,), name="nbflow-run-view", daemon=True
        )
        self._thread.start()

    def _loop(self, stop: threading.Event) -> None:
        """Redraw on change (and each second, for the clock), throttled."""
        version = -1
        while not stop.is_set():
            seen = self.run_state.wait(version, timeout=1.0)
            if stop.is_set():
                break
            try:
                self._draw(stop=stop)
            except Exception:  # a display bug must not end the updates
                log.exception("nbflow RunView could not redraw")
            version = seen
            stop.wait(self.interval)

    def _draw(self, *, stop: threading.Event | None = None) -> RunSnapshot:
        with self._draw_lock:
            snapshot = self.run_state.snapshot()
            if stop is not None and stop.is_set():
                return snapshot
            self.draws += 1
            self.header.value = header_html(  # its progress text is by the bar
                snapshot, starting=self._starting, progress=False,
                dashboard_alive=self._dashboard_alive(snapshot))
            self.progress.value = snapshot.progress
            self.progress_label.value = (
                f'<span class="nbflow-progress-text">'
                f"{html.escape(progress_text(snapshot))}</span>"
            )
            self.table.value = table_html(snapshot)
            # A big picture is resent less often, so that it stays under
            # GRAPH_BYTES_PER_S (a small one with every redraw); the final one always.
            now = time.monotonic()
            wait = len(self.graph.value) / GRAPH_BYTES_PER_S
            if stop is None or now - self._graph_at >= wait:
                self._graph_at = now
                self.graph.value = self.svg(snapshot)
            self._show_errors(snapshot)
            return snapshot

    def svg(self, snapshot: RunSnapshot | None = None) -> str:
        """The graph picture, coloured by the tasks' states now."""
        snapshot = snapshot or self.run_state.snapshot()
        return render_svg(self._layout, snapshot.tasks) if self._layout else ""

    def _show_errors(self, snapshot: RunSnapshot) -> None:
        new = [
            t
            for t in snapshot.tasks
            if t.state in ("Failed", "TimedOut", "TriggerFailed")
            and t.traceback
            and t.name not in self._errors_shown
        ]
        if not new:
            return
        # Only appended to, so a traceback the user opened stays open.
        children, titles = list(self.errors.children), list(self.errors.titles)
        for t in new:
            self._errors_shown.add(t.name)
            children.append(
                ipywidgets.HTML(
                    f'<pre class="nbflow-traceback">{html.escape(user_traceback(t))}</pre>'
                )
            )
            titles.append(failure_title(t))
        self.errors.children = tuple(children)
        self.errors.titles = tuple(titles)

    def _finish(self, state: State) -> None:
        """Draw the final state now (in the bus thread), then the report."""
        self._stop.set()
        snapshot = self._draw()
        self.progress.bar_style = _BAR_STYLE.get(state.name, "danger")
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancel"
        self.interrupt_hint.layout.display = "none"
        try:
            self._show_report(snapshot)
        except Exception:  # the run's outcome must still show
            log.exception("nbflow RunView could not show the report")
        self._update_displays()

    def show_error(self, error: BaseException) -> None:
        """Show that the run raised ``error`` (it did not start, or broke) and
        stop redrawing.
        """
        self._stop.set()
        with self._draw_lock:
            text = html.escape(f"The run raised {type(error).__name__}: {error}")
            self.header.value = f'<div class="nbflow-run-error">{text}</div>'
            self.progress.bar_style = "danger"
            self.cancel_button.disabled = True

    def _show_report(self, snapshot: RunSnapshot) -> None:
        executor = self._executor()
        if executor is not None and executor.performance_report:
            self.report_area.children = (render_report(executor),)
        elif self.timeline:
            self.report_area.children = (render_timeline(snapshot),)
        else:
            button = ipywidgets.Button(
                description="Show run timeline", icon="bar-chart",
                layout=ipywidgets.Layout(width="auto"),
            )
            button.add_class("nbflow-timeline-button")
            button.on_click(lambda _: self.show_timeline())
            self.report_area.children = (button,)

    def show_timeline(self) -> None:
        """Replace the report area with the run timeline of the last run."""
        self.report_area.children = (render_timeline(self.run_state.snapshot()),)

    def _executor(self) -> Executor | None:
        if self.executor is not None:
            return self.executor
        if self._run is not None:
            return self._run.executor
        return self.flow.executor if self.flow is not None else None

    # -- the static snapshot ------------------------------------------------------------

    def html(self) -> str:
        """The run as static HTML: header, table with tracebacks, graph picture,
        the executor, the run timeline and a link to the performance report.
        """
        snapshot = self.run_state.snapshot()
        extra = []
        executor = self._executor()
        if snapshot.started is not None:
            shown = repr(executor) if executor is not None else "LocalExecutor()"
            extra.append(f'<div class="nbflow-executor">Executor: <code>'
                         f"{html.escape(shown)}</code></div>")
        timeline = timeline_svg(snapshot)
        if timeline:
            picture = svg_image(timeline, cls="nbflow-timeline-img",
                                alt="Run timeline: when each task ran")
            extra.append(f'<details class="nbflow-timeline-static"><summary>Run '
                         f"timeline</summary>{picture}</details>")
        path = getattr(executor, "performance_report_path", None)
        if snapshot.is_finished and path and os.path.exists(path):
            extra.append(
                f'<div class="nbflow-report-static">Dask performance report: '
                f'<a class="nbflow-report-link" href="{html.escape(_href(path), quote=True)}"'
                f' target="_blank" rel="noopener" download {_OPEN_IN_TAB}>'
                f"{html.escape(path)}</a></div>"
            )
        alt = describe_graph(self._layout, snapshot.tasks) if self._layout else ""
        return snapshot_html(snapshot, self.svg(snapshot), "".join(extra),
                             dashboard_alive=self._dashboard_alive(snapshot),
                             graph_alt=alt)

    def _dashboard_alive(self, snapshot: RunSnapshot) -> bool:
        """Whether the dashboard link still leads somewhere: the run goes on, or
        its cluster is one that outlives it (an address was given).
        """
        if not snapshot.is_finished:
            return True
        return bool(getattr(self._executor(), "address", None))


def starting_text(executor: Executor | None) -> str | None:
    """What starting ``executor`` does, for a person waiting: None if instant."""
    from nbflow.executors.dask import DaskExecutor
    from nbflow.executors.local_dask import LocalDaskExecutor

    if isinstance(executor, DaskExecutor):
        if executor.address:
            return f"Connecting to the Dask cluster at {executor.address} …"
        cluster = (executor.cluster_class if isinstance(executor.cluster_class, str)
                   else getattr(executor.cluster_class, "__name__", None)) or "LocalCluster"
        workers = executor.cluster_kwargs.get("n_workers")
        size = f" with {workers} workers" if workers else ""
        return f"Starting a temporary Dask cluster ({cluster}{size}) …"
    if isinstance(executor, LocalDaskExecutor) and executor.scheduler == "processes":
        return f"Starting {executor.num_workers} worker processes …"
    return None


def run_with_view(
    flow: Flow,
    *,
    parameters: dict[str, Any] | None = None,
    executor: Executor | None = None,
    background: bool = False,
    on_finish: Callable[[NotebookRun], None] | None = None,
    display: bool = True,
    view: RunView | None = None,
) -> NotebookRun:
    """Run ``flow`` with a :class:`RunView` of it, here or in the background.

    Parameters
    ----------
    flow : Flow
    parameters : dict, optional
        Values of the flow's parameters.
    executor : Executor, optional
        Default ``flow.executor``, else a ``LocalExecutor``.
    background : bool
        Return at once and run in a daemon thread: the view keeps updating
        while the kernel is idle and its Cancel button stops the run.
    on_finish : callable, optional
        Called with the run once it ended with a state (not raising), in the
        run's thread, e.g. to write results back.
    display : bool
        Display the view (with IPython) before the run starts.
    view : RunView, optional
        A view to use; by default a new one, kept in ``run.view``.

    Returns
    -------
    NotebookRun
        The run's handle (``%flow run`` gives the same), with ``.view``;
        ``.state`` once it ended (``run.join()`` waits for it).

    Raises
    ------
    BaseException
        Run here (not ``background``): what the run raised instead of ending.

    Examples
    --------
    >>> run = run_with_view(flow, background=True)  # doctest: +SKIP
    >>> run.join(timeout=60)  # doctest: +SKIP

    """
    run = NotebookRun(flow=flow, parameters=parameters, executor=executor)
    view = view or RunView(flow)
    view.follow(run, cancellable=background)
    if on_finish is not None:
        run.add_done_callback(lambda ended: on_finish(ended) if ended.error is None
                              else None)
    if display:
        from IPython.display import display as show

        show(view)
    if background:
        return run.start()
    run.run()
    return run
