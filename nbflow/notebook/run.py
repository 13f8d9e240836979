"""Running the notebook flow: the run handle, :class:`NotebookRun`.

Notebook layer: no IPython. A :class:`NotebookRun` is the handle of one run:
made, it checks the flow (every name a cell reads exists, mapped names are
sequences, and on processes or a cluster every value can be serialised) and
builds the run's own copy of it; run or started, it runs that copy on its
executor and writes each provided name back
(:mod:`nbflow.notebook.write_back`); it can be cancelled and joined.
:func:`run_notebook_flow` runs one to its end. :func:`cell_output` and
:func:`failure` turn a final state into what the notebook shows.
"""

from __future__ import annotations

import collections.abc
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from nbflow.core.flow import Flow
from nbflow.core.task import Task
from nbflow.engine.runner import FlowRun
from nbflow.engine.state import State, TriggerFailed
from nbflow.errors import (
    CellFailed,
    MapValueError,
    RunStartedError,
    UndefinedNameError,
    UnserialisableValueError,
)
from nbflow.executors.base import report_code, resolve_executor
from nbflow.notebook import runtime
from nbflow.notebook.flow import (
    CellTask,
    PickTask,
    cell_inputs,
    check_providers,
    current_flow,
    rebind,
)
from nbflow.notebook.runtime import CellResult, install_stdout, uninstall_stdout
from nbflow.notebook.write_back import (
    default_memory_budget,
    left_on_cluster,
    write_back,
)

if TYPE_CHECKING:
    from nbflow.engine.events import Listener
    from nbflow.executors.base import Executor
    from nbflow.notebook.cache import RunPlan

__all__ = [
    "CellFailed",
    "MapValueError",
    "NotebookRun",
    "UndefinedNameError",
    "UnserialisableValueError",
    "cell_output",
    "failure",
    "namespace_reads",
    "run_notebook_flow",
]

log = logging.getLogger(__name__)


def namespace_reads(
    flow: Flow, namespace: Mapping[str, Any]
) -> dict[CellTask, dict[str, Any]]:
    """The namespace values each cell reads (no task above it provides them).

    Raises
    ------
    UndefinedNameError
        A name is neither provided above the cell nor in ``namespace``.
    MapValueError
        A cell maps over a namespace value that is not a sequence.

    """
    values: dict[CellTask, dict[str, Any]] = {}
    inputs = cell_inputs(flow)
    providers = {n: t for t in inputs for n in t.provides}
    for task, from_tasks in inputs.items():
        taken = values[task] = {}
        for name in task.reads:
            if name in from_tasks:
                continue
            if name not in namespace:
                later = providers.get(name)
                hint = (f"; task {later.name!r} provides it but is registered after "
                        f"{task.name!r}, so register it above" if later else
                        "; define it in an ordinary cell or in a task above")
                raise UndefinedNameError(
                    f"Cell {task.name!r} reads {name!r}, which no task above it "
                    f"provides and the namespace does not define{hint}."
                )
            taken[name] = namespace[name]
        for name in task.analysis.fallbacks:
            # A builtin's name, or one the cell may bind itself: from the
            # namespace when it is there, as in Jupyter.
            if name not in from_tasks and name in namespace:
                taken[name] = namespace[name]
        if task.map_var in taken:
            _check_sequence(task, taken.pop(task.map_var))
    return values


def _check_sequence(task: CellTask, value: Any) -> None:
    if not isinstance(value, collections.abc.Iterable) or not hasattr(value, "__len__"):
        raise MapValueError(
            f"Cell {task.name!r} maps over {task.map_var!r}, a "
            f"{type(value).__name__} and not a sequence; make {task.map_var!r} a "
            "list, or drop --map."
        )


def check_serialisable(
    flow: Flow, values: Mapping[CellTask, Mapping[str, Any]], executor: Executor
) -> None:
    """Raise :class:`UnserialisableValueError` for the first value or task
    function that cloudpickle cannot serialise.
    """
    import cloudpickle

    checked: set[int] = set()
    where = type(executor).__name__
    for task in flow.ordered_tasks():
        for name, value in values.get(task, {}).items():  # type: ignore[call-overload]
            if id(value) in checked:
                continue
            try:
                cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - any pickling failure is reported
                raise UnserialisableValueError(
                    f"Cell {task.name!r} reads {name!r} ({type(value).__name__}) from "
                    f"the namespace, which cannot be serialised to run on {where} "
                    f"({type(exc).__name__}: {exc}); create it inside the cell, or run "
                    "on LocalExecutor or threads."
                ) from exc
            checked.add(id(value))
        fn = task.fn if task.fn is not None else task.run
        try:
            cloudpickle.dumps(fn)
        except Exception as exc:  # noqa: BLE001 - any pickling failure is reported
            raise UnserialisableValueError(
                f"The function of task {task.name!r} cannot be serialised to run on "
                f"{where} ({type(exc).__name__}: {exc}); use LocalExecutor or threads."
            ) from exc


