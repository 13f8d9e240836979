"""The options of ``nbflow run``: parameters and the executor they ask for.

Part of the cli layer (see :mod:`nbflow.cli`): pure argument handling, no
terminal output. It imports the executors, which import dask only when started.
The executor options are the :class:`~nbflow.executors.config.ExecutorConfig`
fields whose metadata names a flag: which executor and cluster mode each applies
to, its count check and its help come from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nbflow.errors import CommandLineError, NbflowError, WholeNumberError
from nbflow.executors._dask_options import check_worker_timeout, read_seconds
from nbflow.executors.config import (
    KINDS,
    OPTIONS,
    ExecutorConfig,
    ExecutorKind,
    normalize_kind,
)

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.executors.base import Executor

__all__ = [
    "EXECUTOR_KINDS",
    "FLAGS",
    "add_executor_options",
    "bind_params",
    "build_executor",
    "executor_from_args",
    "parse_params",
]

EXECUTOR_KINDS = KINDS


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
            raise CommandLineError(
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
            raise CommandLineError(
                f"Unknown parameter {name!r}; {which} parameters {sorted(known)!r}."
            )
    per_flow: dict[Flow, dict[str, Any]] = {}
    for flow in flows:
        flow.validate()
        mine = {p.name: p for p in flow.parameters()}
        for p in sorted(mine.values(), key=lambda p: p.name):
            if p.required and p.name not in params:
                raise CommandLineError(
                    f"Parameter {p.name!r} of flow {flow.name!r} is required; "
                    f"pass --param {p.name}=VALUE."
                )
        per_flow[flow] = {k: v for k, v in params.items() if k in mine}
    return per_flow


#: Each ``nbflow run`` executor option and the config fields it sets, from the
#: fields' metadata (``--num-workers`` is ``num_workers`` or ``n_workers``).
FLAGS: dict[str, list[str]] = {}
for _name, _spec in OPTIONS.items():
    if _spec.flag is not None:
        FLAGS.setdefault(_spec.flag, []).append(_name)

#: The executor (and cluster mode) a config section stands for, in words.
_KIND_OF = {
    "local-dask": "local-dask",
    "temporary": "dask",
    "existing": "dask",
    "report": "dask",
}
_WHERE = {
    "local-dask": "--executor local-dask",
    "temporary": "--executor dask without --address",
    "existing": "--executor dask with --address",
    "report": "--executor dask",
}


def add_executor_options(group: Any) -> None:
    """Add ``nbflow run``'s executor options (all but ``--executor``) to ``group``."""
    for flag, names in FLAGS.items():
        specs = [OPTIONS[n] for n in names]
        group.add_argument(
            flag,
            metavar=specs[0].metavar,
            help="; ".join(f"{_KIND_OF[s.section]}: {s.help}" for s in specs),
        )


def executor_from_args(args: argparse.Namespace) -> Executor | None:
    """:func:`build_executor` from ``nbflow run``'s parsed options."""
    given = {flag: getattr(args, flag[2:].replace("-", "_")) for flag in FLAGS}
    return build_executor(args.executor, given)


def build_executor(
    kind: str | None, given: Mapping[str, str | int | None]
) -> Executor | None:
    """The executor the options ask for, or None when none is given.

    Parameters
    ----------
    kind : str, optional
        ``--executor``; without it, the first of ``local-dask`` and ``dask``
        to which every option given applies.
    given : mapping
        Option (e.g. ``"--num-workers"``) to its value, None when not given.

    Raises
    ------
    CommandLineError
        For an unknown kind, an option that does not apply to it, or a bad value.

    """
    values = {flag: v for flag, v in given.items() if v is not None}
    if kind is None and not values:
        return None
    try:
        kinds: list[ExecutorKind] = (
            ["local-dask", "dask"] if kind is None else [normalize_kind(kind)]
        )
    except NbflowError as exc:
        raise CommandLineError(str(exc)) from None
    existing = any(
        OPTIONS[n].section == "existing" for flag in values for n in FLAGS[flag]
    )
    for chosen in kinds:
        config = ExecutorConfig(
            kind=chosen, cluster="existing" if existing else "temporary"
        )
        fields = {flag: _field_for(config, flag) for flag in values}
        if all(fields.values()):
            break
    else:
        flag = next(f for f, name in fields.items() if name is None)
        where = ", or ".join(_WHERE[OPTIONS[n].section] for n in FLAGS[flag])
        mode = " with --address" if chosen == "dask" and existing else ""
        raise CommandLineError(
            f"{flag} does not apply to --executor {chosen}{mode}; it applies to "
            f"{where}."
        )
    if existing and "--address" not in values:
        flag = next(
            f for f in values if any(OPTIONS[n].section == "existing" for n in FLAGS[f])
        )
        raise CommandLineError(
            f"{flag} applies to {_WHERE['existing']}; give the scheduler's --address."
        )
    changes: dict[str, Any] = {}
    for flag, value in values.items():
        name = str(fields[flag])
        spec = OPTIONS[name]
        if spec.control == "count":
            value = WholeNumberError.check(
                flag, _integer(value), minimum=spec.minimum or 0, default=spec.default
            )
        if spec.switch is not None:
            changes[spec.switch] = True
        changes[name] = value
        if spec.control == "seconds":  # the one seconds option: worker_timeout
            changes[name] = check_worker_timeout(read_seconds(str(value)), name=flag)
    config = dataclasses.replace(config, **changes)
    problem = config.problem()
    if problem is not None:
        raise CommandLineError(problem)
    return config.build()


def _field_for(config: ExecutorConfig, flag: str) -> str | None:
    """The field ``flag`` sets in ``config``'s kind and mode, or None."""
    shown = config.sections()
    return next((n for n in FLAGS[flag] if OPTIONS[n].section in shown), None)


def _integer(value: str | int) -> object:
    """``value`` as an int if it is one written as text, else as given."""
    try:
        return int(value)
    except ValueError:
        return value
