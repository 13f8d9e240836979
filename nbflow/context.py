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
    return to_dict().get(key, default)


def to_dict() -> dict[str, Any]:
    """The current task run's context, as a new dict."""
    # The engine keeps a tuple per run (cheap on the per-task path); the dict
    # is made only when a task asks.
    run = getattr(_local, "run", None)
    if run is None:
        return {}
    name, map_index, run_count, loop = run
    values = {"task_name": name, "map_index": map_index, "task_run_count": run_count}
    if loop is not None:
        values["task_loop_count"] = loop[0] + 1
        values["task_loop_result"] = loop[1]
    return values
