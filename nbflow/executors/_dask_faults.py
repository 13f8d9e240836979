"""Results kept on a Dask cluster, and what ``DaskExecutor`` does when a
cluster misbehaves.

A task's value stays on the worker that computed it: the driver learns that
the task succeeded from the type the scheduler reports with its key (no
value travels), and holds a :class:`ClusterResult` that fetches the value
when it is read. Only what the run brings home (reference tasks,
``return_tasks``) and the small states of tasks that did not succeed are
gathered, as they finish (in batches: within about 50 ms, every 0.25 s while
they stream in), so a scheduler that dies later takes none of them: a
``distributed.Client`` cancels every future it holds, finished ones
included, the moment it loses its scheduler. Futures that did not finish are
explained in nbflow's words: a worker that died under a task (Dask's
``KilledWorker``, out of memory or not), a lost scheduler, an upstream task
that failed in one of those ways. ``distributed`` is imported by the caller only.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from typing import Any

from nbflow.engine.state import (
    Cached,
    DeferredResult,
    Mapped,
    Skipped,
    State,
    Success,
    TriggerFailed,
)
from nbflow.errors import ClusterConnectionError, ResultNotKeptError, WorkerDiedError

__all__ = [
    "ClusterResult",
    "Dropped",
    "Home",
    "ResultNotKeptError",
    "WorkerDiedError",
    "close_client",
    "explain",
    "gather_as_completed",
    "is_connected",
    "lost_connection",
    "one_line",
    "plain",
    "shells",
    "stays",
    "task_name",
]

#: Flush gathered results at least this often while tasks stream in (seconds).
_FLUSH_EVERY = 0.25
#: ... and as soon as nothing new finished for this long (seconds).
_IDLE = 0.05
#: How long to look for the nanny's "restarted for memory" event (seconds).
_MEMORY_EVENT_WAIT = 2.0
_KEY_SUFFIX = re.compile(r"-[0-9a-f]{32}(?:-\d+)?$")


def _qualified(kind: Any) -> Any:
    if kind is not None and not isinstance(kind, str):
        kind = f"{kind.__module__}.{kind.__qualname__}"
    return kind


#: What the scheduler reports as the type of a plainly successful task's value.
_SUCCESS = _qualified(Success)
#: ... and of every other successful kind whose value can stay where it is.
_SUCCESSES = frozenset(_qualified(k) for k in (Success, Cached, Skipped, Mapped))


def stays(future: Any) -> bool:
    """Whether ``future`` finished as a successful task (Success, Cached,
    Skipped: its value can stay where it is; the driver needs only to know it
    succeeded, and for the kinds other than Success their state without the
    value: :func:`shells`).
    """
    return _qualified(future.type) in _SUCCESSES


def plain(future: Any) -> bool:
    """Whether ``future`` finished as a plain ``Success`` (its type is all the
    driver needs to know).
    """
    return bool(_qualified(future.type) == _SUCCESS)


def _shell(state: State) -> State:
    """``state`` without its value (runs on a worker)."""
    out = copy.copy(state)
    out._result = None
    return out


def shells(client: Any, futures: list[Any]) -> dict[Any, State]:
    """The states of ``futures`` (successful kinds other than ``Success``)
    without their values, stripped on the cluster: one round trip for all.
    """
    if not futures:
        return {}
    stripped = client.map(_shell, futures, key=[f"nbflow-shell-{f.key}" for f in futures],
                          pure=False)
    try:
        return dict(zip((f.key for f in futures), client.gather(stripped)))
    finally:
        client.cancel(stripped)


class Home:
    """Where a run's kept results are: a client of their cluster.

    ``gone`` says why they cannot be read any more (a temporary cluster shut
    down). On an existing cluster the client outlives the run while results
    are kept (:meth:`keep`), and is closed when the last of them is gone.
    """

    __slots__ = ("client", "address", "gone", "made", "__weakref__")

    def __init__(self, client: Any, address: str) -> None:
        self.client = client
        self.address = address
        self.gone: str | None = None
        #: How many results were left on the cluster.
        self.made = 0

    def shut(self) -> None:
        """The temporary cluster shuts down: what it kept is gone."""
        self.gone = (
            "it stayed on the temporary Dask cluster, which shut down at the end "
            "of the run; name the task in flow.run(return_tasks=[...]) to bring "
            "its result home, or run on an existing cluster "
            "(DaskExecutor(address=...)) to read results after the run"
        )
        self.client = None

    def keep(self) -> None:
        """Keep the client open after the run, until no result needs it."""
        weakref.finalize(self, _close_in_thread, self.client)

    def why_not(self, future: Any) -> str | None:
        """Why ``future``'s value cannot be fetched, or None if it can."""
        if self.gone is not None:
            return self.gone
        if not is_connected(self.client) or future.cancelled():
            return (
                f"it was kept only on the cluster, and was lost with the Dask "
                f"scheduler at {self.address!r}; rerun the flow (name the task in "
                "flow.run(return_tasks=[...]) to bring its result home as soon "
                "as it finishes)"
            )
        return None


