"""``%%flowtask`` and ``%flow``: the IPython skin of :mod:`nbflow.notebook`.

The magics layer, the only module of the notebook package that imports
IPython. Each magic parses its arguments, makes one call of a public function
of :mod:`nbflow.notebook`, and shows the result. Errors in what the user typed
become :class:`~IPython.core.error.UsageError` (one line); a failed task shows
its own traceback, as formatted where it ran.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbflow.cli.progress import TextProgress
from nbflow.errors import NbflowError
from nbflow.notebook import (
    NotebookRun,
    current_flow,
    describe_cell,
    describe_flow,
    forget_cells,
    parse_bytes,
    remove_task,
    reset_flow,
    run_flow,
)
from nbflow.notebook.cache import (
    cache_location,
    clear_cache,
    configure_cache,
    describe_cache,
)
from nbflow.notebook.options import (
    flowtask_help,
    parse_flowtask_line,
    register_flowtask,
)

__all__ = ["FlowMagics", "load_ipython_extension", "unload_ipython_extension"]

#: The ``%flow`` commands: their usage and what each does, for ``%flow --help``.
_COMMANDS = {
    "run": ("run [options]",
            "run the flow on its executor, show it live, put its results back"),
    "show": ("show", "list the flow's tasks: what each reads and provides"),
    "reset": ("reset", "remove every task from the flow"),
    "remove": ("remove NAME", "remove the task NAME from the flow"),
    "panel": ("panel", "show the executor panel: pick and tune the executor"),
    "cache": ("cache [clear [TASK] | location PATH]",
              "list the stored results; clear them, or set where they are kept"),
}


def _flow_help(command: str | None, parser: argparse.ArgumentParser) -> str:
    """``%flow --help`` (every command, one line each) or ``%flow COMMAND --help``.

    The options (all of them ``run``'s) are read from the magic's ``parser``.
    """
    if command is None:
        width = max(len(usage) for usage, _ in _COMMANDS.values())
        lines = [f"  {usage:<{width}}  {what}" for usage, what in _COMMANDS.values()]
        return "\n".join([
            "usage: %flow COMMAND [--help]", "",
            "Run and inspect the notebook flow: the cells registered with %%flowtask.",
            "", "commands:", *lines, "",
            "`%flow COMMAND --help` for one command; `%%flowtask?` for the cell magic.",
        ])
    usage, what = _COMMANDS[command]
    what = f"{what[0].upper()}{what[1:]}."
    if command != "run":
        return f"usage: %flow {usage}\n\n{what}"
    options = [a for a in parser._actions if a.option_strings]
    formatter = argparse.HelpFormatter("%flow run")
    formatter.add_usage(None, options, [])
    formatter.add_text(what)
    formatter.start_section("options")
    formatter.add_arguments(options)
    formatter.end_section()
    return formatter.format_help().rstrip("\n")


def _with_help(magic: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """``%flow --help`` and ``%flow COMMAND --help`` print help and run nothing."""

    @functools.wraps(magic)
    def flow(self: Any, line: str) -> Any:
        words = line.split()
        if "--help" not in words and "-h" not in words:
            return magic(self, line)
        command = words[0] if words and words[0] in _COMMANDS else None
        print(_flow_help(command, flow.parser))  # type: ignore[attr-defined]
        return None

    return flow


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


def _ended(run: NotebookRun) -> str:
    """What a background run shows under its view once it ended."""
    if run.error is not None:
        return f"{type(run.error).__name__}: {run.error}\n"
    parts = [run.summary()]
    if run.failure is not None:
        parts.append("\n".join(run.failure._render_traceback_()))
    return "".join(f"{p}\n" for p in parts if p)


@magics_class
class FlowMagics(Magics):  # type: ignore[misc]
    """``%%flowtask`` registers a cell as a task; ``%flow`` runs and inspects."""

    @cell_magic  # type: ignore[misc]
    def flowtask(self, line: str, cell: str) -> None:
        """Register this cell as a task of the notebook flow (it does not run)."""
        # The grammar is nbflow.notebook.options's, shared with `nbflow run`.
        try:
            task = register_flowtask(cell, parse_flowtask_line(_without_comment(line)),
                                     cell_id=_cell(self.shell))
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        print(describe_cell(task))

    flowtask.__doc__ = flowtask_help()

    @magic_arguments()
    @argument("command", choices=_COMMANDS, help="What to do.")
    @argument("name", nargs="?", default=None, help="The task, for `remove`.")
    @argument("task", nargs="?", default=None,
              help="For `cache clear`: only this task's results; for `cache "
                   "location`: the folder.")
    @argument("--background", action="store_true",
              help="Run without blocking the kernel (with the live view).")
    @argument("--fresh", nargs="?", const=True, default=False, metavar="TASK",
              help="Run: reuse no stored result; with TASK, not for it nor its "
                   "downstream.")
    @argument("--memory-budget", default=None, metavar="SIZE",
              help="On a cluster, bring home at most SIZE of the cells' values "
                   "(e.g. 2GB; default a quarter of the available memory); the "
                   "largest stay there as handles.")
    @line_magic  # type: ignore[misc]
    @_with_help
    def flow(self, line: str) -> Any:
        """``%flow run [--fresh [TASK]] | show | reset | remove NAME | panel |
        cache [clear [TASK] | location PATH]``.
        """
        args = parse_argstring(self.flow, _without_comment(line))
        if args.command == "remove" and not args.name:
            raise UsageError("`%flow remove` needs the name of a task: %flow remove NAME.")
        if args.command == "cache":
            if args.name not in (None, "clear", "location") or (
                args.name == "location" and not args.task
            ):
                raise UsageError(
                    f"Unknown `%flow cache` command {args.name!r}; use `%flow cache`, "
                    "`%flow cache clear [TASK]` or `%flow cache location PATH`."
                )
            return self._cache(args)
        if args.task is not None:
            raise UsageError(
                f"`%flow {args.command}` takes at most one name, got {args.task!r} too."
            )
        if args.command != "remove" and args.name:
            raise UsageError(
                f"`%flow {args.command}` takes no name, got {args.name!r}; only "
                "`%flow remove NAME` does."
            )
        return getattr(self, f"_{args.command}")(args)

    # -- one method per command: one library call each, then display ----------

    def _run(self, args: Any) -> NotebookRun | None:
        assert self.shell is not None  # a registered Magics has its shell
        going = getattr(self, "_background", None)
        if going is not None and going.is_running:
            raise UsageError(
                "A background run of the notebook flow is still going; wait for "
                "it (run.join()) or cancel it (run.cancel()), then run again."
            )
        try:
            budget = (None if args.memory_budget is None
                      else parse_bytes(args.memory_budget))
            run = NotebookRun(self.shell.user_ns, flow=run_flow(_cell(self.shell)),
                              fresh=args.fresh, memory_budget=budget)
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        self._show_live(run, background=args.background)
        if args.background:
            output = _TextOutput(self.shell)
            run.add_done_callback(lambda ended: output.append(_ended(ended)))
            self._background = run.start()
            return run
        try:
            run.run()
        except NbflowError as exc:
            raise UsageError(str(exc)) from None
        text = run.summary()
        if text:
            print(text)
        if run.failure is not None:
            raise run.failure
        return None

    def _show_live(self, run: NotebookRun, *, background: bool) -> None:
        """Show ``run`` live: its view (``nbflow.widgets.RunView``), displayed,
        the executor panels displayed so far made static HTML of their choice.

        Text progress in a shell with no widget frontend (terminal IPython), or
        where ipywidgets is not installed.
        """
        if getattr(self.shell, "kernel", None) is None:
            run.add_listener(TextProgress(summary=True))
            return
        try:
            from nbflow.widgets.panel import show_chosen_executors
            from nbflow.widgets.run_view import RunView
        except ImportError:
            run.add_listener(TextProgress(summary=True))
            return
        from IPython.display import display

        show_chosen_executors()  # the panels keep the choice this run uses
        view = RunView(run.flow)
        view.follow(run, cancellable=background)
        display(view)

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

    def _cache(self, args: Any) -> None:
        if args.name == "location":
            try:
                configure_cache(args.task)
            except NbflowError as exc:
                raise UsageError(str(exc)) from None
            print(f"The cache is now at {cache_location()}; on a DaskExecutor, runs "
                  "are cached there (every worker must reach it).")
        elif args.name == "clear":
            n = clear_cache(args.task)
            which = f" of {args.task!r}" if args.task else ""
            print(f"Removed {n} cache entries{which}.")
        else:
            print(describe_cache())

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
