"""``nbflow run FILE.py``: the flows a Python file builds, run in file order.

Part of the cli layer (see :mod:`nbflow.cli`). :func:`load_flows` executes the
file as module ``__nbflow__`` and picks up its module-level flows; each runs
with terminal progress and its summary (:func:`nbflow.cli.run_flow.run_and_report`).
"""

from __future__ import annotations

import argparse
import functools
import os
import runpy
import sys
import traceback
from typing import TYPE_CHECKING, Any

from nbflow.cli.options import bind_params, executor_from_args, parse_params
from nbflow.cli.progress import use_color
from nbflow.cli.run_flow import run_and_report
from nbflow.core.flow import Flow
from nbflow.errors import CommandLineError

if TYPE_CHECKING:
    from nbflow.engine.events import Listener
    from nbflow.engine.state import State
    from nbflow.executors.base import Executor

__all__ = ["load_flows", "run_file_command"]


def run_file_command(args: argparse.Namespace, path: str) -> int:
    """``nbflow run FILE.py``: each flow the file builds, in order; the exit status."""
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
            check_environment=args.check_environment,
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


def _run_file_flow(
    flow: Flow,
    listeners: list[Listener],
    *,
    executor: Executor | None,
    parameters: dict[str, Any],
) -> State:
    return flow.run(parameters=parameters, executor=executor, listeners=listeners)


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
    CommandLineError
        If the file does not exist, raises while loading, or defines no Flow.

    """
    if not os.path.exists(path):
        raise CommandLineError(
            f"File {path!r} does not exist; give the path of a Python "
            "file that builds a Flow."
        )
    if os.path.isdir(path):
        raise CommandLineError(
            f"{path!r} is a directory; give the path of a Python file "
            "that builds a Flow."
        )
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        namespace = runpy.run_path(path, run_name="__nbflow__")
    except (Exception, SystemExit) as exc:
        raise CommandLineError(
            f"Loading {path!r} raised {type(exc).__name__}: {exc}{_where(exc, path)}; "
            f"fix the file (`python {path}` shows the traceback)."
        ) from None
    flows: list[Flow] = []
    for value in namespace.values():
        if isinstance(value, Flow) and not any(value is f for f in flows):
            flows.append(value)
    if not flows:
        raise CommandLineError(
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
        raise CommandLineError(
            f"No flow named {name!r} in {path!r}; its flows are {names}."
        )
    return chosen