def run_notebook_flow(
    namespace: MutableMapping[str, Any],
    *,
    listeners: Sequence[Listener] = (),
    flow: Flow | None = None,
    executor: Executor | None = None,
    fresh: bool | Iterable[str] = False,
    memory_budget: int | None = None,
) -> State:
    """Run the notebook flow and write every provided name back to ``namespace``.

    A :class:`NotebookRun` run here, to its end; see there for what is reused
    from the cache and what stays on a cluster. The names left on a cluster
    (over ``memory_budget``) are named in one printed line.

    Parameters
    ----------
    namespace : dict
        Where cells read the names no task provides (e.g. IPython's ``user_ns``)
        and where the results go; tasks that failed write nothing.
    listeners : sequence of callables
        Event listeners (progress, the live view).
    flow : Flow, optional
        Default :func:`current_flow`.
    executor : Executor, optional
        Default ``flow.executor``, else a ``LocalExecutor``.
    fresh : bool or iterable of str
        True: reuse no stored result. Task names: not those, nor their downstream.
    memory_budget : int, optional
        Bytes of values to bring home from a cluster at most; default
        :func:`default_memory_budget` (a quarter of the available memory).

    Returns
    -------
    State
        The flow's final state; ``state.result`` maps each task to its state.

    Raises
    ------
    UndefinedNameError, MapValueError, UnserialisableValueError, FlowValidationError
        Before any task runs.
    DuplicateProviderError
        Two cells provide one name (neither reads it from the other); before
        any task runs.

    Examples
    --------
    >>> state = run_notebook_flow(globals())             # doctest: +SKIP

    """
    run = NotebookRun(namespace, flow=flow, executor=executor, listeners=listeners,
                      fresh=fresh, memory_budget=memory_budget)
    state = run.run()
    if run.cluster_note:
        print(run.cluster_note)
    return state


def cells_source(flow: Flow) -> str:
    """The flow's ``%%flowtask`` cells as they were written, in run order."""
    return "\n\n".join(
        f"%%flowtask {t.name}\n{t.source.rstrip()}"
        for t in flow.ordered_tasks() if isinstance(t, CellTask)
    )


