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
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

from nbflow.core.flow import Flow, iter_tasks
from nbflow.core.task import Parameter, Task, _VarArgs, _VarKwargs, unmapped
from nbflow.engine._tracebacks import restore_sources
from nbflow.engine.events import (
    EventBus,
    FlowFinished,
    FlowStarted,
    Listener,
    TaskMapped,
    global_listeners,
)
from nbflow.engine.state import (
    Cancelled,
    Failed,
    Mapped,
    State,
    Success,
    TriggerFailed,
)
from nbflow.engine.task_runner import (
    CHILDREN,
    NESTED,
    SINGLE,
    SLOT,
    TRIGGER,
    VALUE,
    TaskSpec,
    run_task,
)
from nbflow.errors import (
    ClusterConnectionError,
    FlowValidationError,
    NbflowError,
    RunCancelled,
)

if TYPE_CHECKING:
    from nbflow.executors.base import Executor, TaskChannel

__all__ = ["FlowRun", "RunStartedError", "run_flow"]

log = logging.getLogger(__name__)

_FUTURE, _CHILDREN, _FINAL = 0, 1, 2
#: What a cancelled future gives in place of a value (dask, concurrent.futures).
_CANCELLED = CancelledError


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
        self._slots: dict[Task, tuple[int, Any]] = {}
        #: What had finished when the run was cancelled.
        self._finished: dict[Task, State] = {}
        self._cancelled = threading.Event()
        self._bus: EventBus | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        # The thread inside _interruptible(), guarded so that cancel() never
        # raises in it once it left (see _interrupt).
        self._interrupt_lock = threading.Lock()
        self._interruptible_ident: int | None = None
        self._interrupt_sent = False

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
        self._interrupt()

    def _interrupt(self) -> None:
        """Raise KeyboardInterrupt in the run's thread, as Ctrl-C would in the
        main thread, so a task running in that thread (LocalExecutor) stops too.
        It lands at the task's next Python line (not inside a blocking C call).
        """
        with self._interrupt_lock:
            ident = self._interruptible_ident
            if ident is not None and ident != threading.get_ident():
                _async_raise(ident, _RunInterrupted)
                self._interrupt_sent = True

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        with self._interrupt_lock:
            self._interruptible_ident = threading.get_ident()
            self._interrupt_sent = False
        delivered = False
        try:
            yield
        except _RunInterrupted:
            delivered = True  # handled by _execute like Ctrl-C
            raise
        finally:
            with self._interrupt_lock:
                self._interruptible_ident = None
                pending = self._interrupt_sent and not delivered
            if pending:
                _absorb_interrupt()

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
        with executor.start():
            channel = executor.open_channel(bus.put if bus is not None else None)
            if bus is not None:
                link = getattr(executor, "dashboard_link", None)
                bus.put(FlowStarted(self.flow.name, tuple(self.order), time.time(), link))
            try:
                with self._interruptible():
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
                           state.message, state.traceback))

    # -- submitting ---------------------------------------------------------------------

    def _submit(self, task: Task, channel: TaskChannel) -> None:
        if isinstance(task, Parameter):
            state = Success(result=self.values[task.name])
            self._slots[task] = (_FINAL, state)
            self._emit(task, None, state)
            return
        binding = self.flow.binding(task)
        spec, inputs, mapped = self._compile(task)
        submit = self.executor.submit
        if not binding.mapped:
            future = submit(run_task, spec, channel, None, *inputs, dask_key_name=task.name)
            self._slots[task] = (_FUTURE, future)
            return
        size = self._map_size(task, mapped)
        if isinstance(size, State):
            self._slots[task] = (_FINAL, size)
            self._emit(task, None, size)
            return
        if self._bus is not None:
            self._bus.put(TaskMapped(task, size, time.time()))
        children = []
        for i in range(size):
            child_inputs = [
                mapped[position][i] if position in mapped else source
                for position, source in enumerate(inputs)
            ]
            children.append(submit(run_task, spec, channel, i, *child_inputs,
                                   dask_key_name=task.name))
        self._slots[task] = (_CHILDREN, children)

    def _compile(self, task: Task) -> tuple[TaskSpec, list[Any], dict[int, Any]]:
        """Turn a task's binding into a spec, its inputs, and which are mapped
        (input position -> the sequence, or the upstream task, mapped over).
        """
        binding = self.flow.binding(task)
        constants: dict[str, Any] = {}
        plan: list[tuple[str | None, int, Any]] = []
        inputs: list[Any] = []
        mapped: dict[int, Any] = {}
        varargs = varkw = None
        for key, value in binding.arguments.items():
            if isinstance(value, _VarArgs):
                varargs = key
            elif isinstance(value, _VarKwargs):
                varkw = key
            is_unmapped = isinstance(value, unmapped)
            raw = value.value if is_unmapped else value
            if isinstance(raw, Task):
                kind, source = self._slots[raw]
                if binding.mapped and not is_unmapped:
                    # A mapped upstream: child i feeds child i. Any other: its
                    # result is split when the task is (see _map_size).
                    if kind == _CHILDREN:
                        mapped[len(inputs)] = _ChildFutures(raw.name, source)
                        plan.append((key, SINGLE, raw.name))
                    else:
                        mapped[len(inputs)] = raw
                        plan.append((key, VALUE, raw.name))
                else:
                    plan.append((key, CHILDREN, raw.name))
                inputs.append(source)
            elif any(True for _ in iter_tasks(raw)):
                found = [t for t, _ in iter_tasks(raw)]
                template = _template(raw)
                plan.append((key, NESTED, (template, [t.name for t in found])))
                inputs.append([self._slots[t][1] for t in found])
            elif binding.mapped and not is_unmapped:
                mapped[len(inputs)] = raw
                plan.append((key, VALUE, None))
                inputs.append(raw)
            else:
                constants[key] = raw
        if binding.upstream:
            plan.append((None, TRIGGER, tuple(t.name for t in binding.upstream)))
            inputs.append([self._slots[t][1] for t in binding.upstream])
        fn = task.fn if task.fn is not None else task.run
        spec = TaskSpec(
            fn, task.name, self.index[task], max_retries=task.max_retries,
            retry_delay=task.retry_delay, timeout=task.timeout, constants=constants,
            inputs=tuple(plan), positional=binding.positional, varargs=varargs,
            varkw=varkw,
        )
        return spec, inputs, mapped

    def _map_size(self, task: Task, mapped: dict[int, Any]) -> int | State:
        """How many children ``task`` has; wait for unmapped upstream results
        it maps over. Returns a final State when it cannot be mapped.
        """
        sizes: dict[str, int] = {}
        for position, source in list(mapped.items()):
            if isinstance(source, Task):
                name = repr(source.name)
                kind, future = self._slots[source]
                state = future if kind == _FINAL else self._wait_one(future)
                if not isinstance(state, Success):
                    if isinstance(state, Cancelled):
                        return Cancelled(f"Upstream task {name} was cancelled.")
                    return TriggerFailed(
                        f"Task {task.name!r} did not run: upstream task {name} is "
                        f"{_kind(state)}."
                    )
                source = state.result
            elif isinstance(source, _ChildFutures):
                sizes[repr(source.name)] = len(source)
                continue
            else:
                name = _short(source)
            try:
                sizes[name] = len(source)
                mapped[position] = source = list(source)
            except TypeError:
                return Failed(
                    f"Task {task.name!r} cannot map over {name} "
                    f"(= {_short(source)}): it is not a sequence; map over a list, or "
                    "wrap the argument in unmapped()."
                )
        if len(set(sizes.values())) > 1:
            detail = ", ".join(f"{k} has {v}" for k, v in sizes.items())
            return Failed(
                f"Task {task.name!r} maps over sequences of different lengths "
                f"({detail}); make them equal or wrap one in unmapped()."
            )
        return next(iter(sizes.values()), 0)

    def _wait_one(self, future: Any) -> Any:
        value = self.executor.wait([future], return_exceptions=True)[0]
        return value

    # -- collecting ---------------------------------------------------------------------

    def _all_futures(self) -> list[Any]:
        flat: list[Any] = []
        for kind, value in list(self._slots.values()):
            if kind == _FUTURE:
                flat.append(value)
            elif kind == _CHILDREN:
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
            if kind == _FINAL:
                states[task] = value
            elif kind == _FUTURE:
                states[task] = self._as_state(task, next(it))
            else:
                children = [self._as_state(task, next(it), i) for i in range(len(value))]
                states[task] = _parent_state(task, children)
        return states

    def _as_state(self, task: Task, value: Any, map_index: int | None = None) -> State:
        if isinstance(value, State):
            if value.traceback is not None and task.fn is not None:
                value.traceback = restore_sources(value.traceback, task.fn)
            return value
        if value is None or (self._cancelled.is_set() and isinstance(value, _CANCELLED)):
            return Cancelled("The run was cancelled before this task finished.")
        if isinstance(value, BaseException):
            where = "" if map_index is None else f"[{map_index}]"
            # nbflow's own errors (a dead worker, a lost scheduler) are sentences.
            cause = (str(value) if isinstance(value, NbflowError)
                     else f"{type(value).__name__}: {value}")
            return Failed(f"Task {task.name + where!r} failed: {cause}", value)
        return Failed(f"Task {task.name!r} returned no state: {value!r}.")

    def _finish(self, states: dict[Task, State]) -> State:
        for task in self.order:
            if task not in states:
                states[task] = Cancelled("The run was cancelled before this task started.")
        self._reconcile(states)
        reference = {t: states[t] for t in self.flow.reference_tasks()}
        if self._cancelled.is_set():
            done = sum(s.is_successful() for s in states.values())
            state: State = Cancelled(
                f"Flow run was cancelled; {done} of {len(states)} tasks had succeeded.",
                states,
            )
        elif all(s.is_successful() for s in reference.values()):
            state = Success("All reference tasks succeeded.", states)
        else:
            failed = [t.name for t, s in states.items() if s.is_failed()
                      and not isinstance(s, TriggerFailed)]
            names = ", ".join(map(repr, failed[:5])) or "upstream"
            lost = next((s.result for s in states.values() if s.is_failed()
                         and isinstance(s.result, ClusterConnectionError)), None)
            why = "." if lost is None else f": {lost}"
            state = Failed(f"Some reference tasks failed (failed: {names}){why}", states)
        handler = self.flow.terminal_state_handler
        if handler is not None:
            try:
                new = handler(self.flow, state, reference)
            except Exception as exc:
                log.exception("terminal_state_handler of flow %r raised", self.flow.name)
                return Failed(f"terminal_state_handler raised {type(exc).__name__}: {exc}",
                              states)
            if new is not None:
                state = new
        return state

    def _reconcile(self, states: dict[Task, State]) -> None:
        """Emit the final states the listeners have not seen (decided here, or
        whose report was lost with a worker).
        """
        bus = self._bus
        if bus is None:
            return
        for task, state in states.items():
            i = self.index[task]
            if state.map_states is not None:
                for m, child in enumerate(state.map_states):
                    last = bus.last_state(i, m)
                    if last is None or last.name != child.name:
                        self._emit(task, m, child)
            self._emit(task, None, state)


