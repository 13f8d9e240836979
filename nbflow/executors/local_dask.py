"""``LocalDaskExecutor``: Dask's local schedulers (threads, processes, synchronous).

``submit`` adds a node to a dask graph; ``wait`` runs the part of the graph the
requested keys need with ``dask.threaded.get``, ``dask.multiprocessing.get`` or
``dask.local.get_sync``. Results of finished nodes are kept for the rest of the
run, so a later ``wait`` never computes a node twice, and an interrupted run
still knows what finished. Dask is imported only when the executor starts.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from nbflow.errors import (
    LocalDaskOptionsError,
    MainGuardError,
    ProcessLostError,
    RunCancelled,
    WholeNumberError,
)
from nbflow.executors._local_pools import (
    DaemonThreadPool,
    Guarded,
    ProcessChannel,
    Raised,
    init_child,
    read_queue,
    terminate,
    unwrap,
)
from nbflow.executors._schedulers import Scheduler, normalize_scheduler
from nbflow.executors.base import (
    Deliver,
    Executor,
    TaskChannel,
    map_nested,
    work_name,
)

__all__ = ["LocalDaskExecutor", "check_main_guard"]

_keys = itertools.count()


class _Future:
    """A node of the executor's dask graph."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"<LocalDaskExecutor future {self.key}>"


