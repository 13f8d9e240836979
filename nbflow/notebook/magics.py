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
    forget_cells,
    register_cell,
    remove_task,
    reset_flow,
    run_flow,
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


def _without_comment(line: str) -> str:
    """The magic's arguments without a trailing ``# comment``, as in Python code.

    A ``#`` starts a comment at the start of the line or after a space, outside
    quotes (``--address=tcp://h#x`` keeps its ``#``).
    """
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def _cell(shell: Any) -> str | None:
    """The id of the notebook cell executing (Jupyter sends it); forget the
    tasks of the cells the frontend reports deleted.
    """
    get_parent = getattr(shell, "get_parent", None)
    parent = get_parent() if get_parent is not None else {}
    metadata = (parent or {}).get("metadata") or {}
    deleted = metadata.get("deletedCells") or ()
    if deleted:
        forget_cells(deleted)
    cell_id = metadata.get("cellId")
    if not isinstance(cell_id, str) or not cell_id:
        return None
    # One cell may register several tasks (run_cell_magic in a loop): the
    # second and later ones in one execution are cells of their own.
    msg_id = ((parent or {}).get("header") or {}).get("msg_id")
    seen = _SEEN.setdefault((msg_id, cell_id), [0])
    seen[0] += 1
    if len(_SEEN) > 64:  # only the current execution matters
        for key in list(_SEEN)[:-8]:
            del _SEEN[key]
    return cell_id if seen[0] == 1 else f"{cell_id}#{seen[0]}"


#: ``(message id, cell id)`` -> how often that execution asked for its cell.
_SEEN: dict[tuple[Any, str], list[int]] = {}


class _TextOutput:
    """Text under the view of a background run: a plain output updated in
    place (no widget, so a reopened notebook shows it as it ended).
    """

    def __init__(self, shell: Any) -> None:
        from IPython.display import display

        self.shell = shell
        self.text = ""
        self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def append(self, text: str) -> None:
        self.text += text
        self.handle.update({"text/plain": self.text}, raw=True)

        # From this thread the update may go out under a cell the frontend no
        # longer listens to; sent again from the next cell, it is taken.
        def again(*_: object) -> None:
            self.shell.events.unregister("pre_run_cell", again)
            self.handle.update({"text/plain": self.text}, raw=True)

        self.shell.events.register("pre_run_cell", again)


def _run_in_background(
    namespace: Any, runner: _ViewRunner, output: _TextOutput, flow: Any
) -> None:
    """Run the notebook flow; show cell output and errors under the view."""
    try:
        state = run_notebook_flow(namespace, runner=runner, flow=flow)
    except Exception as exc:  # noqa: BLE001 - shown to the user; the kernel goes on
        output.append(f"{type(exc).__name__}: {exc}\n")
        return
    parts = []
    text = cell_output(state, flow)
    if text:
        parts.append(text + "\n")
    if state.is_cancelled():
        parts.append(f"{state.message}\n")
    error = failure(state, flow)
    if error is not None:
        parts.append("\n".join(error._render_traceback_()) + "\n")
    if parts:
        output.append("".join(parts))


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
        args = parse_argstring(self.flowtask, _without_comment(line))
        cell_id = _cell(self.shell)
        try:
            task = register_cell(
                cell, args.name, map_var=args.map_var, retries=args.retries,
                retry_delay=args.retry_delay, after=args.after, cell_id=cell_id,
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
        args = parse_argstring(self.flow, _without_comment(line))
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
        flow = run_flow(_cell(self.shell))
        try:
            check_notebook_flow(namespace, flow=flow)
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        view = self._progress_view(flow)
        runner = _ViewRunner(view)
        if args.background:
            output = _TextOutput(self.shell)
            thread = threading.Thread(
                target=_run_in_background, args=(namespace, runner, output, flow),
                name="nbflow-background-run", daemon=True,
            )
            runner.thread = thread
            thread.start()
            return runner
        try:
            state = run_notebook_flow(namespace, runner=runner, flow=flow)
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        text = cell_output(state, flow)
        if text:
            print(text)
        if state.is_cancelled():
            print(state.message)
        error = failure(state, flow)
        if error is not None:
            raise error
        return None

    def _progress_view(self, flow: Any) -> Any:
        """The live view of the run (``nbflow.widgets.RunView``), displayed;
        the executor panels displayed so far become static HTML of their choice.

        Text progress in a shell with no widget frontend (terminal IPython), or
        where ipywidgets is not installed.
        """
        if getattr(self.shell, "kernel", None) is None:
            return TextProgress()
        try:
            from nbflow.widgets.panel import show_chosen_executors
            from nbflow.widgets.run_view import RunView
        except ImportError:
            return TextProgress()
        from IPython.display import display

        show_chosen_executors()  # the panels keep the choice this run uses
        view = RunView(flow)
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
