"""The ``nbflow`` command line: ``nbflow run -p FILE.py`` (and later ``export``).

Part of the cli layer: it may import everything but the widgets (and never
IPython). Each subcommand is a ``_add_<name>(subparsers)`` function that
registers its options and a handler ``handler(args) -> exit status``. Exit
status: 0 on success, 1 when a flow failed or was cancelled, 2 on bad usage,
which is reported as one line, ``nbflow: error: ...``, with no traceback.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from nbflow._cli_options import (
    EXECUTOR_KINDS,
    UsageError,
    bind_params,
    build_executor,
    parse_params,
)
from nbflow._progress import Progress, print_summary, use_color
from nbflow.core.flow import Flow
from nbflow.errors import NbflowError

if TYPE_CHECKING:
    from nbflow.engine.state import State
    from nbflow.executors.base import Executor

__all__ = ["UsageError", "build_parser", "load_flows", "main"]

#: Packages an executor may need that the core install does not bring.
_EXTRAS = frozenset({"dask", "distributed", "bokeh"})


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
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nbflow`` with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="nbflow",
        description="Run nbflow flows from a terminal.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(subparsers)
    return parser


def _add_run(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the flow(s) defined in a Python file",
        description="Run the flow(s) a Python file defines, print each task's final "
        "state; exit 0 on success, 1 if a flow failed, 2 on bad usage.",
    )
    run.add_argument("file", nargs="?", metavar="FILE", help="the same as -p FILE")
    run.add_argument(
        "-p",
        "--path",
        metavar="FILE.py",
        help="a Python file that builds one or more Flows",
    )
    run.add_argument(
        "--name",
        metavar="FLOW",
        help="run only the flow of this name (default: all, in file order)",
    )
    run.add_argument(
        "-P",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter value, parsed as JSON if it parses, else a "
        "string; repeat for more",
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
        "--report",
        metavar="PATH",
        help="dask: write Dask's performance report (HTML) there",
    )
    run.set_defaults(handler=_run)


# -- nbflow run ---------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    path = _source(args)
    executor = build_executor(
        args.executor,
        scheduler=args.scheduler,
        num_workers=args.num_workers,
        address=args.address,
        report=args.report,
    )
    flows = _select(load_flows(path), args.name, path)
    params = parse_params(args.param)
    per_flow = bind_params(flows, params)
    out = sys.stdout
    color = use_color(out)
    status = 0
    for i, flow in enumerate(flows):
        state = _run_one(flow, executor, per_flow[flow], out, color=color)
        if not state.is_successful():
            status = 1
        if state.is_cancelled():
            for rest in flows[i + 1 :]:
                out.write(f"Skipped flow {rest.name!r}: the run was cancelled.\n")
            break
        if i + 1 < len(flows):
            out.write("\n")
    return status


def _run_one(
    flow: Flow,
    executor: Executor | None,
    params: dict[str, Any],
    out: TextIO,
    *,
    color: bool,
) -> State:
    """Run one flow with progress on ``out``; print its summary; return its state."""
    from nbflow.executors import LocalExecutor

    on = executor or flow.executor or LocalExecutor()
    out.write(f"Running flow {flow.name!r} on {on!r}\n")
    out.flush()
    started = time.monotonic()
    try:
        state = flow.run(
            parameters=params, executor=executor, listeners=[Progress(out, color=color)]
        )
    except ModuleNotFoundError as exc:
        package = (exc.name or "").partition(".")[0]
        if package not in _EXTRAS:
            raise
        raise UsageError(
            f"{on!r} needs {package!r}, which is not installed; install it "
            "with `pip install 'nbflow[dask]'`."
        ) from None
    seconds = time.monotonic() - started
    print_summary(
        flow.name, flow.sorted_tasks(), state, out, color=color, seconds=seconds
    )
    return state


def _source(args: argparse.Namespace) -> str:
    if args.file and args.path:
        raise UsageError(
            f"Give the flow file once, as FILE or as -p FILE, not both "
            f"({args.file!r} and {args.path!r})."
        )
    path: str | None = args.path or args.file
    if not path:
        raise UsageError("No flow file given; run `nbflow run -p FILE.py`.")
    if path.endswith(".ipynb"):
        raise UsageError(
            f"Running notebooks such as {path!r} is not supported yet; give a "
            "Python file with -p FILE.py."
        )
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
