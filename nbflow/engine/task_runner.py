"""Running one task (or one child of a mapped task), wherever it runs.

:func:`run_task` is what executors run: in the driver's thread, in a thread or
process pool, or on a Dask worker. It checks its upstream states (skips, then
the trigger), builds the arguments, looks in the cache, calls the function with
retries and loops, turns signals into states, calls the task's state handlers
on every change, reports state changes through the executor's channel, and
returns a :class:`State`. It never raises for a task's own error, so one failure
stops nothing else.

This path runs once per task: it copies no configuration and sets up no logging.
When every upstream task plainly succeeded and the task has the default trigger,
no upstream-state dict is built: the common case adds one thread-local tuple
(what :mod:`nbflow.context` reads) per call, about 0.3 µs.
"""

from __future__ import annotations

import collections
import datetime
import dis
import pickle
import threading
import time
import traceback as tb_module
from typing import TYPE_CHECKING, Any

from nbflow import context as _context
from nbflow.engine import signals
from nbflow.engine.state import (
    Cached,
    Cancelled,
    Failed,
    Looped,
    Mapped,
    Pending,
    Retrying,
    Running,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from nbflow.executors.base import TaskChannel

__all__ = [
    "CHILDREN",
    "ELEMENT",
    "FLAT_SLOT",
    "NESTED",
    "SINGLE",
    "SLOT",
    "TRIGGER",
    "VALUE",
    "Shape",
    "TaskExit",
    "TaskSpec",
    "map_length",
    "run_task",
]

#: How an input of :func:`run_task` becomes an argument.
SINGLE = 0  # an upstream State: its result
CHILDREN = 1  # a list of a mapped upstream's child States: their results
VALUE = 2  # a plain value (an element of a mapped literal or result)
NESTED = 3  # a list of upstream States to put into a container template
TRIGGER = 4  # upstream States that must succeed; no data
ELEMENT = 5  # an upstream State: element ``map_index`` of its result
# An input with key None passes no data (a mapped ``upstream_tasks`` entry).


class TaskSpec:
    """What a worker needs to run a task: small, shared by all its children."""

    __slots__ = (
        "fn", "name", "index", "max_retries", "retry_delay", "timeout",
        "constants", "inputs", "positional", "varargs", "varkw",
        "trigger", "skip_on_upstream_skip", "task", "handlers", "edges",
        "cache_for", "cache_validator", "caches", "parameters", "resume",
        "sendable", "unsendable",
    )
    #: What is pickled (``sendable``: the constants checked to pickle, once;
    #: ``unsendable``: on a worker, the first argument that did not).
    _STATE = __slots__[:-2]

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        index: int,
        *,
        max_retries: int = 0,
        retry_delay: float = 0.0,
        timeout: float | None = None,
        constants: dict[str, Any] | None = None,
        inputs: tuple[tuple[str | None, int, Any], ...] = (),
        positional: tuple[str, ...] = (),
        varargs: str | None = None,
        varkw: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.index = index
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.constants = constants or {}
        self.inputs = inputs
        self.positional = positional
        self.varargs = varargs
        self.varkw = varkw
        #: A custom trigger (None: all_successful, checked on the fast path).
        self.trigger: Callable[..., bool] | None = None
        self.skip_on_upstream_skip = True
        #: The task, for its state handlers (None when it has none).
        self.task: Any = None
        self.handlers: tuple[Callable[..., Any], ...] = ()
        #: One Edge per input (a tuple of them for NESTED/TRIGGER), for triggers.
        self.edges: tuple[Any, ...] | None = None
        self.cache_for: float | None = None
        self.cache_validator: Callable[..., bool] | None = None
        #: Cached states that may stand in for a run (see ``cache_for``).
        self.caches: list[Cached] = []
        self.parameters: dict[str, Any] | None = None
        #: States of an earlier round, by map index (None: not mapped).
        self.resume: dict[int | None, State] | None = None
        self.sendable: dict[str, Any] | None = None
        self.unsendable: _CannotSend | None = None

    def __getstate__(self) -> tuple[Any, ...]:
        values = [getattr(self, s) for s in TaskSpec._STATE]
        if self.constants:
            if self.sendable is None:  # once per spec, not once per child
                self.sendable = {
                    k: v if type(v) in _LEAVES or (bad := _unpicklable(v)) is None
                    else _CannotSend(k, bad) for k, v in self.constants.items()
                }
            values[TaskSpec._STATE.index("constants")] = self.sendable
        return tuple(values)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        for slot, value in zip(TaskSpec._STATE, values):
            setattr(self, slot, value)
        self.sendable = None
        self.unsendable = next(
            (v for v in self.constants.values() if type(v) is _CannotSend), None
        )

    def __repr__(self) -> str:
        return f"<TaskSpec {self.name!r} #{self.index}>"


#: Argument types that always pickle: not checked.
_LEAVES = frozenset({int, float, complex, str, bytes, bool, type(None)})


class _CannotSend:
    """Stands in for an argument that could not be pickled to reach a worker."""

    __slots__ = ("name", "error")

    def __init__(self, name: str, error: BaseException) -> None:
        self.name, self.error = name, _portable(error)

    def __reduce__(self) -> tuple[Any, ...]:
        return _CannotSend, (self.name, self.error)

    def failed(self, spec: TaskSpec) -> State:
        exc = self.error
        return Failed(
            f"Task {spec.name!r} failed: its argument {self.name!r} cannot be sent "
            f"to another process ({type(exc).__name__}: {exc}); create it inside "
            "the task, or run on threads (LocalDaskExecutor('threads')).", exc)


#: The Running state of a task with no state handlers (nobody keeps it).
_RUNNING = Running()


def run_task(
    spec: TaskSpec, channel: TaskChannel, map_index: int | None, *inputs: Any
) -> State:
    """Run a task once its upstream states are known; return its final state."""
    report = channel.report
    if channel.is_cancelled():
        return _end(report, spec, map_index, Cancelled("The run was cancelled."))
    if spec.unsendable is not None:
        return _end(report, spec, map_index, spec.unsendable.failed(spec))
    refused = channel.refusal(spec.name)
    if refused is not None:
        return _end(report, spec, map_index, Failed(refused))


    run_count = 1
    if spec.resume is not None:  # a later round of a run (see FlowRun): go on
        given = spec.resume.get(map_index)
        if given is not None and given.is_finished():
            return _end(report, spec, map_index, given, given)
        if isinstance(given, Retrying) and given.run_count:
            run_count = given.run_count + 1
    kwargs = dict(spec.constants) if spec.constants else {}
    problem = None if spec.trigger is not None else _bind_inputs(spec, inputs, kwargs, map_index)
    if problem is not None or spec.trigger is not None:
        # Not every upstream task plainly succeeded, or a custom trigger: the
        # slow path, in Prefect's order (skips, then the trigger).
        kwargs = dict(spec.constants) if spec.constants else {}
        problem = _check_upstream(spec, inputs)
        if problem is not None:
            return _end(report, spec, map_index, problem)
        problem = _bind_inputs(spec, inputs, kwargs, map_index, strict=False)
        if problem is not None:  # a container that cannot hold the results
            return _end(report, spec, map_index, problem)
    seen = dict(kwargs) if spec.cache_for is not None or spec.caches else None
    if seen is not None:
        cached = _from_cache(spec, seen)
        if cached is not None:
            return _end(report, spec, map_index, cached)
    old: State | None = Pending() if spec.handlers else None
    loop: tuple[int, Any] | None = None
    while True:
        if spec.handlers:
            running = _change(spec, old, Running())
            if not isinstance(running, Running):
                return _end(report, spec, map_index, running, running)
        else:
            running = _RUNNING
        if report is not None:
            report((spec.index, map_index, "Running", time.time(), None, None,
                    channel.where()))
        local = _context._local
        before = getattr(local, "run", None)
        local.run = (spec.name, map_index, run_count, loop)  # read by context.get
        try:
            result = _call(spec, dict(kwargs) if spec.positional or spec.varargs
                           or spec.varkw else kwargs)
        except signals.PrefectStateSignal as sig:
            state = sig.state
        except (Exception, SystemExit, KeyboardInterrupt) as raised:
            # A task's own sys.exit() or KeyboardInterrupt fails it; a real
            # Ctrl-C (or a cancel) is raised again by _contained.
            state = _failed(spec, _contained(raised), raised)
        else:
            if channel.crosses_processes:
                state = _success(spec, result)
            elif seen is None:
                return _end(report, spec, map_index, Success(result=result), running)
            else:
                state = Success(result=result)
        finally:
            local.run = before
        if isinstance(state, Looped):
            count = (loop[0] if loop else 0) + 1
            state.loop_count = count
            state.message = state.message or f"Task is looping ({count})"
            state = _change(spec, running, state)
            if isinstance(state, Looped):
                loop = (count, state.result)
                old = Pending(f"Looping task (on loop index {count})") if spec.handlers else None
                continue
        elif (isinstance(state, Success) and spec.cache_for is not None
              and seen is not None and not isinstance(state, Skipped)):
            state = _cache(spec, state, seen)
        retry = isinstance(state, Retrying) or (
            isinstance(state, Failed) and not isinstance(state, TriggerFailed)
            and run_count <= spec.max_retries
        )
        if not retry:
            return _end(report, spec, map_index, state, running)
        state = _change(spec, running, state)
        if not isinstance(state, (Retrying, Failed)):
            return _end(report, spec, map_index, state, state)
        if not isinstance(state, Retrying):
            note = f"{state.message} (retry {run_count} of {spec.max_retries})"
            retrying = Retrying(note, start_time=_after(spec.retry_delay),
                                run_count=run_count, traceback=state.traceback)
            state = _change(spec, state, retrying)
            if not isinstance(state, Retrying):
                return _end(report, spec, map_index, state)
        else:
            state.run_count = run_count
        start = state.start_time
        if start is not None and start > _after(0):
            # Wait in the driver, not here holding a worker: the run submits
            # the task again at ``start_time`` (FlowRun's next round).
            return _end(report, spec, map_index, state, state)
        if report is not None:
            report((spec.index, map_index, "Retrying", time.time(), state.message,
                    state.traceback, None))
        if channel.is_cancelled():
            return _end(report, spec, map_index, Cancelled("The run was cancelled."))
        run_count += 1
        old = state


def _failed(
    spec: TaskSpec, exc: Exception, raised: BaseException | None = None
) -> State:
    """The state of a task that raised ``exc`` (or its code ``raised``)."""
    text = _format(raised if raised is not None else exc)
    if isinstance(exc, _TimedOut):
        return TimedOut(str(exc), _portable(exc), traceback=text)
    return Failed(_failure(spec, exc), _portable(exc), traceback=text)


def _success(spec: TaskSpec, result: Any) -> State:
    """Success, unless ``result`` cannot leave the worker's process."""
    bad = _unpicklable(result)
    if bad is None:
        return Success(result=result)
    return Failed(
        f"Task {spec.name!r} failed: its result cannot be serialised to "
        f"leave the worker ({type(bad).__name__}: {bad}); return plain "
        "data, and keep objects such as locks, files and generators "
        "inside the task.",
        _portable(bad),
    )


def _change(spec: TaskSpec, old: State | None, new: State) -> State:
    """Pass a state change through the task's state handlers (Prefect's
    ``handler(task, old_state, new_state)``; a returned state replaces it).
    """
    if not spec.handlers:
        return new
    try:
        for handler in spec.handlers:
            new = handler(spec.task, old, new) or new
    except signals.PrefectStateSignal as sig:
        return sig.state
    except Exception as exc:
        return Failed(
            f"Task {spec.name!r}: a state handler raised {type(exc).__name__}: {exc}",
            _portable(exc), traceback=_format(exc),
        )
    return new


def _after(seconds: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=seconds)


def _from_cache(spec: TaskSpec, inputs: dict[str, Any]) -> State | None:
    """A Cached state that stands in for running, if one is still valid."""
    validator = spec.cache_validator
    for candidate in spec.caches:
        try:
            if validator is not None and validator(candidate, inputs, spec.parameters):
                candidate.result  # noqa: B018 - one kept on a cluster comes here
                return candidate
        except Exception:  # noqa: BLE001 - a validator that breaks: no cache  # nosec
            continue
    return None


def _cache(spec: TaskSpec, state: State, inputs: dict[str, Any]) -> State:
    """``state`` as Cached, valid for ``cache_for`` (Prefect's cache_result)."""
    assert spec.cache_for is not None
    return Cached(
        state.message, state.result, cached_inputs=inputs,
        cached_parameters=spec.parameters,
        cached_result_expiration=_after(spec.cache_for),
    )


class TaskExit(RuntimeError):
    """A task's ``sys.exit()``/``SystemExit``/``KeyboardInterrupt``: it ends
    that task, not the run or the process (the original is its ``__cause__``).
    """


_RAISE_OPS = frozenset({dis.opmap["RAISE_VARARGS"], dis.opmap["RERAISE"]})


def _contained(exc: BaseException) -> Exception:
    """``exc`` as a task failure; raise it again if it is a Ctrl-C or a cancel.

    A KeyboardInterrupt that the task's code raised itself (``raise
    KeyboardInterrupt``) stops at a ``raise`` instruction; one from SIGINT, or
    from :meth:`FlowRun.cancel`, arrives at any other instruction.
    """
    if isinstance(exc, Exception):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code.co_code if tb is not None else b""
        lasti = tb.tb_lasti if tb is not None else -1
        if not (0 <= lasti < len(code) and code[lasti] in _RAISE_OPS) or (
            type(exc).__name__ == "RunInterrupted"
        ):
            raise exc
        what = "raised KeyboardInterrupt"
    else:
        code_ = getattr(exc, "code", None)
        what = f"called sys.exit({'' if code_ is None else repr(code_)})"
    contained = TaskExit(f"it {what}, which ends this task, not the run")
    contained.__cause__ = exc
    contained.__traceback__ = exc.__traceback__
    return contained


def _failure(spec: TaskSpec, exc: Exception) -> str:
    """The message of a task that raised ``exc``."""
    if isinstance(exc, _TimedOut):
        return str(exc)
    if isinstance(exc, TaskExit):
        return f"Task {spec.name!r} failed: {exc}."
    return f"Task {spec.name!r} failed: {type(exc).__name__}: {exc}"


def _unpicklable(result: Any) -> Exception | None:
    """Why ``result`` cannot be pickled, or None if it can. Large buffers (numpy,
    bytearray) are passed out of band, so this costs no copy of them.
    """
    try:
        pickle.dumps(result, protocol=5, buffer_callback=_drop)
    except Exception:  # noqa: BLE001 - cloudpickle pickles more (lambdas, locals)
        import cloudpickle

        try:
            cloudpickle.dumps(result, protocol=5, buffer_callback=_drop)
        except Exception as exc:  # noqa: BLE001 - the answer
            return exc
    return None


def _drop(buffer: Any) -> None:
    """An out-of-band buffer: not copied, not kept."""


def _end(
    report: Any, spec: TaskSpec, map_index: int | None, state: State,
    old: State | None = None,
) -> State:
    if spec.handlers and old is not state:
        state = _change(spec, old if old is not None else Pending(), state)
    state.timestamp = time.time()
    if report is not None:
        report((spec.index, map_index, state.name, state.timestamp, state.message,
                state.traceback, None))
    return state


def _plain(value: Any) -> bool:
    """Whether an upstream state plainly succeeded (not skipped)."""
    return isinstance(value, Success) and not isinstance(value, Skipped)


def _bind_inputs(
    spec: TaskSpec, inputs: tuple[Any, ...], kwargs: dict[str, Any],
    map_index: int | None = None, strict: bool = True,
) -> State | None:
    """Put the inputs' values into ``kwargs``. ``strict``: return a state (to
    look closer) as soon as an upstream did not plainly succeed.
    """
    for (key, kind, extra), value in zip(spec.inputs, inputs):
        if kind == SINGLE:
            if strict and value.__class__ is not Success and not _plain(value):
                return _trigger_failed(spec, extra, value)
            if key is not None:
                kwargs[key] = value.result
        elif kind == ELEMENT:
            if strict and value.__class__ is not Success and not _plain(value):
                return _trigger_failed(spec, extra, value)
            if key is not None:
                kwargs[key] = _element(value.result, map_index)
        elif kind == VALUE:
            if key is not None:
                kwargs[key] = value
        elif kind == CHILDREN:
            results = _children(spec, extra, value, strict)
            if isinstance(results, State):
                return results
            kwargs[key] = results  # type: ignore[index]
        elif kind == NESTED:
            found = []
            for name, item in zip(extra[1], value):
                item_value = _children(spec, name, item, strict)
                if isinstance(item_value, State):
                    return item_value
                found.append(item_value)
            try:
                kwargs[key] = _fill(extra[0], iter(found))  # type: ignore[index]
            except Exception as exc:  # noqa: BLE001 - the task's failure
                shape = extra[0]
                return Failed(
                    f"Task {spec.name!r} failed: its argument {key!r}, a "
                    f"{type(shape).__name__ if not isinstance(shape, Shape) else shape.cls.__name__} "
                    "holding task results, cannot be rebuilt "
                    f"around them ({type(exc).__name__}: {exc}); pass a list, "
                    "tuple, dict or set.",
                    _portable(exc),
                )
        elif strict:  # TRIGGER
            for name, item in zip(extra, value):
                checked = _children(spec, name, item, strict)
                if isinstance(checked, State):
                    return checked
    return None


def map_length(
    state: Any, task: str, upstream: str, skip_on_upstream_skip: bool = True
) -> int | State:
    """How many children ``task`` has when it maps over the result of
    ``upstream`` (its ``state``), computed where that result is, so only a
    number travels; or the state of ``task`` if it cannot be mapped (yet).
    """
    if isinstance(state, State) and not state.is_finished():
        return Pending(f"Task {task!r} waits: upstream task {upstream!r} is not "
                       "finished.")
    if isinstance(state, Skipped) and skip_on_upstream_skip:
        return Skipped(
            f"Upstream task {upstream!r} was skipped; if this was not the intended "
            "behavior, consider changing `skip_on_upstream_skip=False` for this task."
        )
    if not isinstance(state, Success):
        spec = TaskSpec(map_length, task, -1)
        return _trigger_failed(spec, upstream, state)
    value = state.result
    try:
        return len(value)
    except TypeError:
        text = repr(value)
        text = text if len(text) <= 60 else text[:57] + "..."
        return Failed(
            f"Task {task!r} cannot map over {upstream!r} (= {text}): it is not a "
            "sequence; map over a list, or wrap the argument in unmapped()."
        )


def _element(value: Any, i: Any) -> Any:
    """Element ``i`` of a mapped-over result, as ``list(value)[i]`` gives it."""
    if type(value) in (list, tuple, range, str) or type(value).__name__ == "ndarray":
        return value[i]
    import itertools

    return next(itertools.islice(iter(value), i, None))


def _upstream_states(spec: TaskSpec, inputs: tuple[Any, ...]) -> dict[Any, State]:
    """Each upstream edge's state (Prefect's ``upstream_states``); a mapped
    upstream read whole is one Mapped state holding its children.
    """
    found: dict[Any, State] = {}
    edges = spec.edges
    for position, ((_, kind, extra), value) in enumerate(zip(spec.inputs, inputs)):
        if kind == VALUE and extra is None:
            continue  # a literal, not an upstream task
        many = kind in (NESTED, TRIGGER)
        items = value if many else [value]
        for j, item in enumerate(items):
            if edges is not None:
                key = edges[position][j] if many else edges[position]
            else:
                key = (position, j)
            if kind == VALUE:
                found[key] = Success(result=item)
            elif isinstance(item, State):
                found[key] = item
            else:
                found[key] = Mapped(result=[c.result for c in item], map_states=list(item))
    return found


def _first_failed(spec: TaskSpec, inputs: tuple[Any, ...]) -> State | None:
    """TriggerFailed naming the first upstream task that did not succeed."""
    for (_, kind, extra), value in zip(spec.inputs, inputs):
        if kind == VALUE:
            continue
        if kind == NESTED:
            pairs = list(zip(extra[1], value))
        elif kind == TRIGGER:
            pairs = list(zip(extra, value))
        else:
            pairs = [(extra, value)]
        for name, item in pairs:
            for state in [item] if isinstance(item, State) else item:
                if not state.is_successful():
                    return _trigger_failed(spec, name, state)
    return None


def _check_upstream(spec: TaskSpec, inputs: tuple[Any, ...]) -> State | None:
    """Cancelled, Skipped, or what the trigger decides; None: run the task."""
    upstream = _upstream_states(spec, inputs)
    flat: list[State] = []
    for state in upstream.values():
        if isinstance(state, Mapped) and state.map_states is not None:
            flat.extend(state.map_states)
        else:
            flat.append(state)
    if not all(s.is_finished() for s in flat):
        return Pending(
            f"Task {spec.name!r} waits: an upstream task is not finished."
        )
    for state in flat:
        if isinstance(state, Cancelled):
            return Cancelled(f"An upstream task of {spec.name!r} was cancelled.")
    if spec.skip_on_upstream_skip and any(isinstance(s, Skipped) for s in flat):
        return Skipped(
            "Upstream task was skipped; if this was not the intended behavior, "
            "consider changing `skip_on_upstream_skip=False` for this task."
        )
    if spec.trigger is None:
        return _first_failed(spec, inputs)
    try:
        if not spec.trigger(upstream):
            return TriggerFailed("Trigger failed")
    except signals.PrefectStateSignal as sig:
        return sig.state
    except Exception as exc:
        return TriggerFailed(
            f"Unexpected error while checking task trigger: {exc!r}", _portable(exc)
        )
    return None


def _children(spec: TaskSpec, upstream: str, value: Any, strict: bool = True) -> Any:
    """The result(s) of an upstream state or list of child states; ``strict``:
    a TriggerFailed state if one did not plainly succeed.
    """
    if isinstance(value, State):
        if not strict or _plain(value):
            return value.result
        return _trigger_failed(spec, upstream, value)
    results = []
    for child in value:
        if strict and not _plain(child):
            return _trigger_failed(spec, upstream, child)
        results.append(child.result)
    return results


def _trigger_failed(spec: TaskSpec, upstream: str, state: Any) -> State:
    kind = state.name if isinstance(state, State) else type(state).__name__
    if isinstance(state, Cancelled):
        return Cancelled(f"Upstream task {upstream!r} was cancelled.")
    return TriggerFailed(
        f"Task {spec.name!r} did not run: upstream task {upstream!r} is {kind}."
    )


class _Slot:
    """Marks where an upstream value goes in a container argument."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "SLOT"  # the one marker, also after crossing processes


SLOT = _Slot()


class Shape:
    """A container argument with tasks in it, to rebuild around their results:
    its type, its items (``(key, item)`` pairs for a dict) in iteration order,
    and a defaultdict's factory. A set of two tasks keeps two slots.
    """

    __slots__ = ("cls", "items", "factory")

    def __init__(self, cls: type, items: list[Any], factory: Any = None) -> None:
        self.cls, self.items, self.factory = cls, items, factory

    def __reduce__(self) -> tuple[Any, ...]:
        return Shape, (self.cls, self.items, self.factory)

    def fill(self, values: Any) -> Any:
        """The container, each slot replaced by the next of ``values``."""
        cls: Any = self.cls
        if issubclass(cls, dict):
            pairs = [(k, _fill(v, values)) for k, v in self.items]
            if issubclass(cls, collections.defaultdict):
                return cls(self.factory, pairs)
            return cls(pairs)
        items = [_fill(v, values) for v in self.items]
        if issubclass(cls, tuple) and hasattr(cls, "_make"):  # a namedtuple
            return cls._make(items)
        return cls(items)


class _FlatSlot:
    """Marks where a flattened upstream value (a list of lists) goes."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "FLAT_SLOT"


FLAT_SLOT = _FlatSlot()


def _fill(template: Any, values: Any) -> Any:
    if template is SLOT:
        return next(values)
    if template is FLAT_SLOT:
        return [
            x for item in next(values)
            for x in (item if isinstance(item, (list, tuple, set, frozenset, range))
                      else (item,))
        ]
    if type(template) is Shape:
        return template.fill(values)
    if isinstance(template, (list, tuple, set, frozenset)):
        return type(template)(_fill(t, values) for t in template)
    if isinstance(template, dict):
        return type(template)((k, _fill(v, values)) for k, v in template.items())
    return template


def _call(spec: TaskSpec, kwargs: dict[str, Any]) -> Any:
    """Call the function; it may pop ``kwargs`` (positional arguments)."""
    if spec.positional or spec.varargs or spec.varkw:
        args = [kwargs.pop(n) for n in spec.positional]
        if spec.varargs:
            args.extend(kwargs.pop(spec.varargs, ()))
        if spec.varkw:
            kwargs.update(kwargs.pop(spec.varkw, {}))
        call = lambda: spec.fn(*args, **kwargs)  # noqa: E731
    else:
        if spec.timeout is None:
            return spec.fn(**kwargs)
        call = lambda: spec.fn(**kwargs)  # noqa: E731
    if spec.timeout is None:
        return call()
    return _call_with_timeout(spec, call)


def _call_with_timeout(spec: TaskSpec, call: Callable[[], Any]) -> Any:
    """Run ``call`` in a daemon thread; give up on it after ``spec.timeout``."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.append((False, exc))

    run = getattr(_context._local, "run", None)

    def target_with_context() -> None:
        _context._local.run = run
        target()

    thread = threading.Thread(
        target=target_with_context, name=f"nbflow-{spec.name}", daemon=True
    )
    thread.start()
    thread.join(spec.timeout)
    if not box:
        raise _TimedOut(
            f"Task {spec.name!r} timed out after {spec.timeout:g} s and was "
            "abandoned (its code may still run in the background); raise its "
            "timeout, or make it return sooner."
        )
    ok, value = box[0]
    if ok:
        return value
    raise value


class _TimedOut(TimeoutError):
    """A task ran past its ``timeout``."""


def _format(exc: BaseException) -> str:
    """The traceback of ``exc`` from the task's own code on (our frames cut)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(tb_module.format_exception(type(exc), exc, tb))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles (it may cross processes), else a RuntimeError."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
