"""The options of a ``%%flowtask`` line, parsed without IPython.

Notebook layer: no IPython. The one grammar of ``%%flowtask [NAME] [--map VAR]
[--retries N] [--retry-delay SECONDS] [--after TASK ...] [--cache | --no-cache]
[--cache-for DURATION] [--trigger NAME] [--skip-on-upstream-skip |
--no-skip-on-upstream-skip] [--timeout SECONDS]``, split like a shell
line: the magic (in a kernel) and ``nbflow run NOTEBOOK`` / ``nbflow export``
all parse it with :func:`parse_flowtask_line` and register the cell with
:func:`register_flowtask`; :func:`flowtask_help` is the magic's help text.
:func:`split_flowtask_cell` tells a ``%%flowtask`` cell from any other. A new
option is a field of :class:`FlowtaskOptions`, an argument of the parser and
its keyword in :func:`register_flowtask`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from nbflow.errors import FlowtaskOptionsError

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.notebook.flow import CellTask

__all__ = [
    "FlowtaskOptions",
    "FlowtaskOptionsError",
    "flowtask_help",
    "parse_flowtask_line",
    "register_flowtask",
    "resolve_trigger",
    "split_flowtask_cell",
]

MAGIC = "%%flowtask"


@dataclasses.dataclass(frozen=True)
class FlowtaskOptions:
    """The options of one ``%%flowtask`` line, as :func:`register_cell` takes them."""

    name: str | None = None
    map_var: str | None = None
    retries: int = 0
    retry_delay: float | None = None
    after: tuple[str, ...] = ()
    cache: bool = True
    cache_for: str | None = None
    trigger: str | None = None
    skip_on_upstream_skip: bool = True
    timeout: float | None = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise FlowtaskOptionsError(
            f"Bad %%flowtask options: {message}; the options are [NAME] [--map VAR] "
            "[--retries N] [--retry-delay SECONDS] [--after TASK ...] [--no-cache] "
            "[--cache-for DURATION] [--trigger NAME] [--no-skip-on-upstream-skip] "
            "[--timeout SECONDS]."
        )


def _parser() -> _Parser:
    parser = _Parser(
        prog=MAGIC,
        add_help=False,
        allow_abbrev=False,
        description="Register this cell as a task of the notebook flow (it does "
        "not run).",
    )
    parser.add_argument(
        "name", nargs="?", default=None,
        help="Task name; default the first name the cell creates.",
    )
    parser.add_argument(
        "--map", dest="map_var", metavar="VAR", default=None,
        help="Run the cell once per element of VAR.",
    )
    parser.add_argument(
        "--retries", type=int, default=0, metavar="N",
        help="Retries when the cell fails.",
    )
    parser.add_argument(
        "--retry-delay", type=float, default=None, metavar="SECONDS",
        help="Seconds between retries.",
    )
    parser.add_argument(
        "--after", nargs="+", default=[], metavar="TASK",
        help="Tasks this one runs after, besides its data inputs.",
    )
    parser.add_argument(
        "--cache", action=argparse.BooleanOptionalAction, default=True,
        help="Reuse the stored result when nothing the cell depends on changed "
        "(--no-cache: always run it).",
    )
    parser.add_argument(
        "--cache-for", default=None, metavar="DURATION",
        help="How long a stored result stays valid, e.g. 30m, 2h, 1d.",
    )
    parser.add_argument(
        "--trigger", default=None, metavar="NAME",
        help="When the cell runs, given its upstream tasks' states: a trigger of "
        "nbflow.triggers (" + ", ".join(_TRIGGERS) + "), or "
        "'some_successful(at_least=N, at_most=M)' / 'some_failed(...)'; "
        "default all_successful.",
    )
    parser.add_argument(
        "--skip-on-upstream-skip", action=argparse.BooleanOptionalAction, default=True,
        help="Skip the cell when an upstream task was skipped "
        "(--no-skip-on-upstream-skip: run it, reading None for what it provides).",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS",
        help="Fail the cell as TimedOut when a run takes longer.",
    )
    return parser


#: The triggers ``--trigger`` names alone (``some_*`` take their thresholds).
_TRIGGERS = (
    "all_successful", "all_failed", "all_finished", "always_run", "any_successful",
    "any_failed", "not_all_skipped", "manual_only",
)
_TRIGGER_FACTORIES = ("some_successful", "some_failed")


def resolve_trigger(spec: str) -> Callable[..., bool]:
    """The trigger of :mod:`nbflow.triggers` that ``--trigger spec`` names.

    Parameters
    ----------
    spec : str
        A trigger's name (``"all_finished"``), or ``"some_successful(at_least=2)"``
        / ``"some_failed(at_most=0.5)"`` with number thresholds.

    Returns
    -------
    callable
        The trigger.

    Raises
    ------
    FlowtaskOptionsError
        For any other name, or thresholds that are not numbers.

    Examples
    --------
    >>> resolve_trigger("any_failed").__name__
    'any_failed'

    """
    from nbflow import triggers

    text = spec.strip()
    if text in _TRIGGERS:
        trigger: Callable[..., bool] = getattr(triggers, text)
        return trigger
    try:
        call = ast.parse(text, mode="eval").body
    except SyntaxError:
        call = None
    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id in _TRIGGER_FACTORIES and len(call.args) <= 2
            and all(k.arg in ("at_least", "at_most") for k in call.keywords)):
        values = [*call.args, *(k.value for k in call.keywords)]
        if all(isinstance(v, ast.Constant) and type(v.value) in (int, float)
               for v in values):
            args = [ast.literal_eval(a) for a in call.args]
            kwargs = {str(k.arg): ast.literal_eval(k.value) for k in call.keywords}
            made: Callable[..., bool] = getattr(triggers, call.func.id)(*args, **kwargs)
            return made
    raise FlowtaskOptionsError(
        f"Bad %%flowtask --trigger {spec!r}: use one of "
        + ", ".join(_TRIGGERS)
        + ", or some_successful(at_least=N, at_most=M) / some_failed(...) with numbers."
    )


def flowtask_help() -> str:
    """The usage and options of ``%%flowtask`` (the magic's ``?`` help)."""
    return _parser().format_help()


def parse_flowtask_line(line: str) -> FlowtaskOptions:
    """Parse what follows ``%%flowtask`` on a cell's first line.

    Parameters
    ----------
    line : str
        E.g. ``"square --map xs --retries 2"``.

    Returns
    -------
    FlowtaskOptions

    Raises
    ------
    FlowtaskOptionsError
        For an unknown option, a missing or malformed value, or bad quoting.

    Examples
    --------
    >>> parse_flowtask_line("square --map xs --after load")
    FlowtaskOptions(name='square', map_var='xs', retries=0, retry_delay=None, \
after=('load',), cache=True, cache_for=None, trigger=None, \
skip_on_upstream_skip=True, timeout=None)

    """
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise FlowtaskOptionsError(
            f"Bad %%flowtask options {line!r}: {exc}; close the quotes."
        ) from None
    args = _parser().parse_args(words)
    if args.trigger is not None:
        resolve_trigger(args.trigger)  # a bad name fails here, not when it runs
    if args.timeout is not None and not 0 < args.timeout < float("inf"):
        raise FlowtaskOptionsError(
            f"Bad %%flowtask --timeout {args.timeout!r}: give a number of seconds "
            "above 0."
        )
    return FlowtaskOptions(
        name=args.name,
        map_var=args.map_var,
        retries=args.retries,
        retry_delay=args.retry_delay,
        after=tuple(args.after),
        cache=args.cache,
        cache_for=args.cache_for,
        trigger=args.trigger,
        skip_on_upstream_skip=args.skip_on_upstream_skip,
        timeout=args.timeout,
    )


def register_flowtask(
    body: str,
    options: FlowtaskOptions,
    *,
    flow: Flow | None = None,
    cell_id: str | None = None,
) -> CellTask:
    """Register a ``%%flowtask`` cell's ``body`` with its parsed ``options``.

    Raises
    ------
    NbflowError
        What :func:`~nbflow.notebook.register_cell` raises.

    """
    from nbflow.notebook.cache import parse_duration
    from nbflow.notebook.flow import register_cell

    return register_cell(
        body,
        options.name,
        map_var=options.map_var,
        retries=options.retries,
        retry_delay=options.retry_delay,
        after=options.after,
        cell_id=cell_id,
        flow=flow,
        cache=options.cache,
        cache_for=(None if options.cache_for is None
                   else parse_duration(options.cache_for)),
        trigger=options.trigger,
        skip_on_upstream_skip=options.skip_on_upstream_skip,
        timeout=options.timeout,
    )


def split_flowtask_cell(source: str) -> tuple[str, str] | None:
    r"""``(line, body)`` of a ``%%flowtask`` cell, or None for any other cell.

    Leading blank lines are skipped, as IPython does.

    Examples
    --------
    >>> split_flowtask_cell("%%flowtask load\nxs = [1, 2]\n")
    ('load', 'xs = [1, 2]\n')
    >>> split_flowtask_cell("xs = [1, 2]") is None
    True

    """
    text = source.lstrip("\r\n \t")
    first, _, body = text.partition("\n")
    first = first.rstrip("\r")
    if first != MAGIC and not first.startswith((MAGIC + " ", MAGIC + "\t")):
        return None
    return first[len(MAGIC) :].strip(), body
