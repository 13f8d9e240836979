"""Walking a flow on an executor: the one run loop of nbflow.

The runner submits every task as soon as the futures of its upstream tasks
exist, so tasks start when their inputs are ready (no level-by-level barrier).
It waits only where it must know something to go on: how many children a
task has that maps over the result of an unmapped task (a length computed
where that result is). It knows executors only through
:class:`~nbflow.executors.base.Executor`.

What the driver holds: every task's final state; the results of the
reference tasks and of ``return_tasks`` (at most ``memory_budget`` bytes of
them); nothing else. On a cluster the other results stay where they were
computed and are fetched when ``state.result`` is first read (see
:class:`~nbflow.engine.state.DeferredResult`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nbflow.core.flow import Flow
from nbflow.core.task import Parameter, Task
from nbflow.engine._interrupt import Interrupter
from nbflow.engine._outcome import (
    flow_state,
    keep_state,
    next_round,
    start_state,
    task_state,
)
from nbflow.engine._plan import (
    CHILDREN_SLOT,
    FINAL,
    FUTURE,
    Slots,
    compile_task,
    decided,
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
from nbflow.engine.state import (
    Cached,
    Cancelled,
    Pending,
    Resume,
    Retrying,
    State,
    Success,
    portable,
)
from nbflow.engine.task_runner import map_length, run_task
from nbflow.errors import (
    ExecutorBusyError,
    FlowValidationError,
    RunCancelled,
    RunStartedError,
)
from nbflow.executors.base import resolve_executor
from nbflow.triggers import manual_only

if TYPE_CHECKING:
    from nbflow.executors.base import Executor, TaskChannel

__all__ = ["FlowRun", "RunStartedError", "run_flow"]

log = logging.getLogger(__name__)

def run_flow(
    flow: Flow,
    *,
    parameters: dict[str, Any] | None = None,
    executor: Executor | None = None,
    listeners: Sequence[Listener] = (),
    task_states: Mapping[Task, State] | None = None,
    return_tasks: Iterable[Task] | None = None,
    memory_budget: int | None = None,
) -> State:
    """Run ``flow`` to its end on ``executor`` and return the flow's state.

    See :meth:`nbflow.Flow.run`, which calls this.
    """
    return FlowRun(flow, parameters=parameters, executor=executor,
                   listeners=listeners, task_states=task_states,
                   return_tasks=return_tasks, memory_budget=memory_budget).run()


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
    task_states : dict, optional
        Task -> State to start from (Prefect 1's ``task_states``): a task given a
        finished state does not run and keeps it; a ``Cached`` one stands in
        for the run while the task's ``cache_validator`` says it is valid; a
        ``Pending`` one's message (why the task runs) is shown from the start.
    return_tasks : iterable of Task, optional
        Tasks whose results the driver brings home, besides the reference
        tasks'. On a cluster the others stay there until read; when this is
        given, they are dropped as soon as no task needs them.
    memory_budget : int, optional
        Bytes of those results to bring home at most; the largest stay on the
        cluster, read on first access.

    """

    def __init__(
        self,
        flow: Flow,
        *,
        parameters: dict[str, Any] | None = None,
        executor: Executor | None = None,
        listeners: Sequence[Listener] = (),
        task_states: Mapping[Task, State] | None = None,
        return_tasks: Iterable[Task] | None = None,
        memory_budget: int | None = None,
    ) -> None:
        self.flow = flow
        self.executor = resolve_executor(executor, flow.executor)
        self.order = flow.sorted_tasks()
        self.values = _parameter_values(flow, parameters or {})
        self.index = {t: i for i, t in enumerate(self.order)}
        self.listeners = [*listeners, *global_listeners()]
        #: Whether every result stays readable after the run (no return_tasks
        #: named what to keep).
        self.keep_others = return_tasks is None
        home: tuple[Task, ...] = () if return_tasks is None else tuple(return_tasks)
        unknown = [t for t in home if t not in self.index]
        if unknown:
            raise FlowValidationError(
                f"return_tasks names {unknown[0]!r}, which is not a task of flow "
                f"{flow.name!r}; name tasks of this flow."
            )
        #: Tasks whose results come home (reference tasks and return_tasks).
        self.home = {*flow.reference_tasks(), *home}
        self.memory_budget = memory_budget
        self.state: State | None = None
        #: States to start from (``flow.run(task_states=...)``): finished ones
        #: are kept, and the task is not run.
        self.task_states = dict(task_states or {})
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
        try:
            self.executor.cancel(self._all_futures())
        except Exception as exc:  # noqa: BLE001 - best effort; the interrupt follows
            log.debug("Cancelling the futures of %r failed: %r", self.flow.name, exc)
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
        self._running = start_state(self.flow)
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
            executor.prepare({t.name: getattr(t, "fn", None) or t.run
                              for t in self.order if not isinstance(t, Parameter)})
            channel = executor.open_channel(bus.put if bus is not None else None)
            if bus is not None:
                link = executor.dashboard_link
                bus.put(FlowStarted(self.flow.name, tuple(self.order), time.time(), link))
                for task, given in self.task_states.items():
                    # A Pending state given with a message (why the task runs)
                    # is shown from the start.
                    if type(given) is Pending and given.message and task in self.index:
                        self._emit(task, None, given)
            try:
                with self._interrupter.guard():
                    while True:
                        for task in self.order:
                            if self._cancelled.is_set():
                                raise RunCancelled()
                            self._submit(task, channel)
                        states = self._collect()
                        if not next_round(states, self._cancelled):
                            return states
                        # Retrying tasks start again (and what waits for
                        # them); finished ones keep their states.
                        self.task_states, self._slots = states, {}
            except BaseException as exc:
                # After cancel() from another thread, waiting may end in the
                # executor's own error (dask: FuturesCancelledError) first.
                if not isinstance(exc, (KeyboardInterrupt, RunCancelled)) and (
                    not self._cancelled.is_set() or not isinstance(exc, Exception)
                ):
                    raise
                self._cancelled.set()
                self._finished = _shielded(self._collect_finished)
                _shielded(executor.cancel, self._all_futures())
                return self._finished

    def _emit(self, task: Task, map_index: int | None, state: State) -> None:
        if self._bus is not None:
            self._bus.put((self.index[task], map_index, state.name, time.time(),
                           state.message, state.traceback, None))

    # -- submitting ---------------------------------------------------------------------

    def _submit(self, task: Task, channel: TaskChannel) -> None:
        given = self.task_states.get(task)
        if isinstance(task, Parameter) or (given is not None and keep_state(given)):
            state = given or Success(result=self.values[task.name])
            self._slots[task] = (FINAL, state)
            self._emit(task, None, state)
            return
        binding = self.flow.binding(task)
        spec, inputs, mapped = compile_task(
            self.flow, task, self._slots, self.index[task], self.values)
        if given is not None and given.map_states is not None:
            spec.resume = dict(enumerate(given.map_states))
        elif isinstance(given, Retrying):
            spec.resume = {None: given}
        if isinstance(given, Cached):
            spec.caches = [portable(given), *spec.caches]
            spec.cache_validator = task.cache_validator
        elif isinstance(given, Resume) and spec.trigger is manual_only:
            spec.trigger = None  # resumed by hand: Prefect's context "resume"
        submit = self.executor.submit
        context = {"task_name": task.name}
        if not binding.mapped:
            future = submit(run_task, spec, channel, None, *inputs, extra_context=context)
            self._slots[task] = (FUTURE, future)
            return
        size = map_size(task, mapped, self._slots,
                        lambda future, upstream: self._length(task, future, upstream),
                        self._wait_one)
        if isinstance(size, State):
            size = decided(task, size)
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
        children = self.executor.submit_map(run_task, calls, extra_context=context)
        self._slots[task] = (CHILDREN_SLOT, children)

    def _wait_one(self, future: Any) -> Any:
        """A future's outcome, here (for a flattened upstream)."""
        return self.executor.wait_outcomes([future])[0]

    def _length(self, task: Task, future: Any, upstream: str) -> Any:
        """The length of an upstream result, computed where it is."""
        length = self.executor.submit(
            map_length, future, task.name, upstream, task.skip_on_upstream_skip,
            extra_context={"task_name": f"{task.name}-len"})
        return self.executor.wait_outcomes([length])[0]

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
        futures, fetch = self._futures_and_fetch()
        values = self.executor.collect(futures, fetch=fetch, budget=self.memory_budget,
                                       keep_others=self.keep_others)
        return self._states(values)

    def _futures_and_fetch(self) -> tuple[list[Any], list[int]]:
        """Every future of the run, and the positions of those whose values
        come home.
        """
        futures: list[Any] = []
        fetch: list[int] = []
        home = self.home
        for task, (kind, value) in self._slots.items():
            if kind == FINAL:
                continue
            start = len(futures)
            if kind == FUTURE:
                futures.append(value)
            else:
                futures.extend(value)
            if task in home:
                fetch.extend(range(start, len(futures)))
        return futures, fetch

    def _collect_finished(self) -> dict[Task, State]:
        futures, fetch = self._futures_and_fetch()
        values = self.executor.collect_finished(futures, fetch=fetch)
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
        return flow_state(self.flow, states, self._cancelled.is_set(), self._running)

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