class NotebookRun:
    """One run of the notebook flow (or of any flow), as a handle to it.

    In the spirit of ipyparallel's ``AsyncResult``: :meth:`start` it in the
    background (or :meth:`run` it here), :meth:`cancel` it from any thread,
    :meth:`join` it; then read its :attr:`state`, the :attr:`outputs` written
    back, what the cells printed (:attr:`stdout`) and the :attr:`failure`.
    ``%flow run`` makes one (``run = %flow run --background`` returns it), and
    so does :func:`nbflow.widgets.run_with_view` for a flow built in Python.

    Everything is checked when the handle is made, once: every name a cell
    reads exists (the values are read from ``namespace`` then), mapped names
    are sequences, the flow is valid, and on processes or a cluster every value
    and cell can be serialised. The run is of a flow of its own,
    :attr:`flow`, whose cell tasks are copies of the registered ones: they get
    this run's namespace values and cache storing, and the registered flow is
    never changed, during the run or after it.

    Cells whose code and inputs did not change since their result was stored
    do not run: they end ``Cached`` with the stored outputs (see
    :mod:`nbflow.notebook.cache`). On a cluster, the values the cells provide
    are brought home within ``memory_budget`` bytes; the largest beyond it
    stay there, written back as :class:`ClusterValue` handles.

    Parameters
    ----------
    namespace : dict, optional
        Where cells read the names no task provides (e.g. IPython's
        ``user_ns``) and where their outputs are written. None: ``flow`` is a
        flow built in Python, run as it is, with nothing read or written back.
    flow : Flow, optional
        Default :func:`current_flow` (which needs a ``namespace``).
    executor : Executor, optional
        Default ``flow.executor``, else a ``LocalExecutor``.
    listeners : sequence of callables
        Event listeners (progress, the live view); see also :meth:`add_listener`.
    parameters : dict, optional
        Values of the flow's parameters.
    fresh : bool or iterable of str
        True: reuse no stored result. Task names: not those, nor their downstream.
    memory_budget : int, optional
        Bytes of values to bring home from a cluster at most; default
        :func:`default_memory_budget` (a quarter of the available memory).

    Attributes
    ----------
    flow : Flow
        The flow that runs (listeners see its tasks); for the notebook flow, a
        copy whose cell tasks are this run's own.
    executor : Executor
        Where it runs.
    state : State or None
        The flow's final state once the run ended; ``state.result`` maps each
        registered task to its state.
    outputs : dict
        The names written back to ``namespace`` and their values.
    stdout : str
        What the cells printed, each line marked ``[task]``.
    failure : CellFailed or None
        The tasks that failed on their own, with their tracebacks, to raise.
    error : BaseException or None
        What the run raised instead of ending (e.g. a cluster that did not
        start); :meth:`join` and :meth:`run` raise it.
    cluster_note : str
        One line naming the values left on a cluster, or "".
    plan : RunPlan or None
        What the cache reused and why the other cells ran.
    view : object or None
        The live view watching it, if any (kept for the user).

    Raises
    ------
    UndefinedNameError, MapValueError, UnserialisableValueError, FlowValidationError
        A check failed; nothing runs.
    DuplicateProviderError
        Two cells provide one name (neither reads it from the other).
    TypeError
        Neither a namespace nor a flow was given.

    Examples
    --------
    >>> run = NotebookRun(globals()).start()              # doctest: +SKIP
    >>> run.cancel()                                      # doctest: +SKIP
    >>> run.join(60)                                      # doctest: +SKIP
    <Cancelled: 'Flow run was cancelled; 1 of 2 tasks had succeeded.'>

    """

    def __init__(
        self,
        namespace: MutableMapping[str, Any] | None = None,
        *,
        flow: Flow | None = None,
        executor: Executor | None = None,
        listeners: Sequence[Listener] = (),
        parameters: dict[str, Any] | None = None,
        fresh: bool | Iterable[str] = False,
        memory_budget: int | None = None,
    ) -> None:
        if namespace is None and flow is None:
            raise TypeError(
                "NotebookRun needs a namespace to run the notebook flow, or a "
                "flow to run as it is; pass one of them."
            )
        registered = flow if flow is not None else current_flow()
        self.namespace = namespace
        self.executor = resolve_executor(executor, registered.executor)
        self.parameters = parameters
        self.fresh = fresh
        self.memory_budget = memory_budget
        self.listeners = list(listeners)
        self.state: State | None = None
        self.outputs: dict[str, Any] = {}
        self.stdout = ""
        self.failure: CellFailed | None = None
        self.error: BaseException | None = None
        self.cluster_note = ""
        self.plan: RunPlan | None = None
        self.view: Any = None
        #: Per-run cell task -> the registered one (empty for a plain flow).
        self._originals: dict[Task, Task] = {}
        self._values: dict[CellTask, dict[str, Any]] = {}
        if namespace is None:
            self.flow = registered
        else:
            self.flow = self._prepare(registered, namespace)
        self._lock = threading.Lock()
        self._cancelled = False
        self._flow_run: FlowRun | None = None
        self._begun = False
        self._thread: threading.Thread | None = None
        self._ended = threading.Event()
        self._callbacks: list[Callable[[NotebookRun], None]] = []

    def _prepare(self, registered: Flow, namespace: Mapping[str, Any]) -> Flow:
        """Check the notebook flow once; return this run's copy of it."""
        registered.validate()
        check_providers(registered)
        values = namespace_reads(registered, namespace)
        if self.executor.crosses_processes:
            check_serialisable(registered, values, self.executor)
        run, twins = _per_run_flow(registered)
        self._originals = {twin: task for task, twin in twins.items()}
        mapped = {t.map_var: namespace[t.map_var] for t in values
                  if t.map_var and t.map_var in namespace}
        portable = self.executor.crosses_processes
        for task, taken in values.items():
            twin = twins[task]
            assert isinstance(twin, CellTask)
            twin.fn = task.cell_function.with_namespace(taken, portable=portable)
            self._values[twin] = taken
        rebind(run, namespace=mapped)
        return run

    def __repr__(self) -> str:
        if self.state is not None:
            status = self.state.name
        elif self.error is not None:
            status = f"raised {type(self.error).__name__}"
        else:
            status = "running" if self._begun else "not started"
        return f"<NotebookRun of flow {self.flow.name!r}: {status}>"

    # -- control ------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Let ``listener`` see the run's events too (before it starts).

        Raises
        ------
        RunStartedError
            The run was already started.

        """
        if self._begun:
            raise RunStartedError(self.flow.name, "NotebookRun")
        self.listeners.append(listener)

    def add_done_callback(self, fn: Callable[[NotebookRun], None]) -> None:
        """Call ``fn(run)`` once the run ended (or raised), in the run's thread;
        at once if it already did. An error of ``fn`` is logged.
        """
        with self._lock:
            if not self._ended.is_set():
                self._callbacks.append(fn)
                return
        _call_back(fn, self)

    def start(self) -> NotebookRun:
        """Run in a background daemon thread and return at once; see :meth:`join`.

        Raises
        ------
        RunStartedError
            The run was already started.

        """
        self._begin()
        self._thread = threading.Thread(target=self._run_in_thread,
                                        name=f"nbflow-run-{self.flow.name}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> State:
        """Run to the end in this thread (Ctrl-C cancels it); return the state.

        Raises
        ------
        RunStartedError
            The run was already started.
        BaseException
            What the run raised instead of ending (see :attr:`error`).

        """
        self._begin()
        self._run_in_thread()
        if self.error is not None:
            raise self.error
        assert self.state is not None
        return self.state

    def cancel(self) -> None:
        """Stop the run as Ctrl-C would (unfinished tasks end Cancelled); safe
        from any thread, also before the run started (it then runs nothing).
        """
        with self._lock:
            self._cancelled = True
            flow_run = self._flow_run
        if flow_run is not None:
            flow_run.cancel()

    def join(self, timeout: float | None = None) -> State | None:
        """Wait for the run to end (its outputs written back); return its state.

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
            What the run raised instead of ending (see :attr:`error`).

        """
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        if self.error is not None:
            raise self.error
        return self.state

    @property
    def is_running(self) -> bool:
        """Whether the run started and has not ended yet."""
        return self._begun and not self._ended.is_set()

    @property
    def is_done(self) -> bool:
        """Whether the run ended (with a state, or raising)."""
        return self._ended.is_set()

    @property
    def is_cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def summary(self) -> str:
        """What the notebook shows under the ended run: the values left on a
        cluster, what the cells printed, what the cache reused, and a
        cancelled run's message ("" while it runs).
        """
        state = self.state
        if state is None:
            return ""
        plan = self.plan
        cache_line = (plan.summary() if plan is not None and (plan.enabled or plan.note)
                      else "")
        cancelled = state.message or "" if state.is_cancelled() else ""
        parts = [self.cluster_note, self.stdout, cache_line, cancelled]
        return "\n".join(p for p in parts if p)

    # -- the run ------------------------------------------------------------------

    def _begin(self) -> None:
        with self._lock:
            if self._begun:
                raise RunStartedError(self.flow.name, "NotebookRun")
            self._begun = True

    def _run_in_thread(self) -> None:
        try:
            self.state = self._run_flow()
        except BaseException as exc:  # noqa: BLE001 - kept; join() and run() raise it
            self.error = exc
        with self._lock:
            self._ended.set()
            callbacks, self._callbacks = self._callbacks, []
        if self.error is not None and not callbacks and self._thread is not None:
            # No one watches this background run: say it here, or no one will.
            log.error("The run of flow %r raised", self.flow.name, exc_info=self.error)
        for fn in callbacks:
            _call_back(fn, self)

    def _flow_run_of(self, **kwargs: Any) -> FlowRun:
        """The engine's run, cancelled at once if :meth:`cancel` came first."""
        flow_run = FlowRun(self.flow, parameters=self.parameters, executor=self.executor,
                           listeners=self.listeners, **kwargs)
        with self._lock:
            self._flow_run = flow_run
            cancelled = self._cancelled
        if cancelled:
            flow_run.cancel()
        return flow_run

    def _run_flow(self) -> State:
        namespace = self.namespace
        if namespace is None:
            return self._flow_run_of().run()
        from nbflow.executors.dask import DaskExecutor
        from nbflow.notebook import cache

        flow, values = self.flow, self._values
        on_dask = self.executor if isinstance(self.executor, DaskExecutor) else None
        plan = self.plan = cache.plan_run(
            flow, values, namespace, fresh=self.fresh, cluster=on_dask is not None,
            cluster_address=None if on_dask is None else on_dask.address,
            local_workers=on_dask is not None and on_dask.is_local_cluster)
        budget = (default_memory_budget() if self.memory_budget is None
                  else self.memory_budget)
        cells = [t for t in flow.ordered_tasks() if isinstance(t, CellTask)]
        for task in values:
            plan.wrap(task)  # this run's task: the registered one keeps its function
        stream = install_stdout()
        try:
            # A run's report (Dask's) shows the cells, not the line `%flow run`.
            with report_code(cells_source(flow)):
                state = self._flow_run_of(task_states=plan.task_states,
                                          return_tasks=cells, memory_budget=budget).run()
        finally:
            uninstall_stdout(stream)
        states: dict[Task, State] = state.result if isinstance(state.result, dict) else {}
        cache.remember(plan, states)
        written = write_back(state, namespace, flow)
        self.outputs = {n: namespace[n] for n in written}
        self.cluster_note = left_on_cluster(self.outputs, budget)
        self.stdout = cell_output(state, flow)
        self.failure = failure(state, flow)
        # The user knows the registered tasks: the state speaks of them.
        state.result = {self._originals.get(t, t): s for t, s in states.items()}
        return state


