"""The options of ``nbflow run``: parameters and the executor they ask for.

Part of the cli layer (see :mod:`nbflow.cli`): pure argument handling, no
terminal output. It imports the executors, which import dask only when started.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nbflow.errors import NbflowError
from nbflow.executors._schedulers import normalize_scheduler
from nbflow.executors.config import KINDS, ExecutorConfig, normalize_kind
from nbflow.executors.dask import DaskExecutor

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.executors.base import Executor

__all__ = [
    "EXECUTOR_KINDS",
    "UsageError",
    "bind_params",
    "build_executor",
    "executor_from_args",
    "parse_params",
]

EXECUTOR_KINDS = KINDS


class UsageError(NbflowError, ValueError):
    """The command line asks for something that cannot be done; exit status 2."""


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``NAME=VALUE`` strings; a value is JSON if it parses, else a string.

    Examples
    --------
    >>> parse_params(["n=3", "name=Ada", "xs=[1, 2]"])
    {'n': 3, 'name': 'Ada', 'xs': [1, 2]}

    """
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(
                f"Malformed --param {item!r}; expected NAME=VALUE, e.g. --param n=10."
            )
        try:
            params[name] = json.loads(text)
        except ValueError:
            params[name] = text
    return params


def bind_params(
    flows: list[Flow], params: dict[str, Any]
) -> dict[Flow, dict[str, Any]]:
    """Give each flow the parameters it has; refuse unknown and missing ones."""
    known = {p.name for f in flows for p in f.parameters()}
    for name in params:
        if name not in known:
            which = (
                f"flow {flows[0].name!r} has" if len(flows) == 1 else "the flows have"
            )
            raise UsageError(
                f"Unknown parameter {name!r}; {which} parameters {sorted(known)!r}."
            )
    per_flow: dict[Flow, dict[str, Any]] = {}
    for flow in flows:
        flow.validate()
        mine = {p.name: p for p in flow.parameters()}
        for p in sorted(mine.values(), key=lambda p: p.name):
            if p.required and p.name not in params:
                raise UsageError(
                    f"Parameter {p.name!r} of flow {flow.name!r} is required; "
                    f"pass --param {p.name}=VALUE."
                )
        per_flow[flow] = {k: v for k, v in params.items() if k in mine}
    return per_flow


def executor_from_args(args: argparse.Namespace) -> Executor | None:
    """:func:`build_executor` from ``nbflow run``'s parsed options."""
    return build_executor(
        args.executor,
        scheduler=args.scheduler,
        num_workers=args.num_workers,
        address=args.address,
        report=args.report,
        worker_timeout=getattr(args, "worker_timeout", None),
    )


def build_executor(
    kind: str | None,
    *,
    scheduler: str | None = None,
    num_workers: str | int | None = None,
    address: str | None = None,
    report: str | None = None,
    worker_timeout: str | float | None = None,
) -> Executor | None:
    """The executor the options ask for, or None when none is given.

    Without ``kind``, ``address`` or ``report`` mean ``dask`` and ``scheduler``
    or ``num_workers`` mean ``local-dask``.

    Raises
    ------
    UsageError
        For an unknown kind, an option that does not apply to it, or a bad value.

    """
    given = {
        "--scheduler": scheduler,
        "--num-workers": num_workers,
        "--address": address,
        "--report": report,
        "--worker-timeout": worker_timeout,
    }
    if kind is None:
        if address is not None or report is not None:
            kind = "dask"
        elif scheduler is not None or num_workers is not None:
            kind = "local-dask"
        else:
            return None
    try:
        kind = normalize_kind(kind)
    except NbflowError as exc:
        raise UsageError(str(exc)) from None
    allowed = {
        "local": (),
        "local-dask": ("--scheduler", "--num-workers"),
        "dask": ("--num-workers", "--address", "--report", "--worker-timeout"),
    }[kind]
    if address is not None and num_workers is not None:
        allowed = ("--address", "--report", "--worker-timeout")
    for option, value in given.items():
        if value is not None and option not in allowed:
            raise UsageError(
                f"{option} does not apply to --executor {kind}; it applies to "
                f"{_applies_to(option)}."
            )
    workers = None if num_workers is None else _workers(num_workers)

    if kind == "dask":
        config = ExecutorConfig(
            kind="dask",
            cluster="existing" if address is not None else "temporary",
            address=address,
            n_workers=workers,
            performance_report=report is not None,
            performance_report_path=report,
        )
    else:
        config = ExecutorConfig(
            kind=kind,
            scheduler=normalize_scheduler(scheduler or "threads"),
            num_workers=workers,
        )
    problem = config.problem()
    if problem is not None:
        raise UsageError(problem)
    executor = config.build()
    if worker_timeout is not None:
        if address is None or not isinstance(executor, DaskExecutor):
            raise UsageError(
                "--worker-timeout applies to --executor dask with --address; "
                "give the scheduler's --address."
            )
        executor.worker_timeout = _seconds(worker_timeout)
    return executor


def _applies_to(option: str) -> str:
    return {
        "--scheduler": "--executor local-dask",
        "--num-workers": "--executor local-dask, or dask without --address",
        "--address": "--executor dask",
        "--report": "--executor dask",
        "--worker-timeout": "--executor dask with --address",
    }[option]


def _seconds(value: str | float) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise UsageError(
            f"--worker-timeout must be a number of seconds >= 0, got {value!r}."
        )
    return seconds


def _workers(value: str | int) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--num-workers must be a whole number >= 1, got {value!r}.")
    return n
