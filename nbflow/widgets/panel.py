"""``ExecutorPanel``: pick and tune a flow's executor in the notebook.

A thin skin over :class:`~nbflow.executors.config.ExecutorConfig`: the panel
owns plain ipywidgets controls (no extension of our own, no CDN), reads them
into a draft config on every change, shows the draft's problem, and applies a
valid draft: it becomes ``panel.config`` and, when the panel has a flow,
``flow.executor``. An invalid draft is never applied. Each control is named
after the config field it edits (``panel._num_workers`` edits ``num_workers``)
and carries the CSS class ``nbflow-<field>``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import html
import logging
import threading
import weakref
from typing import Any

import ipywidgets as w

from nbflow.errors import NbflowError
from nbflow.executors._config_parts import check_cache_location
from nbflow.executors._schedulers import normalize_scheduler
from nbflow.executors.base import Executor
from nbflow.executors.cluster_info import ClusterSummary, inspect_cluster
from nbflow.executors.config import (
    OPTIONS,
    ExecutorConfig,
    ExecutorConfigError,
    normalize_cluster_mode,
    normalize_kind,
)
from nbflow.notebook.cache import chosen_cache_location, use_cache_location
from nbflow.widgets._controls import (
    FIELDS,
    from_control,
    make_control,
    to_control,
)
from nbflow.widgets._snapshot import StaticSnapshot

__all__ = ["ExecutorPanel", "show_chosen_executors"]

log = logging.getLogger(__name__)

#: The performance report's file when the box is ticked with no path typed.
DEFAULT_REPORT_PATH = "dask-report.html"


#: Panels displayed and still live, for :func:`show_chosen_executors`.
_displayed: weakref.WeakSet[ExecutorPanel] = weakref.WeakSet()


def show_chosen_executors() -> None:
    """Turn every displayed panel into static HTML of the executor it chose.

    Called when the notebook flow runs: the panel's output then keeps the
    choice the run used, and a notebook reopened without a kernel shows it
    (not "Error displaying widget: model not found"). ``%flow panel`` opens a
    live one again.
    """
    for panel in list(_displayed):
        _displayed.discard(panel)
        panel._update_displays()


class ExecutorPanel(StaticSnapshot, w.VBox):
    """Pick and tune an executor; the last valid choice is in ``.config``.

    Parameters
    ----------
    flow : Flow, optional
        Open on its executor; every valid change becomes ``flow.executor``.
    config : ExecutorConfig, optional
        Start from these settings instead (applied to ``flow`` if valid).

    Examples
    --------
    >>> panel = ExecutorPanel(flow)  # doctest: +SKIP
    >>> panel.set(kind="local-dask", num_workers=3)  # doctest: +SKIP
    >>> flow.executor  # doctest: +SKIP
    LocalDaskExecutor(scheduler='threads', num_workers=3)

    """

    def __init__(self, flow: Any = None, config: ExecutorConfig | None = None) -> None:
        self.flow = flow
        self._handles: list[Any] = []
        # The cache location is the notebook's (the same for every panel).
        self.config = dataclasses.replace(
            (_current(flow) if flow is not None else None) or ExecutorConfig(),
            cache_location=chosen_cache_location())
        self.problem: str | None = None
        self._quiet = False
        self.controls: dict[str, w.Widget] = {f: make_control(f) for f in FIELDS}
        for field, control in self.controls.items():
            setattr(self, f"_{field}", control)
            control.observe(self._on_change, names="value")
        self._test_connection = w.Button(
            description="Test connection", icon="plug", tooltip="Connect for 3 s"
        )
        self._test_connection.add_class("nbflow-test_connection")
        self._test_connection.on_click(lambda _: self.test_connection())
        self._connection_future: concurrent.futures.Future[ClusterSummary] | None = None
        self._connection = w.HTML().add_class("nbflow-connection")
        self._message = w.HTML().add_class("nbflow-message")
        self._code = w.HTML().add_class("nbflow-code")
        self._sections = self._layout()
        super().__init__(
            [self._kind, *self._sections.values(), self._message, self._code]
        )
        self.add_class("nbflow-executor-panel")
        opening = None
        if config is None and flow is not None:
            try:
                config = ExecutorConfig.from_executor(flow.executor)
            except ExecutorConfigError as exc:
                opening = str(exc)
        apply = config is not None and flow is not None and config != _current(flow)
        if config is None or config.cache_location is None:
            config = dataclasses.replace(config or ExecutorConfig(),
                                         cache_location=self.config.cache_location)
        self._show(
            config, apply=apply or config.cache_location != self.config.cache_location
        )
        if opening is not None:
            self._show_problem(opening)

    def _layout(self) -> dict[str, w.Box]:
        c = self.controls
        existing = w.VBox(
            [
                w.HBox([c["address"], self._test_connection]),
                self._connection,
                c["worker_timeout"],
                c["tls_ca_file"],
                c["tls_client_cert"],
                c["tls_client_key"],
            ]
        )
        return {
            "local-dask": w.VBox([c["scheduler"], c["num_workers"]]),
            "dask": w.VBox([c["cluster"]]),
            "temporary": w.VBox(
                [
                    c["n_workers"],
                    c["threads_per_worker"],
                    c["cluster_class"],
                    c["cluster_kwargs"],
                ]
            ),
            "adaptive": w.HBox([c["minimum"], c["maximum"]]),
            "existing": existing,
            "report": w.VBox(
                [
                    w.HBox(
                        [c["performance_report"], c["debug"]],
                        layout=w.Layout(margin="0 0 0 194px"),
                    ),
                    c["performance_report_path"],
                ]
            ),
            "cache": w.VBox([c["cache_location"]]),
        }

    # -- public -------------------------------------------------------------------

    @property
    def executor(self) -> Executor:
        """A new executor built from the current (last valid) config."""
        return self.config.build()

    @property
    def code(self) -> str:
        """The Python that reproduces :attr:`executor` (``flow.executor = ...``)."""
        return self.config.code()

    def set(self, **fields: Any) -> None:
        """Set controls from config values, e.g. ``panel.set(num_workers=3)``.

        Parameters
        ----------
        **fields
            Config field names and values, as in :class:`ExecutorConfig`.

        Raises
        ------
        ExecutorConfigError
            If a field is unknown or a choice is not one of its options.
        """
        draft, _ = self._read()
        values = {**draft.to_dict(), **fields}
        self._show(ExecutorConfig.from_dict(values), apply=True)

    def test_connection(
        self, *, timeout: float = 3.0
    ) -> concurrent.futures.Future[ClusterSummary]:
        """Inspect the cluster at the address in a background thread.

        The workers, threads and memory of the cluster, or the error, appear in
        the panel; the returned future resolves after that.

        Parameters
        ----------
        timeout : float
            Seconds to wait for the scheduler.

        Returns
        -------
        concurrent.futures.Future
            Its result is the :class:`ClusterSummary`.
        """
        future: concurrent.futures.Future[ClusterSummary] = concurrent.futures.Future()
        self._connection_future = future  # the button's, for tests and callers
        draft, _ = self._read()
        existing = dataclasses.replace(
            draft, kind="dask", cluster="existing", performance_report=False
        )
        problem = existing.problem()
        if problem is not None:
            self._connection.value = _error_html(problem)
            future.set_exception(ExecutorConfigError(problem))
            return future
        address = existing.address or ""
        self._test_connection.disabled = True
        self._connection.value = f"Connecting to {html.escape(address)} …"
        threading.Thread(
            target=self._inspect,
            name="nbflow-test-connection",
            args=(existing, timeout, future),
            daemon=True,
        ).start()
        return future

    # -- internals ------------------------------------------------------------------

    def _inspect(
        self,
        config: ExecutorConfig,
        timeout: float,
        future: concurrent.futures.Future[ClusterSummary],
    ) -> None:
        """Run in a thread: a widget callback must not block the kernel."""
        address = config.address or ""
        try:
            summary = inspect_cluster(
                address, timeout=timeout, client_kwargs=config.client_kwargs(),
                functions=_flow_functions(),
            )
        except Exception as exc:  # noqa: BLE001 - shown in the panel, not raised
            if not isinstance(exc, NbflowError):
                log.warning("Test connection to %s failed", address, exc_info=True)
            self._connection.value = _error_html(str(exc))
            future.set_exception(exc)
        else:
            self._connection.value = (
                f"<b>{html.escape(address)}</b>: {html.escape(summary.describe())}"
            )
            future.set_result(summary)
        finally:
            self._test_connection.disabled = False

    def _read(self) -> tuple[ExecutorConfig, str | None]:
        """The controls as a draft config, and every text that did not parse
        among the controls shown (the others are not used, as in the model).
        """
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for field, control in self.controls.items():
            try:
                values[field] = from_control(field, control.value)
            except NbflowError as exc:  # ParseError, WholeNumberError
                values[field] = getattr(self.config, field)
                errors[field] = str(exc)
        draft = ExecutorConfig(**values)
        used = [e for f, e in errors.items() if draft.applies(f)]
        return draft, " ".join(used) if used else None

    def _show(self, config: ExecutorConfig, *, apply: bool) -> None:
        """Put ``config`` into the controls, then validate (and apply) once."""
        for field, normalize in (
            ("kind", normalize_kind),
            ("scheduler", normalize_scheduler),
            ("cluster", normalize_cluster_mode),
        ):
            try:
                normalize(getattr(config, field))  # a choice its buttons offer
            except NbflowError as exc:
                raise ExecutorConfigError(str(exc)) from None
        self._quiet = True
        try:
            for field, control in self.controls.items():
                control.value = to_control(field, getattr(config, field))
        finally:
            self._quiet = False
        self._update(apply=apply)

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        report_path = self.controls["performance_report_path"]
        if change.get("owner") is self.controls["performance_report"] and change["new"] \
                and not str(report_path.value).strip():
            self._quiet = True  # ticked with no path: offer the default, not an error
            try:
                report_path.value = DEFAULT_REPORT_PATH
            finally:
                self._quiet = False
        self._update(apply=True)

    def _update(self, *, apply: bool) -> None:
        """Validate the controls; apply a valid draft; show the outcome."""
        draft, error = self._read()
        self._show_sections(draft)
        problem = error or draft.problem()
        if problem is None and apply and draft != self.config:
            try:
                executor = draft.build()
            except Exception as exc:  # noqa: BLE001 - a callback shows, never raises
                log.warning("Could not build %r", draft, exc_info=True)
                problem = str(exc) or repr(exc)
            else:
                if draft.cache_location != self.config.cache_location:
                    location = draft.cache_location
                    use_cache_location(None if location is None
                                       else check_cache_location(location))
                self.config = draft
                if self.flow is not None:
                    self.flow.executor = executor
        elif problem is None:
            self.config = draft
        self._show_problem(problem)
        self._code.value = (
            "<pre style='margin:4px 0;white-space:pre;font-family:"
            "var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,12px)'>"
            + html.escape(self.config.code(), quote=False)
            + "</pre>"
        )

    def _ipython_display_(self) -> None:
        """Display (with an id, see :class:`StaticSnapshot`) and stay live
        until the flow runs.
        """
        super()._ipython_display_()
        _displayed.add(self)

    def html(self) -> str:
        """The chosen executor as static HTML: its code, the connection, any problem."""
        code = html.escape(self.config.code(), quote=False)
        return (
            '<div class="nbflow-executor-panel nbflow-static">'
            "<div><b>Executor</b> (chosen in the panel)</div>"
            "<pre class='nbflow-code-text' style='margin:4px 0;white-space:pre;"
            "font-family:var(--jp-code-font-family,monospace);"
            f"font-size:var(--jp-code-font-size,12px)'>{code}</pre>"
            f"{self._connection.value}{self._message.value}</div>"
        )

    def _show_problem(self, problem: str | None) -> None:
        self.problem = problem
        self._message.value = (
            ""
            if problem is None
            else _error_html(problem + " The last valid choice stays in use.")
        )

    def _show_sections(self, draft: ExecutorConfig) -> None:
        shown = draft.sections()
        for name, box in self._sections.items():
            box.layout.display = "" if name in shown else "none"
        for field, spec in OPTIONS.items():
            if spec.switch is not None:  # shown when its checkbox is on
                display = "" if getattr(draft, spec.switch) else "none"
                self.controls[field].layout.display = display


def _current(flow: Any) -> ExecutorConfig | None:
    try:
        return ExecutorConfig.from_executor(flow.executor)
    except ExecutorConfigError:
        return None


def _error_html(message: str) -> str:
    return f"<span style='color:#b00020'>{html.escape(message, quote=False)}</span>"


def _flow_functions() -> dict[str, Any]:
    """The notebook flow's tasks, whose packages Test connection checks."""
    from nbflow.core.task import Parameter
    from nbflow.notebook import current_flow

    return {t.name: t.fn if t.fn is not None else t.run
            for t in current_flow().ordered_tasks() if not isinstance(t, Parameter)}
