"""Finding the tasks inside a task's argument values (lists, dicts, unmapped)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nbflow.core.task import Task, flatten, unmapped

__all__ = ["iter_tasks"]


#: Types that never hold a task: skipped without a generator each, so a map
#: over a literal list of 100,000 numbers is scanned in milliseconds.
_LEAVES = frozenset({int, float, complex, str, bytes, bool, type(None)})


def iter_tasks(value: Any) -> Iterator[tuple[Task, bool]]:
    """Yield ``(task, is_unmapped)`` for every task inside an argument value."""
    if type(value) in _LEAVES:
        return
    if isinstance(value, Task):
        yield value, False
    elif isinstance(value, unmapped):
        for found, _ in iter_tasks(value.value):
            yield found, True
    elif isinstance(value, flatten):
        yield from iter_tasks(value.value)
    elif isinstance(value, (list, tuple, set, frozenset, dict)):
        leaves = _LEAVES
        for item in value.values() if isinstance(value, dict) else value:
            if type(item) not in leaves:
                yield from iter_tasks(item)
