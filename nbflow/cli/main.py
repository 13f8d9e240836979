"""The ``nbflow`` command line: ``nbflow run``, ``nbflow export``.

``nbflow run -p FILE.py`` runs the flows a Python file builds; ``nbflow run
NOTEBOOK.ipynb`` runs a notebook's flow (:mod:`nbflow.cli.run_notebook`);
``nbflow export NOTEBOOK.ipynb -o FLOW.py`` writes it as a Python file
(:mod:`nbflow.notebook.export`). Part of the cli layer: it may import everything but
the widgets; IPython only for a notebook's setup cells, imported then. Each
subcommand is a ``_add_<name>(subparsers)`` function that registers its options
and a handler ``handler(args) -> exit status``. Exit status: 0 on success, 1
when a flow failed or was cancelled, 2 on bad usage, which is reported as one
line, ``nbflow: error: ...``, with no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from nbflow.cli.options import EXECUTOR_KINDS, add_executor_options
from nbflow.cli.run_file import run_file_command
from nbflow.errors import CommandLineError, NbflowError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nbflow`` command; return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``nbflow``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 1 if a flow failed or was cancelled, 2 on bad usage.

    Examples
    --------
    >>> main(["run", "-p", "examples/quickstart.py"])  # doctest: +SKIP
    0

    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    if extra:
        print(
            f"nbflow: error: unrecognized arguments: {' '.join(extra)}; see "
            f"`nbflow {args.command} --help`.",
            file=sys.stderr,
        )
        return 2
    try:
        with _sigterm_interrupts():
            status: int = args.handler(args)
    except NbflowError as exc:
        # Deliberate errors (a bad option, an unreachable cluster) are usage
        # errors here; anything else is a bug and keeps its traceback.
        print(f"nbflow: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbflow: interrupted.", file=sys.stderr)
        return 1
    return status


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a run as Ctrl-C does, so what it started (a process pool,
    a temporary cluster) is shut down before the command ends; Python's
    default would end at once and leave the pool's processes running.
    """
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, as nbflow's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"nbflow: error: {message}; see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nbflow`` with all its subcommands."""
    parser = _Parser(
        prog="nbflow",
        description="Run nbflow flows from a terminal.",
    )
    from nbflow import __version__

    parser.add_argument("--version", action="version", version=f"nbflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(subparsers)
    _add_export(subparsers)
    return parser


_NOTEBOOKS = """\
A notebook (.ipynb) runs with no Jupyter server. Its ordinary code cells run
first, in order, in one IPython shell: magics work, but `%flow run`, `show`,
`reset` and `remove` lines are skipped, and the code after the first
`%flow run` line is left out (it shows results). Then its %%flowtask cells run
as one flow, on the executor the options give, else the one the notebook chose
(current_flow().executor), else a LocalExecutor. The parameters of a notebook
are its variables: -P n=3 sets `n` after the setup cells ran. A notebook that
empties its flow (`%flow reset`) holds several flows: it runs top to bottom as
in Jupyter, each `%flow run` where it stands (a cell tagged raises-exception
may fail; any other error stops the run, exit status 1).
"""


def _add_run(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the flow(s) of a Python file, or a notebook's flow",
        description="Run the flow(s) a Python file defines, or a notebook's flow,\n"
        "and print each task's final state; exit 0 on success, 1 if a flow\n"
        "failed, 2 on bad usage.",
        epilog=_NOTEBOOKS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "file", nargs="?", metavar="FILE", help="the same as -p FILE (or NOTEBOOK)"
    )
    run.add_argument(
        "-p",
        "--path",
        metavar="FILE.py",
        help="a Python file that builds one or more Flows, or a notebook (.ipynb)",
    )
    run.add_argument(
        "--name",
        metavar="FLOW",
        help="run only the flow of this name (default: all, in file order); "
        "not for notebooks",
    )
    run.add_argument(
        "-P",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter value, parsed as JSON if it parses, else a "
        "string; repeat for more (for a notebook: a variable)",
    )
    run.add_argument(
        "--fresh",
        nargs="?",
        const=True,
        default=False,
        metavar="TASK",
        help="notebook: reuse no stored cell result (with TASK: not for it nor "
        "its downstream); the cache is .nbflow/cache next to the notebook",
    )
    group = run.add_argument_group(
        "executor", "Without these options each flow runs on its own flow.executor."
    )
    group.add_argument(
        "--executor", metavar="KIND", help=f"one of {', '.join(EXECUTOR_KINDS)}"
    )
    add_executor_options(group)
    group.add_argument(
        "--no-check-environment",
        dest="check_environment",
        action="store_false",
        help="dask: run even if the workers lack packages the flow uses, or "
        "have other versions of them",
    )
    run.set_defaults(handler=_run)


def _add_export(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export",
        help="write a notebook's flow as a plain Python file",
        description="Write a Python file that builds a notebook's flow with @task "
        "functions and `with Flow(...)`; `nbflow run -p FLOW.py` runs it. Setup "
        "cells become module-level code, and the variables the tasks read from "
        "them become Parameters.",
    )
    export.add_argument("notebook", metavar="NOTEBOOK.ipynb", help="the notebook")
    export.add_argument(
        "-o",
        "--output",
        metavar="FLOW.py",
        help="where to write it (default: the notebook's path with .py)",
    )
    export.set_defaults(handler=_export)


# -- nbflow run ---------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    path = _source(args)
    if path.endswith(".ipynb"):
        from nbflow.cli.run_notebook import run_notebook_command

        return run_notebook_command(args, path)
    return run_file_command(args, path)


def _export(args: argparse.Namespace) -> int:
    from nbflow.notebook.export import export_notebook
    from nbflow.notebook.ipynb import read_notebook

    path: str = args.notebook
    if not path.endswith(".ipynb"):
        raise CommandLineError(
            f"{path!r} is not a notebook; give an .ipynb file to export."
        )
    target: str = args.output or path[: -len(".ipynb")] + ".py"
    if not target.endswith(".py"):
        raise CommandLineError(
            f"-o {target!r} is not a Python file; give a path ending in .py."
        )
    code = export_notebook(read_notebook(path), os.path.basename(target))
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(code)
    except OSError as exc:
        raise CommandLineError(
            f"Cannot write {target!r} ({exc.strerror}); give -o a writable path."
        ) from None
    print(f"Wrote {target} from {path}; run it with `nbflow run -p {target}`.")
    return 0


def _source(args: argparse.Namespace) -> str:
    if args.file and args.path:
        raise CommandLineError(
            f"Give the flow file once, as FILE or as -p FILE, not both "
            f"({args.file!r} and {args.path!r})."
        )
    path: str | None = args.path or args.file
    if not path:
        raise CommandLineError("No flow file given; run `nbflow run -p FILE.py`.")
    return path
