"""``LocalExecutor``: every task in the calling thread, nothing else imported."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from nbflow.executors.base import Executor

__all__ = ["LocalExecutor"]

T = TypeVar("T")


class LocalExecutor(Executor):
    """Run each task in the calling thread, the moment it is submitted.

    The default executor: no pool, no cluster, nothing to start, and the
    lowest cost per task. Futures are the values themselves.

    Examples
    --------
    >>> from nbflow import Flow
    >>> flow = Flow("example", executor=LocalExecutor())

    """

    def submit(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        extra_context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn`` now and return its value (also outside ``start()``)."""
        return fn(*args, **kwargs)

    def wait(self, futures: Any, *, return_exceptions: bool = False) -> Any:
        """Return ``futures``: they are already values."""
        return futures

    def collect_finished(
        self, futures: list[Any], *, fetch: Collection[int] = ()
    ) -> list[Any]:
        """Every submitted value has finished."""
        return list(futures)
