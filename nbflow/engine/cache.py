"""Cached task results within one process (Prefect 1's ``context.caches``).

A task with ``cache_for`` that succeeds ends Cached; the next run in this
process asks the task's ``cache_validator`` whether one of the Cached states
kept under ``cache_key`` (default the task's name) stands in for running it.
Nothing is written to disk. Standard library only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from nbflow.engine.state import Cached, State

if TYPE_CHECKING:
    from nbflow.core.task import Task

__all__ = ["candidates", "clear", "remember"]

_lock = threading.Lock()
_caches: dict[str, list[Cached]] = {}


def _key(task: Task) -> str:
    return task.cache_key or task.name


def candidates(task: Task) -> list[Cached]:
    """The Cached states that may stand in for a run of ``task``."""
    with _lock:
        return list(_caches.get(_key(task), ()))


def remember(states: dict[Task, State]) -> None:
    """Keep the Cached states of a finished run (a mapped task's children)."""
    found: dict[str, list[Cached]] = {}
    for task, state in states.items():
        if getattr(task, "cache_for", None) is None:
            continue
        kept = [s for s in (state.map_states or [state]) if isinstance(s, Cached)]
        if kept:
            found.setdefault(_key(task), []).extend(kept)
    if found:
        with _lock:
            _caches.update(found)


def clear() -> None:
    """Forget every cached result of this process."""
    with _lock:
        _caches.clear()