def _close_in_thread(client: Any) -> None:
    # Called by the garbage collector, maybe on the client's own event loop:
    # a blocking close() there would wait for itself.
    threading.Thread(target=close_client, args=(client,), name="nbflow-close",
                     daemon=True).start()


class ClusterResult(DeferredResult):
    """A successful task's value, kept on the worker that computed it."""

    __slots__ = ("future", "home")

    def __init__(self, future: Any, home: Home) -> None:
        self.future = future
        self.home = home
        home.made += 1

    def __repr__(self) -> str:
        return f"<result of {_label(self.future.key)} on the Dask cluster>"

    def is_kept(self) -> bool:
        """Whether the cluster still holds the value (its scheduler is reachable)."""
        return self.home.why_not(self.future) is None

    def portable(self) -> DeferredResult:
        """A reference a worker reads the value through (a Cached state that
        may stand in for a task in a later run), worker to worker.
        """
        return OnWorker(self.future.key)

    def fetch(self) -> Any:
        """Gather the value from the cluster."""
        ok, value = self.fetch_all([self])[0]
        if not ok:
            raise value
        return value

    @classmethod
    def fetch_all(cls, items: list[DeferredResult]) -> list[tuple[bool, Any]]:
        """Gather the values in one call per cluster."""
        out: dict[int, tuple[bool, Any]] = {}
        ready: list[tuple[int, ClusterResult]] = []
        for i, item in enumerate(items):
            assert isinstance(item, ClusterResult)
            why = item.home.why_not(item.future)
            if why is None:
                ready.append((i, item))
            else:
                out[i] = (False, _not_kept(item.future.key, why))
        by_home: dict[int, list[tuple[int, ClusterResult]]] = {}
        for i, item in ready:
            by_home.setdefault(id(item.home), []).append((i, item))
        for group in by_home.values():
            out.update(zip((i for i, _ in group), _gather_states(
                group[0][1].home, [item.future for _, item in group])))
        return [out[i] for i in range(len(items))]

    @classmethod
    def sizes(cls, items: list[DeferredResult]) -> list[int | None]:
        """The sizes the scheduler knows (``nbytes``), one call per cluster."""
        known: dict[Any, int] = {}
        homes = {id(i.home): i.home for i in items if isinstance(i, ClusterResult)}
        for home in homes.values():
            if home.gone is None and is_connected(home.client):
                keys = [i.future.key for i in items
                        if isinstance(i, ClusterResult) and i.home is home]
                with contextlib.suppress(Exception):
                    known.update(home.client.nbytes(keys=keys, summary=False))
        return [known.get(i.future.key) if isinstance(i, ClusterResult) else None
                for i in items]


class OnWorker(DeferredResult):
    """A :class:`ClusterResult` sent to a worker: the value is read from the
    cluster there, by its key (worker to worker), never through the driver.
    While the driver's :class:`ClusterResult` is held, the cluster keeps it.
    """

    __slots__ = ("key",)
    travels = True

    def __init__(self, key: Any) -> None:
        self.key = key

    def fetch(self) -> Any:
        """The value, from the worker that holds it (it is computed already)."""
        from distributed import Future, get_worker, worker_client

        data = get_worker().data
        if self.key in data:
            state = data[self.key]
        else:
            with worker_client() as client:  # leaves the task slot while waiting
                # In memory on the cluster: Dask gathers it from its worker.
                future: Any = Future(self.key, client, state="memory")  # type: ignore[arg-type]
                state = client.gather(future)
        return state.result if isinstance(state, State) else state