def _shielded(fn: Any, *args: Any) -> Any:
    """Call ``fn`` to the end even if Ctrl-C is pressed again meanwhile (users
    do press it twice); ``fn`` must be safe to call again."""
    while True:
        try:
            return fn(*args)
        except KeyboardInterrupt:
            continue


class _ChildFutures(list):  # type: ignore[type-arg]
    """The child futures of the mapped upstream task ``name``."""

    __slots__ = ("name",)

    def __init__(self, name: str, futures: list[Any]) -> None:
        super().__init__(futures)
        self.name = name


def _parent_state(task: Task, children: list[State]) -> State:
    n = len(children)
    bad = [c for c in children if not c.is_successful()]
    if not bad:
        return Mapped(f"Mapped {n} children.", [c.result for c in children],
                      map_states=children)
    if all(isinstance(c, Cancelled) for c in bad):
        cls: type[State] = Cancelled
    elif all(isinstance(c, (TriggerFailed, Cancelled)) for c in bad):
        cls = TriggerFailed
    else:
        cls = Failed
    first = next((c for c in bad if c.is_failed()), bad[0])
    return cls(
        f"{len(bad)} of {n} mapped children of {task.name!r} did not succeed; "
        f"first: {first.message}",
        [c.result for c in children], map_states=children,
    )


class RunStartedError(NbflowError, RuntimeError):
    """A FlowRun was started twice."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"This run of flow {name!r} was already started; make a new "
            "FlowRun for another run."
        )


class _RunInterrupted(KeyboardInterrupt):
    """The KeyboardInterrupt :meth:`FlowRun.cancel` raises in the run's thread."""


def _async_raise(ident: int, exc: type[BaseException]) -> None:
    """Raise ``exc`` in thread ``ident`` at its next Python line."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))


def _absorb_interrupt() -> None:
    """Let an interrupt sent to this thread but not raised yet land here.

    Never clear it with ``PyThreadState_SetAsyncExc(ident, NULL)``: on CPython
    3.11 that leaves the eval loop's "pending async exception" flag set for
    good, and every later line of the process runs through the slow path (and
    profilers hang).
    """
    try:
        for _ in range(10_000):
            pass
    except _RunInterrupted:
        pass


def _template(value: Any) -> Any:
    if isinstance(value, Task):
        return SLOT
    if isinstance(value, unmapped):
        return _template(value.value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_template(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _template(v)) for k, v in value.items())
    return value


def _kind(state: Any) -> str:
    return state.name if isinstance(state, State) else type(state).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

