"""The ``nbflow`` command line: ``nbflow run``, ``nbflow export``.

``nbflow run -p FILE.py`` runs the flows a Python file builds; ``nbflow run
NOTEBOOK.ipynb`` runs a notebook's flow (:mod:`nbflow._notebook_run`);
``nbflow export NOTEBOOK.ipynb -o FLOW.py`` writes it as a Python file
(:mod:`nbflow._export`). Part of the cli layer: it may import everything but
the widgets; IPython only for a notebook's setup cells, imported then. Each
subcommand is a ``_add_<name>(subparsers)`` function that registers its options
and a handler ``handler(args) -> exit status``. Exit status: 0 on success, 1
when a flow failed or was cancelled, 2 on bad usage, which is reported as one
line, ``nbflow: error: ...``, with no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import runpy
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from nbflow._cli_options import (
    EXECUTOR_KINDS,
    UsageError,
    bind_params,
    executor_from_args,
    parse_params,
)
from nbflow._cli_run import run_and_report
from nbflow._progress import use_color
from nbflow.core.flow import Flow
from nbflow.errors import NbflowError

if TYPE_CHECKING:
    from nbflow.engine.events import Listener
    from nbflow.engine.state import State
    from nbflow.executors.base import Executor

__all__ = ["UsageError", "build_parser", "load_flows", "main"]


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
are its variables: -P n=3 sets `n` after the setup cells ran.
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
    group = run.add_argument_group(
        "executor", "Without these options each flow runs on its own flow.executor."
    )
    group.add_argument(
        "--executor", metavar="KIND", help=f"one of {', '.join(EXECUTOR_KINDS)}"
    )
    group.add_argument(
        "--scheduler",
        metavar="NAME",
        help="local-dask: threads, processes or synchronous",
    )
    group.add_argument(
        "--num-workers",
        metavar="N",
        help="local-dask: threads or processes; dask: workers of the temporary cluster",
    )
    group.add_argument(
        "--address",
        metavar="tcp://HOST:PORT",
        help="dask: an existing scheduler (left running)",
    )
    group.add_argument(
        "--worker-timeout",
        metavar="SECONDS",
        help="dask --address: wait that long for a worker if the scheduler has "
        "none (default 60)",
    )
    group.add_argument(
        "--report",
        metavar="PATH",
        help="dask: write Dask's performance report (HTML) there",
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
        return _run_notebook(args, path)
    executor = executor_from_args(args)
    flows = _select(load_flows(path), args.name, path)
    params = parse_params(args.param)
    per_flow = bind_params(flows, params)
    out = sys.stdout
    color = use_color(out)
    status = 0
    for i, flow in enumerate(flows):
        state = run_and_report(
            flow,
            executor,
            out,
            color=color,
            run=functools.partial(
                _run_file_flow, flow, executor=executor, parameters=per_flow[flow]
            ),
        )
        if not state.is_successful():
            status = 1
        if state.is_cancelled():
            for rest in flows[i + 1 :]:
                out.write(f"Skipped flow {rest.name!r}: the run was cancelled.\n")
            break
        if i + 1 < len(flows):
            out.write("\n")
    return status


def _run_notebook(args: argparse.Namespace, path: str) -> int:
    from nbflow._notebook_run import run_notebook_command

    return run_notebook_command(args, path)


def _export(args: argparse.Namespace) -> int:
    from nbflow._export import export_notebook
    from nbflow._notebook_file import read_notebook

    path: str = args.notebook
    if not path.endswith(".ipynb"):
        raise UsageError(f"{path!r} is not a notebook; give an .ipynb file to export.")
    target: str = args.output or path[: -len(".ipynb")] + ".py"
    if not target.endswith(".py"):
        raise UsageError(
            f"-o {target!r} is not a Python file; give a path ending in .py."
        )
    code = export_notebook(read_notebook(path), os.path.basename(target))
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(code)
    except OSError as exc:
        raise UsageError(
            f"Cannot write {target!r} ({exc.strerror}); give -o a writable path."
        ) from None
    print(f"Wrote {target} from {path}; run it with `nbflow run -p {target}`.")
    return 0


def _run_file_flow(
    flow: Flow,
    listeners: list[Listener],
    *,
    executor: Executor | None,
    parameters: dict[str, Any],
) -> State:
    return flow.run(parameters=parameters, executor=executor, listeners=listeners)


def _source(args: argparse.Namespace) -> str:
    if args.file and args.path:
        raise UsageError(
            f"Give the flow file once, as FILE or as -p FILE, not both "
            f"({args.file!r} and {args.path!r})."
        )
    path: str | None = args.path or args.file
    if not path:
        raise UsageError("No flow file given; run `nbflow run -p FILE.py`.")
    return path


def load_flows(path: str) -> list[Flow]:
    """Execute the Python file ``path`` and return the Flows it defines.

    The file runs as module ``__nbflow__``, so an ``if __name__ == "__main__":``
    block in it does not run; its directory is put first on ``sys.path``, as
    ``python FILE`` does.

    Parameters
    ----------
    path : str
        A Python file.

    Returns
    -------
    list of Flow
        Its module-level flows, in the order they were first assigned.

    Raises
    ------
    UsageError
        If the file does not exist, raises while loading, or defines no Flow.

    """
    if not os.path.exists(path):
        raise UsageError(
            f"File {path!r} does not exist; give the path of a Python "
            "file that builds a Flow."
        )
    if os.path.isdir(path):
        raise UsageError(
            f"{path!r} is a directory; give the path of a Python file "
            "that builds a Flow."
        )
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        namespace = runpy.run_path(path, run_name="__nbflow__")
    except (Exception, SystemExit) as exc:
        raise UsageError(
            f"Loading {path!r} raised {type(exc).__name__}: {exc}{_where(exc, path)}; "
            f"fix the file (`python {path}` shows the traceback)."
        ) from None
    flows: list[Flow] = []
    for value in namespace.values():
        if isinstance(value, Flow) and not any(value is f for f in flows):
            flows.append(value)
    if not flows:
        raise UsageError(
            f"File {path!r} defines no Flow; build one at module level with "
            '`with Flow("name") as flow:`.'
        )
    return flows


def _where(exc: BaseException, path: str) -> str:
    """`` (line N)``: the last line of ``path`` in ``exc``'s traceback."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return ""  # its message already names the line
    target = os.path.abspath(path)
    lines = [
        f.lineno
        for f in traceback.extract_tb(exc.__traceback__)
        if os.path.abspath(f.filename) == target
    ]
    return f" (line {lines[-1]})" if lines else ""


def _select(flows: list[Flow], name: str | None, path: str) -> list[Flow]:
    if name is None:
        return flows
    chosen = [f for f in flows if f.name == name]
    if not chosen:
        names = ", ".join(repr(f.name) for f in flows)
        raise UsageError(f"No flow named {name!r} in {path!r}; its flows are {names}.")
    return chosen
