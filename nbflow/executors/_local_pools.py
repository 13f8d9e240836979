"""The pools behind ``LocalDaskExecutor``, and what travels through them.

A daemon thread pool for ``scheduler="threads"``; for ``"processes"``, the
per-worker channel (state records batched onto the pool's queue, cancellation
through its event) and the wrappers that carry a task's exception or pickled
result back as a value.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle as _pickle
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbflow.executors.base import Deliver, TaskChannel

if TYPE_CHECKING:
    import multiprocessing.queues
    import multiprocessing.synchronize

__all__ = [
    "DaemonThreadPool",
    "Guarded",
    "ProcessChannel",
    "Raised",
    "init_child",
    "read_queue",
    "terminate",
    "unwrap",
]


class Raised:
    """A task's exception, carried as a value so one failure stops no other."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Pickled:
    """A result pickled in the worker process, so a failure to pickle is caught."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def unwrap(value: Any) -> Any:
    """A value with the results pickled in a worker process loaded again."""
    if isinstance(value, _Pickled):
        import cloudpickle

        return cloudpickle.loads(value.data)
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def _first_raised(values: Any) -> Raised | None:
    for value in values:
        if isinstance(value, Raised):
            return value
        if isinstance(value, list):
            found = _first_raised(value)
            if found is not None:
                return found
    return None


class Guarded:
    """Call ``fn``; an exception becomes a value, as does a failure to pickle."""

    __slots__ = ("fn", "pickle")

    def __init__(self, fn: Callable[..., Any], pickle: bool) -> None:
        self.fn = fn
        self.pickle = pickle

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.pickle:
            args = tuple(unwrap(a) for a in args)
        raised = _first_raised(args)
        if raised is not None:
            return raised
        try:
            result = self.fn(*args, **kwargs)
        except Exception as exc:
            return Raised(exc)
        if not self.pickle:
            return result
        # pickle first: cloudpickle.dumps costs ~30 µs more per small result, and
        # is needed only for what pickle refuses (lambdas, classes made in tasks).
        with contextlib.suppress(Exception):
            return _Pickled(_pickle.dumps(result, protocol=5))
        import cloudpickle

        try:
            return _Pickled(cloudpickle.dumps(result))
        except Exception as exc:
            name = getattr(self.fn, "__name__", repr(self.fn))
            return Raised(
                TypeError(f"The result of {name} cannot be serialised: {exc}")
            )


class DaemonThreadPool:
    """The part of ``concurrent.futures.ThreadPoolExecutor`` dask's scheduler
    uses, on daemon threads: a task still running after a cancelled run (a
    thread cannot be stopped) must not hold up the interpreter's exit, and
    ``ThreadPoolExecutor`` joins its threads at exit.
    """

    def __init__(self, max_workers: int) -> None:
        import queue

        self._max_workers = max_workers
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"nbflow-dask-{i}", daemon=True)
            for i in range(max_workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        import concurrent.futures

        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the future
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once they are idle; wait for them if ``wait``."""
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


# -- the channel of a process pool: set in each worker by its initializer --------
_child_queue: multiprocessing.queues.Queue[Any] | None = None
_child_cancel: multiprocessing.synchronize.Event | None = None


_child_records: collections.deque[Any] = collections.deque()
_child_flushing = threading.Lock()
_FLUSH_EVERY = 0.02  # seconds; the event bus delivers every 0.05 s anyway


def init_child(queue: Any, cancel: Any) -> None:
    global _child_queue, _child_cancel
    _child_queue, _child_cancel = queue, cancel
    # A worker sends its records as one message per interval, not one per
    # record (two a task): per-record puts halved the pool's throughput with a
    # listener attached. What is left is sent as the worker exits.
    from multiprocessing.util import Finalize

    Finalize(None, _flush_child, exitpriority=20)  # before the queue's own (10)
    threading.Thread(target=_flush_loop, name="nbflow-report", daemon=True).start()


def _child_report(record: Any) -> None:
    _child_records.append(record)


def _flush_child() -> None:
    with _child_flushing:  # one flush at a time keeps the records in order
        batch = []
        while _child_records:
            batch.append(_child_records.popleft())
        if batch and _child_queue is not None:
            _child_queue.put(batch)


def _flush_loop() -> None:
    while True:
        time.sleep(_FLUSH_EVERY)
        _flush_child()


class ProcessChannel(TaskChannel):
    """Reports through the pool's queue; cancelled through its event."""

    __slots__ = ("report",)
    crosses_processes = True

    def __init__(self, listening: bool) -> None:
        self.report = _child_report if listening else None

    def is_cancelled(self) -> bool:
        """Whether the driver set the pool's cancel event."""
        return _child_cancel is not None and _child_cancel.is_set()

    def where(self) -> str:
        """The pool worker: its process id."""
        return f"pid {os.getpid()}"


def read_queue(queue: Any, deliver: Deliver) -> None:
    while True:
        batch = queue.get()
        if batch is None:
            return
        for record in batch:
            deliver(record)


def terminate(pool: Any) -> None:
    """Kill a process pool's workers now (Python 3.14 has terminate_workers)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    # Before 3.14 the processes are only reachable through this attribute.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