class Dropped(DeferredResult):
    """A successful task's value, released on the cluster once no task needed
    it (the run named what to keep, or its temporary cluster is gone).
    """

    __slots__ = ("key", "home")
    kept = False

    def __init__(self, key: object, home: Home) -> None:
        self.key = key
        self.home = home

    def __repr__(self) -> str:
        return f"<result of {_label(self.key)}, not kept>"

    def fetch(self) -> Any:
        """Raise: the value is gone."""
        raise _not_kept(self.key, self.home.gone or (
            "the run was given return_tasks without it, so its value was "
            "dropped once no task needed it; name the task in "
            "flow.run(return_tasks=[...]) to keep it"))


def _gather_states(home: Home, futures: list[Any]) -> list[tuple[bool, Any]]:
    """The values in the states of ``futures`` (a lost one is recomputed)."""
    try:
        states = home.client.gather(futures)
    except Exception:  # noqa: BLE001 - sorted out one future at a time below
        states = []
        for future in futures:
            try:
                states.append(home.client.gather(future))
            except Exception as exc:  # noqa: BLE001 - the reason, in a sentence
                why = home.why_not(future) or f"fetching it failed: {one_line(exc)}"
                states.append(_not_kept(future.key, why))
    out: list[tuple[bool, Any]] = []
    for future, state in zip(futures, states):
        if isinstance(state, Success):
            out.append((True, state.result))
        elif isinstance(state, Exception):
            out.append((False, state))
        else:
            out.append((False, _not_kept(future.key, (
                "its worker was lost and computing it again ended "
                f"{getattr(state, 'name', state)}: {getattr(state, 'message', '')}"
            ).rstrip(": "))))
    return out


def _label(key: object) -> str:
    """``'name'``, or ``'name[i]'`` for a child of a mapped task."""
    match = re.search(r"-[0-9a-f]{32}-(\d+)$", str(key))
    name = task_name(key)
    return repr(name if match is None else f"{name}[{match.group(1)}]")


def _not_kept(key: object, why: str) -> ResultNotKeptError:
    return ResultNotKeptError(f"The result of task {_label(key)} was not kept: {why}.")


def task_name(key: object) -> str:
    """The task name in a key made by ``DaskExecutor.submit`` (name-uuid) or
    ``submit_map`` (name-uuid-index).
    """
    return _KEY_SUFFIX.sub("", str(key))


def lost_connection(address: str) -> ClusterConnectionError:
    """The error of a task that did not finish because the scheduler was lost."""
    return ClusterConnectionError(
        f"the connection to the Dask scheduler at {address!r} was lost before it "
        "finished (the scheduler stopped, or the network failed); tasks that had "
        "finished keep their results; start the scheduler again and rerun the flow."
    )


def is_connected(client: Any) -> bool:
    """Whether ``client`` still talks to its scheduler."""
    return client.status in ("running", "newly-created")


def gather_as_completed(
    client: Any,
    pending: list[Any],
    results: dict[Any, Any],
    stay: Callable[[Any], bool] | None = None,
    kept: set[Any] | None = None,
) -> None:
    """Wait for ``pending`` futures; put the values of finished ones into
    ``results`` (key -> value) as they finish, but for those ``stay(future)``
    leaves on the cluster: their keys go into ``kept``. Stops early if the
    client loses its scheduler (its futures are cancelled then, which also
    ends the wait).
    """
    from distributed import as_completed

    if not pending:
        return
    done: Any = as_completed(pending, loop=client.loop)
    buffer: list[Any] = []
    last = time.monotonic()
    while True:
        for f in done.next_batch(block=False):
            if f.status != "finished":
                continue
            if stay is not None and kept is not None and stay(f):
                kept.add(f.key)
            else:
                buffer.append(f)
        if done.is_empty():
            _gather_into(client, buffer, results)
            return
        if buffer and time.monotonic() - last >= _FLUSH_EVERY:
            _gather_into(client, buffer, results)
            buffer, last = [], time.monotonic()
        # as_completed notifies thread_condition after queueing each future.
        with done.thread_condition:
            if not done.has_ready():
                done.thread_condition.wait(_IDLE if buffer else 0.5)
        if buffer and not done.has_ready():
            _gather_into(client, buffer, results)
            buffer, last = [], time.monotonic()
        if not is_connected(client):
            return


