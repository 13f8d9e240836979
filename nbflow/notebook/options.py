"""The options of a ``%%flowtask`` line, parsed without IPython.

Notebook layer: standard library only. The magic and ``nbflow run NOTEBOOK``
/ ``nbflow export`` read the same grammar: ``%%flowtask [NAME] [--map VAR]
[--retries N] [--retry-delay SECONDS] [--after TASK ...]``, split like a shell
line. :func:`split_flowtask_cell` tells a ``%%flowtask`` cell from any other.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from typing import NoReturn

from nbflow.errors import FlowtaskOptionsError

__all__ = [
    "FlowtaskOptions",
    "FlowtaskOptionsError",
    "parse_flowtask_line",
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise FlowtaskOptionsError(
            f"Bad %%flowtask options: {message}; the options are [NAME] [--map VAR] "
            "[--retries N] [--retry-delay SECONDS] [--after TASK ...]."
        )


def _parser() -> _Parser:
    parser = _Parser(prog=MAGIC, add_help=False, allow_abbrev=False)
    parser.add_argument("name", nargs="?", default=None)
    parser.add_argument("--map", dest="map_var", default=None)
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--retry-delay", type=float, default=None)
    parser.add_argument("--after", nargs="+", default=[])
    return parser


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
after=('load',))

    """
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise FlowtaskOptionsError(
            f"Bad %%flowtask options {line!r}: {exc}; close the quotes."
        ) from None
    args = _parser().parse_args(words)
    return FlowtaskOptions(
        name=args.name,
        map_var=args.map_var,
        retries=args.retries,
        retry_delay=args.retry_delay,
        after=tuple(args.after),
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
