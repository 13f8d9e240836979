"""``%%flowtask`` and ``%flow``: the IPython skin of :mod:`nbflow.notebook`.

The magics layer, the only module of the notebook package that imports
IPython. Each magic parses its arguments, makes one call of a public function
of :mod:`nbflow.notebook`, and shows the result. Errors in what the user typed
become :class:`~IPython.core.error.UsageError` (one line); a failed task shows
its own traceback, as formatted where it ran.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbflow.errors import NbflowError
from nbflow.notebook import (
    TextProgress,
    cell_output,
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

    def _run(self, args: Any) -> None:
        if args.background:
            raise UsageError(
                "`%flow run --background` is not available yet; use `%flow run`."
            )
        try:
            state = run_notebook_flow(self.shell.user_ns,
                                      listeners=[self._progress_view()])
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

    def _progress_view(self) -> Any:
        """The listener that shows the run while it runs.

        The one place where the run's view is made: the live widget view
        (``nbflow.widgets.RunView``) replaces this text progress here; for its
        Cancel button, pass ``runner=`` to ``run_notebook_flow`` as well.
        """
        return TextProgress()

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