def _gather_into(client: Any, futures: list[Any], results: dict[Any, Any]) -> None:
    if not futures:
        return
    try:
        values = client.gather(futures)
    except Exception:  # noqa: BLE001 - sorted out one future at a time below
        if not is_connected(client):
            return
        for future in futures:
            try:
                results[future.key] = client.gather(future)
            except Exception as exc:  # noqa: BLE001 - the task's outcome
                if not is_connected(client):
                    return
                results[future.key] = exc
        return
    results.update(zip((f.key for f in futures), values))


def explain(client: Any, future: Any, address: str) -> BaseException | State:
    """What a future that gave no value stands for: an error, or a state."""
    if future.status == "error":
        exc: BaseException = future.exception()
        return _explain_error(client, future.key, exc)
    reason = getattr(getattr(future._state, "exception", None), "reason", None)
    if reason == "scheduler-connection-lost" or not is_connected(client):
        return lost_connection(address)
    return CancelledError(f"{future.key} was {future.status}")


def _explain_error(client: Any, key: Any, exc: BaseException) -> BaseException | State:
    from distributed.scheduler import KilledWorker

    if not isinstance(exc, KilledWorker):
        return exc
    if exc.task != key:
        # Dask fails the dependents of a task it gave up on with the same error.
        return TriggerFailed(
            f"Task {task_name(key)!r} did not run: upstream task "
            f"{task_name(exc.task)!r} is Failed (its worker died)."
        )
    worker = exc.last_worker
    times = exc.allowed_failures + 1
    died = f"its worker died {times} time{'s' * (times > 1)} while running it"
    limit = getattr(worker, "memory_limit", 0)
    if getattr(worker, "nanny", None) and limit and _restarted_for_memory(
        client, worker.address
    ):
        return WorkerDiedError(
            f"{died} (KilledWorker): it used more than the worker's memory limit "
            f"of {_megabytes(limit)}, so the nanny restarted {worker.address}; give "
            "the workers more memory (dask worker --memory-limit) or make the task "
            "use less."
        )
    return WorkerDiedError(
        f"{died} (KilledWorker; the last one was {worker.address}): the task "
        "crashed its process or a signal killed it; check the worker's log, and "
        "raise distributed.scheduler.allowed-failures to try more workers."
    )


#: (client id, worker address) -> whether the nanny restarted it for memory;
#: asked once per worker, however many of its tasks died with it.
_VERDICTS: dict[tuple[str, str], bool] = {}


def _restarted_for_memory(client: Any, worker: str) -> bool:
    """Whether a nanny reported restarting ``worker`` for using too much memory."""
    key = (str(client.id), worker)
    if key not in _VERDICTS:
        if len(_VERDICTS) > 1000:
            _VERDICTS.clear()
        _VERDICTS[key] = _look_for_memory_event(client, worker)
    return _VERDICTS[key]


def _look_for_memory_event(client: Any, worker: str) -> bool:
    """The nanny logs the event just before it terminates the worker, so it may
    reach the scheduler a moment after the worker's death does: look for 2 s.
    """
    deadline = time.monotonic() + _MEMORY_EVENT_WAIT
    while True:
        try:
            events: Iterable[Any] = client.get_events("worker-restart-memory")
        except Exception:  # noqa: BLE001 - no events: say nothing about memory
            return False
        if any(msg.get("worker") == worker for _, msg in events):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _megabytes(n: float) -> str:
    return f"{n / 1e6:.0f} MB"


def one_line(exc: BaseException) -> str:
    """``exc`` as one short line (distributed's messages span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def close_client(client: Any) -> None:
    """Close ``client``; once it lost its scheduler, without the traceback Dask
    logs when closing cancels its attempts to reconnect. A close that times
    out (a busy scheduler releasing 100,000 results) is logged, not raised: the
    run is over and its states are in.
    """
    if is_connected(client):
        try:
            client.close()
        except TimeoutError as exc:
            logging.getLogger(__name__).warning(
                "Closing the Dask client timed out (%s); the run is over.", exc
            )
        return
    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        client.close()
    finally:
        logger.setLevel(level)