def _per_run_flow(flow: Flow) -> tuple[Flow, dict[Task, Task]]:
    """A copy of ``flow`` whose cell tasks (and the helpers that serve them) are
    copies too; return it and each registered task's copy.
    """
    twins: dict[Task, Task] = {}
    for task in flow.ordered_tasks():
        if isinstance(task, CellTask):
            twins[task] = task.copy()
    for task in flow.ordered_tasks():
        if isinstance(task, PickTask):
            source = twins[task.source_task]
            assert isinstance(source, CellTask)
            twins[task] = PickTask(source, task.picked)
    return flow.copy(replacing=twins), twins


def _call_back(fn: Callable[[NotebookRun], None], run: NotebookRun) -> None:
    try:
        fn(run)
    except Exception:  # a callback must not break the run's end
        log.exception("A done callback of the run of flow %r raised", run.flow.name)


def cell_output(state: State, flow: Flow | None = None) -> str:
    """What the cells printed, each line marked ``[task]`` (``[task[i]]`` if mapped)."""
    flow = flow if flow is not None else current_flow()
    states: dict[Task, State] = state.result if isinstance(state.result, dict) else {}
    lines: list[str] = []
    for task in flow.ordered_tasks():
        task_state = states.get(task)
        if not isinstance(task, CellTask) or task_state is None:
            continue
        if task_state.map_states is not None:
            for i, child in enumerate(task_state.map_states):
                _mark(lines, f"{task.name}[{i}]", child)
        else:
            _mark(lines, task.name, task_state)
    return "\n".join(lines)


