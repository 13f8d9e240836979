"""``%%flowtask`` and ``%flow``: the IPython skin of :mod:`nbflow.notebook`.

The magics layer, the only module of the notebook package that imports
IPython. Each magic parses its arguments, makes one call of a public function
of :mod:`nbflow.notebook`, and shows the result. Errors in what the user typed
become :class:`~IPython.core.error.UsageError` (one line); a failed task shows
its own traceback, as formatted where it ran.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbflow.engine.events import Listener
from nbflow.engine.runner import FlowRun
from nbflow.engine.state import State
from nbflow.errors import NbflowError
from nbflow.notebook import (
    TextProgress,
    cell_output,
    check_notebook_flow,
    current_flow,
    describe_cell,
    describe_flow,
    failure,
    register_cell,
    remove_task,
    reset_flow,
    run_notebook_flow,
)

__all__ = ["FlowMagics", "load_ipython_extension", "unload_ipython_extension"]

_COMMANDS = ("run", "show", "reset", "remove", "panel")


class _ViewRunner:
    """Runs the prepared notebook flow as a :class:`FlowRun` the view can cancel.

    ``run = %flow run --background`` returns it: ``run.cancel()``, ``run.join()``.
    """

    def __init__(self, view: Any) -> None:
        self.view = view
        self.run: FlowRun | None = None
        self.thread: threading.Thread | None = None
        self.state: State | None = None

    def __call__(self, flow: Any, executor: Any, listeners: Sequence[Listener]) -> State:
        self.run = FlowRun(flow, executor=executor, listeners=[*listeners, self.view])
        attach = getattr(self.view, "attach", None)
        if attach is not None:
            # Only a background run can be cancelled from the view: during a
            # blocking run the kernel handles the click after the run.
            attach(self.run, cancellable=self.thread is not None)
        self.state = self.run.run()
        return self.state

    def __repr__(self) -> str:
        status = "running" if self.state is None else self.state.name
        return f"<background run of the notebook flow: {status}>"

    def cancel(self) -> None:
        """Cancel the run, as the view's Cancel button does."""
        if self.run is not None:
            self.run.cancel()

    def join(self, timeout: float | None = None) -> State | None:
        """Wait for a background run to end (and its results to be written back)."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.state


def _run_in_background(namespace: Any, runner: _ViewRunner, output: Any) -> None:
    """Run the notebook flow; show cell output and errors under the view."""
    try:
        state = run_notebook_flow(namespace, runner=runner)
    except Exception as exc:  # noqa: BLE001 - shown to the user; the kernel goes on
        output.append_stderr(f"{type(exc).__name__}: {exc}\n")
        return
    text = cell_output(state)
    if text:
        output.append_stdout(text + "\n")
    if state.is_cancelled():
        output.append_stdout(f"{state.message}\n")
    error = failure(state)
    if error is not None:
        output.append_stderr("\n".join(error._render_traceback_()) + "\n")


@magics_class
class FlowMagics(Magics):  # type: ignore[misc]
    """``%%flowtask`` registers a cell as a task; ``%flow`` runs and inspects."""

    @magic_arguments()
    @argument("name", nargs="?", default=None,
              help="Task name; default the first name the cell creates.")
    @argument("--map", dest="map_var", metavar="VAR", default=None,
              help="Run the cell once per element of VAR.")
    @argument("--retries", type=int, default=0, help="Retries when the cell fails.")
    @argument("--retry-delay", type=float, default=None, metavar="SECONDS",
              help="Seconds between retries.")
    @argument("--after", nargs="+", default=[], metavar="TASK",
              help="Tasks this one runs after, besides its data inputs.")
    @cell_magic  # type: ignore[misc]
    def flowtask(self, line: str, cell: str) -> None:
        """Register this cell as a task of the notebook flow (it does not run)."""
        args = parse_argstring(self.flowtask, line)
        try:
            task = register_cell(
                cell, args.name, map_var=args.map_var, retries=args.retries,
                retry_delay=args.retry_delay, after=args.after,
            )
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        print(describe_cell(task))

    @magic_arguments()
    @argument("command", choices=_COMMANDS, help="What to do.")
    @argument("name", nargs="?", default=None, help="The task, for `remove`.")
    @argument("--background", action="store_true",
              help="Run without blocking the kernel (with the live view).")
    @line_magic  # type: ignore[misc]
    def flow(self, line: str) -> Any:
        """``%flow run | show | reset | remove NAME | panel``."""
        args = parse_argstring(self.flow, line)
        if args.command == "remove" and not args.name:
            raise UsageError("`%flow remove` needs the name of a task: %flow remove NAME.")
        if args.command != "remove" and args.name:
            raise UsageError(
                f"`%flow {args.command}` takes no name, got {args.name!r}; only "
                "`%flow remove NAME` does."
            )
        return getattr(self, f"_{args.command}")(args)

    # -- one method per command: one library call each, then display ----------

    def _run(self, args: Any) -> _ViewRunner | None:
        assert self.shell is not None  # a registered Magics has its shell
        namespace = self.shell.user_ns
        going = getattr(self, "_background", None)
        if going is not None and going.thread is not None and going.thread.is_alive():
            raise UsageError(
                "A background run of the notebook flow is still going; wait for "
                "it (run.join()) or cancel it (run.cancel()), then run again."
            )
        try:
            check_notebook_flow(namespace)
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        view = self._progress_view()
        runner = _ViewRunner(view)
        if args.background:
            from IPython.display import display
            from ipywidgets import Output

            output = Output()
            display(output)
            thread = threading.Thread(
                target=_run_in_background, args=(namespace, runner, output),
                name="nbflow-background-run", daemon=True,
            )
            runner.thread = thread
            self._background = runner
            thread.start()
            return runner
        try:
            state = run_notebook_flow(namespace, runner=runner)
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        text = cell_output(state)
        if text:
            print(text)
        if state.is_cancelled():
            print(state.message)
        error = failure(state)
        if error is not None:
            raise error
        return None

    def _progress_view(self) -> Any:
        """The live view of the run (``nbflow.widgets.RunView``), displayed.

        Text progress in a shell with no widget frontend (terminal IPython), or
        where ipywidgets is not installed.
        """
        if getattr(self.shell, "kernel", None) is None:
            return TextProgress()
        try:
            from nbflow.widgets.run_view import RunView
        except ImportError:
            return TextProgress()
        from IPython.display import display

        view = RunView(current_flow())
        display(view)
        return view

    def _show(self, args: Any) -> None:
        print(describe_flow())

    def _reset(self, args: Any) -> None:
        reset_flow()
        print("The notebook flow is empty.")

    def _remove(self, args: Any) -> None:
        try:
            remove_task(args.name)
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        print(f"Removed task {args.name!r}.")

    def _panel(self, args: Any) -> Any:
        from nbflow.widgets.panel import ExecutorPanel

        return ExecutorPanel(current_flow())


def load_ipython_extension(ipython: Any) -> None:
    """Register :class:`FlowMagics` (``%load_ext nbflow``)."""
    ipython.register_magics(FlowMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics :func:`load_ipython_extension` registered."""
    manager = ipython.magics_manager
    manager.magics["cell"].pop("flowtask", None)
    manager.magics["line"].pop("flow", None)
    manager.registry.pop(FlowMagics.__name__, None)