class LocalDaskExecutor(Executor):
    """Run tasks on one of Dask's local schedulers.

    Parameters
    ----------
    scheduler : {"threads", "processes", "synchronous"}
        Dask's local scheduler (its aliases, such as ``"multiprocessing"``, work).
    num_workers : int, optional
        Threads or processes; default the number of cores.
    **kwargs
        Passed to the scheduler's ``get``, as ``dask.compute`` would.

    Examples
    --------
    >>> LocalDaskExecutor(scheduler="processes", num_workers=8)
    LocalDaskExecutor(scheduler='processes', num_workers=8)

    """

    def __init__(
        self,
        scheduler: Scheduler | str = "threads",
        num_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.scheduler: Scheduler = normalize_scheduler(scheduler)
        if num_workers is not None:
            WholeNumberError.check(
                "num_workers", num_workers, minimum=1, default="one worker per core"
            )
        self.num_workers: int = num_workers or os.cpu_count() or 1
        unknown = sorted(set(kwargs) - _GET_KEYWORDS[self.scheduler])
        if unknown:
            raise LocalDaskOptionsError(
                f"Unknown LocalDaskExecutor options {unknown!r} for scheduler "
                f"{self.scheduler!r}; it takes scheduler, num_workers and some of "
                f"{sorted(_GET_KEYWORDS[self.scheduler])!r}."
            )
        self.kwargs = kwargs
        self._graph: dict[str, Any] = {}
        self._done: dict[str, Any] = {}
        self._pool: Any = None
        self._queue: Any = None
        self._cancel: Any = None
        self._reader: threading.Thread | None = None
        self._abandon = threading.Event()

    def __repr__(self) -> str:
        return (
            f"LocalDaskExecutor(scheduler={self.scheduler!r}, "
            f"num_workers={self.num_workers!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(_graph={}, _done={}, _pool=None, _queue=None, _cancel=None)
        state["_abandon"] = None
        state.pop("_wake", None)
        state.pop("_reader", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._abandon = threading.Event()

    @contextlib.contextmanager
    def start(self) -> Iterator[None]:
        """Start a thread or process pool; shut it down on every way out."""
        import concurrent.futures

        self._graph, self._done = {}, {}
        self._abandon = threading.Event()
        if self.scheduler == "threads":
            self._pool = DaemonThreadPool(self.num_workers)
        elif self.scheduler == "processes":
            from dask.multiprocessing import get_context

            check_main_guard(repr(self))
            ctx = get_context()
            self._queue, self._cancel = ctx.Queue(), ctx.Event()
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.num_workers, mp_context=ctx, initializer=init_child,
                initargs=(self._queue, self._cancel),
            )
        try:
            with super().start():
                yield
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            if self._abandon.is_set():
                terminate(pool)
            pool.shutdown(wait=not self._abandon.is_set(), cancel_futures=True)
        if self._queue is not None:
            self._queue.put(None)  # stops the reader thread
            thread = getattr(self, "_reader", None)
            if thread is not None:
                thread.join(timeout=5)
            self._queue.close()
            self._queue.join_thread()
        self._queue = self._cancel = None
        self._reader = None
        self._graph, self._done = {}, {}

    def open_channel(self, deliver: Deliver | None) -> TaskChannel:
        """Threads report in process; a process pool through a queue."""
        if self.scheduler != "processes":
            return super().open_channel(deliver)
        self._check_started()
        if deliver is not None:
            reader = threading.Thread(
                target=read_queue, args=(self._queue, deliver),
                name="nbflow-process-events", daemon=True,
            )
            reader.start()
            self._reader = reader
        return ProcessChannel(deliver is not None)

    def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        extra_context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> _Future:
        """Add ``fn(*args, **kwargs)`` to the graph; run it at the next ``wait``."""
        from dask._task_spec import Task

        if not self._started:
            self._check_started()
        key = f"{work_name(fn, extra_context)}-{next(_keys)}"
        guarded = Guarded(fn, self.scheduler == "processes")
        self._graph[key] = Task(key, guarded, *map(_node, args), **kwargs)
        return _Future(key)

    def wait(self, futures: Any, *, return_exceptions: bool = False) -> Any:
        """Compute what ``futures`` need; return their values."""
        self._check_started()
        keys: list[str] = []
        map_nested(lambda f: keys.append(f.key) if isinstance(f, _Future) else None,
                   futures)
        missing = [k for k in keys if k not in self._done]
        if missing:
            # The pool forgets its processes when it breaks: keep them to name.
            processes = getattr(self._pool, "_processes", None)
            try:
                self._compute(missing)
            except Exception as exc:
                from concurrent.futures.process import BrokenProcessPool

                if not return_exceptions or not isinstance(exc, BrokenProcessPool):
                    raise
                # What finished is kept; what did not gets the lost process.
                lost = Raised(ProcessLostError(_lost_processes(processes)))
                for key in missing:
                    self._done.setdefault(key, lost)

        def value(f: Any) -> Any:
            if not isinstance(f, _Future):
                return f
            result = unwrap(self._done[f.key])
            if isinstance(result, Raised):
                if return_exceptions:
                    return result.exc
                raise result.exc
            return result

        return map_nested(value, futures)

    def wait_outcomes(self, futures: Sequence[Any]) -> list[Any]:
        """Compute them all at once; a failure gives its exception."""
        return list(self.wait(list(futures), return_exceptions=True))

    @property
    def crosses_processes(self) -> bool:
        """True on the ``processes`` scheduler."""
        return self.scheduler == "processes"

    def _compute(self, keys: list[str]) -> None:
        """Run the graph ``keys`` need in a helper thread, so waiting stays
        interruptible (Ctrl-C, or ``cancel`` from another thread).
        """
        graph = self._subgraph(keys)
        errors: list[BaseException] = []
        finished = threading.Event()

        def compute() -> None:
            try:
                self._get(graph, keys)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors.append(exc)
            finally:
                finished.set()
                self._abandon_wake()

        self._wake = threading.Event()
        thread = threading.Thread(target=compute, name="nbflow-dask-get", daemon=True)
        thread.start()
        while not finished.is_set():
            self._wake.wait()
            if self._abandon.is_set():
                raise RunCancelled()
        if errors:
            raise errors[0]

    def _abandon_wake(self) -> None:
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()

    def _get(self, graph: dict[str, Any], keys: list[str]) -> None:
        done = self._done

        def posttask(key: str, result: Any, dsk: Any, state: Any, worker: Any) -> None:
            done[key] = result

        callbacks = [(None, None, None, posttask, None)]
        if self.scheduler == "threads":
            from dask.threaded import get as threaded_get

            threaded_get(graph, keys, pool=self._pool, callbacks=callbacks, **self.kwargs)
        elif self.scheduler == "processes":
            from dask.multiprocessing import get

            # chunksize=1: dask batches 6 ready tasks per process by default,
            # which runs them one after another; tasks here must run in parallel.
            kwargs = {"chunksize": 1, **self.kwargs}
            get(graph, keys, pool=self._pool, optimize_graph=False,
                callbacks=callbacks, **kwargs)
        else:
            from dask.local import get_sync

            get_sync(graph, keys, callbacks=callbacks, **self.kwargs)

    def _subgraph(self, keys: list[str]) -> dict[str, Any]:
        from dask._task_spec import DataNode

        graph: dict[str, Any] = {}
        stack = list(keys)
        while stack:
            key = stack.pop()
            if key in graph:
                continue
            if key in self._done:
                graph[key] = DataNode(key, self._done[key])
                continue
            node = self._graph[key]
            graph[key] = node
            stack.extend(node.dependencies)
        return graph

    def cancel(self, futures: Any) -> None:
        """Stop the run: queued tasks end Cancelled, waiting stops, and a
        process pool's workers are terminated.
        """
        super().cancel(futures)
        if self._cancel is not None:
            self._cancel.set()
        self._abandon.set()
        self._abandon_wake()
        if self.scheduler == "processes" and self._pool is not None:
            terminate(self._pool)

    def collect_finished(
        self, futures: list[Any], *, fetch: Collection[int] = ()
    ) -> list[Any]:
        """Values of the graph nodes that have finished, None for the others."""
        out = []
        for f in futures:
            if isinstance(f, _Future) and f.key in self._done:
                value = unwrap(self._done[f.key])
                out.append(value.exc if isinstance(value, Raised) else value)
            else:
                out.append(None if isinstance(f, _Future) else f)
        return out


#: The keywords each scheduler's ``get`` takes from a user (``dask.local.
#: get_async``'s, less those the ``get`` or nbflow sets); dask ignores others.
_GET_KEYWORDS: dict[str, frozenset[str]] = {
    "threads": frozenset({"cache", "rerun_exceptions_locally", "raise_exception",
                          "dumps", "loads", "chunksize"}),
    "processes": frozenset({"func_loads", "func_dumps", "initializer", "chunksize",
                            "cache", "rerun_exceptions_locally"}),
    "synchronous": frozenset({"cache", "get_id", "rerun_exceptions_locally",
                              "pack_exception", "raise_exception", "dumps", "loads",
                              "chunksize"}),
}


def check_main_guard(what: str) -> None:
    """Raise :class:`MainGuardError` if ``python script.py`` runs a flow that
    starts processes (``what``) from the script's module-level code outside
    ``if __name__ == "__main__":``: each new process imports the script again
    and would run the flow again (hundreds of lines of tracebacks otherwise).
    """
    import ast
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return  # a notebook, `python -c`, `nbflow run -p` (not run as __main__)
    if getattr(getattr(main, "__spec__", None), "name", "").endswith(".__main__"):
        return  # `python -m package`: new processes do not run it again
    # The script's module-level frame, however deep the call that got here
    # (`main()` at module level starts the processes just the same).
    frame: Any = sys._getframe(1)
    module = None
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            module = frame
        frame = frame.f_back
    if module is None:
        return  # not under the script's own code (a thread, a callback)
    frame = module
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return
    line = frame.f_lineno
    for node in tree.body:
        if node.lineno <= line <= (node.end_lineno or node.lineno):
            if isinstance(node, ast.If) and _is_main_test(node.test):
                return
            break
    else:
        return
    import os

    _show_briefly()
    raise MainGuardError(
        f"{what} starts worker processes, which import {os.path.basename(path)!r} "
        f"again, and its line {line} runs the flow at module level; put the code "
        'that runs the flow under `if __name__ == "__main__":`.'
    )


def _show_briefly() -> None:
    """Make an uncaught :class:`MainGuardError` print its one line only.

    It ends a script at the line that runs the flow, and the traceback through
    nbflow's runner (about 20 lines) would bury the fix under it. The error stays
    an ordinary exception (a script may catch it); only Python's report of it, if
    nothing does, is the message alone. Other exceptions go to the hook as before.
    """
    import sys

    hook = sys.excepthook
    if getattr(hook, "_nbflow_brief", False):
        return

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        if isinstance(exc, MainGuardError):
            print(f"{kind.__name__}: {exc}", file=sys.stderr)
        else:
            hook(kind, exc, tb)

    excepthook._nbflow_brief = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


def _is_main_test(test: Any) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (either way round)."""
    import ast

    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    texts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and texts == ["__main__"]


def _lost_processes(pool_processes: Any) -> str:
    """The pool's dead workers (its ``_processes``), as "process 123 (SIGKILL)"."""
    import signal
    import time
    from multiprocessing.connection import wait as ready

    processes = dict(pool_processes or {})
    deadline = time.monotonic() + 5.0  # the pool is reaping and stopping them
    for p in processes.values():
        p.join(max(0.0, deadline - time.monotonic()))
    # The pool's manager thread reaps them too: when its waitpid wins, ours
    # sees no child and an exit code shows only once that thread has set it.
    def unsettled() -> bool:  # ended (its sentinel is ready), no exit code yet
        return any(p.exitcode is None and ready([p.sentinel], 0)
                   for p in processes.values())

    while unsettled() and time.monotonic() < deadline:
        time.sleep(0.02)
    dead = {pid: p.exitcode for pid, p in processes.items()
            if p.exitcode not in (None, 0)}
    # The pool terminates the others itself (SIGTERM) once one is lost.
    lost = {pid: code for pid, code in dead.items() if code != -signal.SIGTERM} or dead
    if not lost:
        return "process"
    names = []
    for pid, code in sorted(lost.items()):
        why = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        names.append(f"{pid} ({why})")
    return ("process " if len(names) == 1 else "processes ") + ", ".join(names)


def _node(value: Any) -> Any:
    # Imports only on the branches that need them: most arguments are plain.
    if isinstance(value, _Future):
        from dask._task_spec import TaskRef

        return TaskRef(value.key)
    if isinstance(value, list) and any(isinstance(v, (_Future, list)) for v in value):
        from dask._task_spec import List

        return List(*map(_node, value))
    return value