def _mark(lines: list[str], label: str, state: State) -> None:
    if state.is_result_deferred():
        return  # its output stayed on the cluster with its values
    result = state.result
    text = (result.stdout if isinstance(result, CellResult)
            else getattr(result, "_nbflow_stdout", ""))
    for line in (text or "").splitlines():
        lines.append(f"[{label}] {line}")


def failure(state: State, flow: Flow | None = None) -> CellFailed | None:
    """A :class:`CellFailed` for the tasks that failed on their own, or None.

    It is chained from the first failure's exception and carries each failed
    run's traceback as formatted where it ran (with the cell's source lines).
    """
    flow = flow if flow is not None else current_flow()
    states: dict[Task, State] = state.result if isinstance(state.result, dict) else {}
    failed: list[tuple[str, State]] = []
    for task in flow.ordered_tasks():
        task_state = states.get(task)
        if task_state is None or not task_state.is_failed():
            continue
        if isinstance(task_state, TriggerFailed):
            continue
        children = task_state.map_states or []
        bad = [(f"{task.name}[{i}]", c) for i, c in enumerate(children)
               if c.is_failed() and not isinstance(c, TriggerFailed)]
        failed.extend(bad or [(task.name, task_state)])
    if not failed:
        return None
    done = sum(1 for t, s in states.items()
               if s.is_successful() and not s.is_skipped() and t.helper_of is None)
    first = failed[0][1]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    what = (first.message or f"Task {failed[0][0]!r} failed").rstrip(".")
    tasks = "task" if done == 1 else "tasks"
    message = f"{what}{more}; the outputs of the {done} {tasks} that succeeded were written back."
    tracebacks = [runtime.strip_runtime_frames(s.traceback or s.message or "") for _, s in failed]
    error = CellFailed(failed[0][0], message, tracebacks)
    if isinstance(first.result, BaseException):
        error.__cause__ = first.result
    return error
