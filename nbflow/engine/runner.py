"""Walking a flow on an executor: the one run loop of nbflow.

The runner submits every task as soon as the futures of its upstream tasks
exist, so tasks start when their inputs are ready (no level-by-level barrier).
It waits only where it must know a value to go on: to split a task that maps
over the result of an unmapped task. It knows executors only through
:class:`~nbflow.executors.base.Executor`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nbflow.core.flow import Flow
from nbflow.core.task import Parameter, Task
from nbflow.engine._interrupt import Interrupter
from nbflow.engine._outcome import flow_state, task_state
from nbflow.engine._plan import (
    CHILDREN_SLOT,
    FINAL,
    FUTURE,
    Slots,
    compile_task,
    map_size,
    parent_state,
)
from nbflow.engine.events import (
    EventBus,
    FlowFinished,
    FlowStarted,
    Listener,
    TaskMapped,
    global_listeners,
)
from nbflow.engine.state import Cancelled, State, Success
from nbflow.engine.task_runner import run_task
from nbflow.errors import (
    FlowValidationError,
    NbflowError,
    RunCancelled,
)

if TYPE_CHECKING:
    from nbflow.executors.base import Executor, TaskChannel

__all__ = ["ExecutorBusyError", "FlowRun", "RunStartedError", "run_flow"]

log = logging.getLogger(__name__)


def run_flow(
    flow: Flow,
    *,
    parameters: dict[str, Any] | None = None,
    executor: Executor | None = None,
    listeners: Sequence[Listener] = (),
) -> State:
    """Run ``flow`` to its end on ``executor`` and return the flow's state.

    See :meth:`nbflow.Flow.run`, which calls this.
    """
    return FlowRun(flow, parameters=parameters, executor=executor,
                   listeners=listeners).run()


def _parameter_values(flow: Flow, given: dict[str, Any]) -> dict[str, Any]:
    params = {p.name: p for p in flow.parameters()}
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise FlowValidationError(
            f"Unknown parameter {unknown[0]!r}; flow {flow.name!r} has parameters "
            f"{sorted(params)!r}."
        )
    values = {}
    for name, param in params.items():
        if name in given:
            values[name] = given[name]
        elif param.required:
            raise FlowValidationError(
                f"Parameter {name!r} is required; pass "
                f"flow.run(parameters={{{name!r}: ...}})."
            )
        else:
            values[name] = param.default
    return values


class FlowRun:
    """One run of a flow; :meth:`run` it, and :meth:`cancel` it from any thread.

    Parameters
    ----------
    flow : Flow
    parameters : dict, optional
    executor : Executor, optional
        Default ``flow.executor``, else a ``LocalExecutor``.
    listeners : sequence of callables
        Called with batches of events (and every :func:`~nbflow.engine.events.subscribe`
        listener too).

    """

    def __init__(
        self,
        flow: Flow,
        *,
        parameters: dict[str, Any] | None = None,
        executor: Executor | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        if executor is None:
            executor = flow.executor
        if executor is None:
            from nbflow.executors.local import LocalExecutor

            executor = LocalExecutor()
        self.flow = flow
        self.executor = executor
        self.order = flow.sorted_tasks()
        self.values = _parameter_values(flow, parameters or {})
        self.index = {t: i for i, t in enumerate(self.order)}
        self.listeners = [*listeners, *global_listeners()]
        self.state: State | None = None
        self._slots: Slots = {}
        #: What had finished when the run was cancelled.
        self._finished: dict[Task, State] = {}
        self._cancelled = threading.Event()
        self._bus: EventBus | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._interrupter = Interrupter()

    # -- control ------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the run as Ctrl-C would: nothing new starts, waiting stops,
        unfinished tasks end Cancelled. Safe from any thread; from another
        thread than the run's (a run begun with :meth:`start`), a
        KeyboardInterrupt is raised in the run's thread, which also stops a
        task that thread runs itself (LocalExecutor).
        """
        self._cancelled.set()
        with contextlib.suppress(Exception):
            self.executor.cancel(self._all_futures())
        self._interrupter.interrupt()

    def start(self) -> FlowRun:
        """Run in a background daemon thread and return at once; see :meth:`join`.

        Returns
        -------
        FlowRun
            This run, to :meth:`cancel` or :meth:`join`.

        Raises
        ------
        RunStartedError
            If the run was already started.

        """
        if self._thread is not None or self.state is not None:
            raise RunStartedError(self.flow.name)
        self._thread = threading.Thread(
            target=self._run_in_thread, name=f"nbflow-run-{self.flow.name}", daemon=True
        )
        self._thread.start()
        return self

    def _run_in_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            self._error = exc
            log.exception("Flow run %r raised", self.flow.name)

    def join(self, timeout: float | None = None) -> State | None:
        """Wait for a run begun with :meth:`start`; return its state.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most; None waits for the end.

        Returns
        -------
        State or None
            The flow's state, or None if the run is still going after ``timeout``.

        Raises
        ------
        BaseException
            What the run raised, if it raised (e.g. a cluster that did not start).

        """
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        if self._error is not None:
            raise self._error
        return self.state

    @property
    def is_running(self) -> bool:
        """Whether a run begun with :meth:`start` has not ended yet."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def is_cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    # -- the run --------------------------------------------------------------------

    def run(self) -> State:
        """Run the flow to its end; return (and keep in ``.state``) its state."""
        bus = self._bus = (
            EventBus(self.listeners, self.order) if self.listeners else None
        )
        if bus is not None:
            bus.start()
        states: dict[Task, State] = {}
        try:
            states = self._execute(bus)
        except KeyboardInterrupt:
            # A second Ctrl-C while the executor shuts down: keep what the first
            # one collected.
            self._cancelled.set()
            states = self._finished
        except BaseException:
            if bus is not None:
                bus.close()
            raise
        state = self._finish(states)
        if bus is not None:
            bus.put(FlowFinished(self.flow.name, state, time.time()))
            bus.close()
        self.state = state
        return state

    def _execute(self, bus: EventBus | None) -> dict[Task, State]:
        executor = self.executor
        with _exclusive(executor), executor.start():
            channel = executor.open_channel(bus.put if bus is not None else None)
            if bus is not None:
                link = getattr(executor, "dashboard_link", None)
                bus.put(FlowStarted(self.flow.name, tuple(self.order), time.time(), link))
            try:
                with self._interrupter.guard():
                    for task in self.order:
                        if self._cancelled.is_set():
                            raise RunCancelled()
                        self._submit(task, channel)
                    return self._collect()
            except BaseException as exc:
                # After cancel() from another thread, waiting may end in the
                # executor's own error (dask: FuturesCancelledError) first.
                if not isinstance(exc, (KeyboardInterrupt, RunCancelled)) and (
                    not self._cancelled.is_set() or not isinstance(exc, Exception)
                ):
                    raise
                self._cancelled.set()
                futures = self._all_futures()
                self._finished = _shielded(self._collect_finished, futures)
                _shielded(executor.cancel, futures)
                return self._finished

    def _emit(self, task: Task, map_index: int | None, state: State) -> None:
        if self._bus is not None:
            self._bus.put((self.index[task], map_index, state.name, time.time(),
                           state.message, state.traceback, None))

    # -- submitting ---------------------------------------------------------------------

    def _submit(self, task: Task, channel: TaskChannel) -> None:
        if isinstance(task, Parameter):
            state = Success(result=self.values[task.name])
            self._slots[task] = (FINAL, state)
            self._emit(task, None, state)
            return
        binding = self.flow.binding(task)
        spec, inputs, mapped = compile_task(self.flow, task, self._slots, self.index[task])
        submit = self.executor.submit
        if not binding.mapped:
            future = submit(run_task, spec, channel, None, *inputs, dask_key_name=task.name)
            self._slots[task] = (FUTURE, future)
            return
        size = map_size(task, mapped, self._slots, self._wait_one)
        if isinstance(size, State):
            self._slots[task] = (FINAL, size)
            self._emit(task, None, size)
            return
        if self._bus is not None:
            self._bus.put(TaskMapped(task, size, time.time()))
        calls = [
            (spec, channel, i, *[mapped[position][i] if position in mapped else source
                                 for position, source in enumerate(inputs)])
            for i in range(size)
        ]
        children = self.executor.submit_map(run_task, calls, dask_key_name=task.name)
        self._slots[task] = (CHILDREN_SLOT, children)

    def _wait_one(self, future: Any) -> Any:
        value = self.executor.wait([future], return_exceptions=True)[0]
        return value

    # -- collecting ---------------------------------------------------------------------

    def _all_futures(self) -> list[Any]:
        flat: list[Any] = []
        for kind, value in list(self._slots.values()):
            if kind == FUTURE:
                flat.append(value)
            elif kind == CHILDREN_SLOT:
                flat.extend(value)
        return flat

    def _collect(self) -> dict[Task, State]:
        futures = self._all_futures()
        values = self.executor.wait(futures, return_exceptions=True)
        return self._states(values)

    def _collect_finished(self, futures: list[Any]) -> dict[Task, State]:
        values = self.executor.collect_finished(futures)
        return self._states(values)

    def _states(self, values: list[Any]) -> dict[Task, State]:
        it = iter(values)
        states: dict[Task, State] = {}
        for task, (kind, value) in self._slots.items():
            if kind == FINAL:
                states[task] = value
            elif kind == FUTURE:
                states[task] = self._as_state(task, next(it))
            else:
                children = [self._as_state(task, next(it), i) for i in range(len(value))]
                states[task] = parent_state(task, children)
        return states

    def _as_state(self, task: Task, value: Any, map_index: int | None = None) -> State:
        return task_state(task, value, map_index, self._cancelled.is_set())

    def _finish(self, states: dict[Task, State]) -> State:
        for task in self.order:
            if task not in states:
                states[task] = Cancelled("The run was cancelled before this task started.")
        self._reconcile(states)
        return flow_state(self.flow, states, self._cancelled.is_set())

    def _reconcile(self, states: dict[Task, State]) -> None:
        """Emit the final states the listeners have not seen (decided here, or
        whose report was lost with a worker).
        """
        bus = self._bus
        if bus is None:
            return
        bus.settle()  # else a lagging bus makes every child look unreported
        for task, state in states.items():
            i = self.index[task]
            if state.map_states is not None:
                for m, child in enumerate(state.map_states):
                    last = bus.last_state(i, m)
                    if type(last) is not type(child):
                        self._emit(task, m, child)
            self._emit(task, None, state)


def _shielded(fn: Any, *args: Any) -> Any:
    """Call ``fn`` to the end even if Ctrl-C is pressed again meanwhile (users
    do press it twice); ``fn`` must be safe to call again.
    """
    while True:
        try:
            return fn(*args)
        except KeyboardInterrupt:
            continue


class RunStartedError(NbflowError, RuntimeError):
    """A FlowRun was started twice."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"This run of flow {name!r} was already started; make a new "
            "FlowRun for another run."
        )


class ExecutorBusyError(NbflowError, RuntimeError):
    """An executor asked to run a flow while it runs another (one at a time)."""


_busy: set[int] = set()
_busy_lock = threading.Lock()


@contextlib.contextmanager
def _exclusive(executor: Executor) -> Iterator[None]:
    """Hold ``executor`` for one run: a second run on it at once (the same flow
    run from two threads) would mix their work in its pool or client.
    """
    with _busy_lock:
        if id(executor) in _busy:
            raise ExecutorBusyError(
                f"{executor!r} is already running a flow (in another thread); "
                "wait for that run to end, or give this run its own executor: "
                "flow.run(executor=...)."
            )
        _busy.add(id(executor))
    try:
        yield
    finally:
        with _busy_lock:
            _busy.discard(id(executor))
