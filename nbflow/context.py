"""What a running task may ask about its own run, as Prefect 1's ``prefect.context``.

Inside a task: ``context.get("task_loop_result")`` (the result of the last
``LOOP``), ``"task_loop_count"``, ``"task_run_count"`` (1, then 2 on the first
retry ...), ``"map_index"`` and ``"task_name"``. Outside a task run it is empty.
It holds nothing else (no flow, no config, no logger): nbflow has no global context.
Standard library only.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["get", "to_dict"]

_local = threading.local()


def get(key: str, default: Any = None) -> Any:
    """The value of ``key`` in the current task run, or ``default``.

    Examples
    --------
    >>> get("task_loop_result", 1)
    1

    """
    values = getattr(_local, "values", None)
    return default if values is None else values.get(key, default)


def to_dict() -> dict[str, Any]:
    """A copy of the current task run's context."""
    return dict(getattr(_local, "values", None) or {})


def _set(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """Install ``values`` in this thread; return what was there (engine use)."""
    old = getattr(_local, "values", None)
    _local.values = values
    return old
