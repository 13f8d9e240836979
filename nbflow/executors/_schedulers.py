"""The one place where scheduler names and their dask aliases are normalised."""

from __future__ import annotations

from typing import Literal

from nbflow.errors import UnknownSchedulerError

__all__ = ["SCHEDULERS", "Scheduler", "UnknownSchedulerError", "normalize_scheduler"]

Scheduler = Literal["threads", "processes", "synchronous"]
SCHEDULERS: tuple[Scheduler, ...] = ("threads", "processes", "synchronous")
_ALIASES: dict[str, Scheduler] = {
    "threads": "threads",
    "threading": "threads",
    "processes": "processes",
    "multiprocessing": "processes",
    "synchronous": "synchronous",
    "sync": "synchronous",
    "single-threaded": "synchronous",
}


def normalize_scheduler(name: object) -> Scheduler:
    """Return the canonical name of a dask local scheduler.

    Examples
    --------
    >>> normalize_scheduler("multiprocessing")
    'processes'

    """
    if isinstance(name, str) and name.lower() in _ALIASES:
        return _ALIASES[name.lower()]
    raise UnknownSchedulerError(name, SCHEDULERS)
