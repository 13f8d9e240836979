"""Running one task (or one child of a mapped task), wherever it runs.

:func:`run_task` is what executors run: in the driver's thread, in a thread or
process pool, or on a Dask worker. It checks its upstream states (the trigger),
builds the arguments, calls the function with retries, reports state changes
through the executor's channel, and returns a :class:`State`. It never raises
for a task's own error, so one failure stops nothing else.

This path runs once per task: it copies no configuration and sets up no logging.
"""

from __future__ import annotations

import collections
import dis
import pickle
import threading
import time
import traceback as tb_module
from typing import TYPE_CHECKING, Any

from nbflow.engine.state import Cancelled, Failed, State, Success, TriggerFailed

if TYPE_CHECKING:
    from collections.abc import Callable

    from nbflow.executors.base import TaskChannel

__all__ = [
    "CHILDREN", "NESTED", "SINGLE", "TRIGGER", "VALUE", "Shape", "TaskExit", "TaskSpec",
    "run_task",
]

#: How an input of :func:`run_task` becomes an argument.
SINGLE = 0  # an upstream State: its result
CHILDREN = 1  # a list of a mapped upstream's child States: their results
VALUE = 2  # a plain value (an element of a mapped literal or result)
NESTED = 3  # a list of upstream States to put into a container template
TRIGGER = 4  # upstream States that must succeed; no data


class TaskSpec:
    """What a worker needs to run a task: small, shared by all its children."""

    __slots__ = (
        "fn", "name", "index", "max_retries", "retry_delay", "timeout",
        "constants", "inputs", "positional", "varargs", "varkw",
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


def run_task(
    spec: TaskSpec, channel: TaskChannel, map_index: int | None, *inputs: Any
) -> State:
    """Run a task once its upstream states are known; return its final state."""
    report = channel.report
    if channel.is_cancelled():
        return _end(report, spec, map_index, Cancelled("The run was cancelled."))
    if spec.unsendable is not None:
        return _end(report, spec, map_index, spec.unsendable.failed(spec))
    kwargs = dict(spec.constants) if spec.constants else {}
    problem = _bind_inputs(spec, inputs, kwargs)
    if problem is not None:
        return _end(report, spec, map_index, problem)
    attempt = 0
    while True:
        if report is not None:
            report((spec.index, map_index, "Running", time.time(), None, None,
                    channel.where()))
        try:
            result = _call(spec, kwargs)
        except (Exception, SystemExit, KeyboardInterrupt) as raised:
            exc = _contained(raised)  # a real Ctrl-C is raised again here
            message = _failure(spec, exc)
            text = _format(raised)
            if attempt < spec.max_retries:
                attempt += 1
                if report is not None:
                    note = f"{message} (retry {attempt} of {spec.max_retries})"
                    report((spec.index, map_index, "Retrying", time.time(), note, text, None))
                if spec.retry_delay:
                    time.sleep(spec.retry_delay)
                if channel.is_cancelled():
                    return _end(report, spec, map_index, Cancelled("The run was cancelled."))
                continue
            state: State = Failed(message, _portable(exc), traceback=text)
        else:
            bad = _unpicklable(result) if channel.crosses_processes else None
            if bad is None:
                state = Success(result=result)
            else:
                state = Failed(
                    f"Task {spec.name!r} failed: its result cannot be serialised to "
                    f"leave the worker ({type(bad).__name__}: {bad}); return plain "
                    "data, and keep objects such as locks, files and generators "
                    "inside the task.",
                    _portable(bad),
                )
        return _end(report, spec, map_index, state)


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


def _end(report: Any, spec: TaskSpec, map_index: int | None, state: State) -> State:
    state.timestamp = time.time()
    if report is not None:
        report((spec.index, map_index, state.name, state.timestamp, state.message,
                state.traceback, None))
    return state


def _bind_inputs(spec: TaskSpec, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> State | None:
    """Put the inputs' values into ``kwargs``; return TriggerFailed if one failed."""
    for (key, kind, extra), value in zip(spec.inputs, inputs):
        if kind == SINGLE:
            if not isinstance(value, Success):
                return _trigger_failed(spec, extra, value)
            kwargs[key] = value.result  # type: ignore[index]
        elif kind == VALUE:
            kwargs[key] = value  # type: ignore[index]
        elif kind == CHILDREN:
            results = _children(spec, extra, value)
            if isinstance(results, State):
                return results
            kwargs[key] = results  # type: ignore[index]
        elif kind == NESTED:
            found = []
            for name, item in zip(extra[1], value):
                item_value = _children(spec, name, item)
                if isinstance(item_value, State):
                    return item_value
                found.append(item_value)
            try:
                kwargs[key] = _fill(extra[0], iter(found))  # type: ignore[index]
            except Exception as exc:  # noqa: BLE001 - the task's failure
                shape = extra[0]
                return Failed(
                    f"Task {spec.name!r} failed: its argument {key!r}, a "
                    f"{shape.cls.__name__} holding task results, cannot be rebuilt "
                    f"around them ({type(exc).__name__}: {exc}); pass a list, "
                    "tuple, dict or set.",
                    _portable(exc),
                )
        else:  # TRIGGER
            for name, item in zip(extra, value):
                checked = _children(spec, name, item)
                if isinstance(checked, State):
                    return checked
    return None


def _children(spec: TaskSpec, upstream: str, value: Any) -> Any:
    """The result(s) of an upstream state or list of child states, or a
    TriggerFailed state if one did not succeed.
    """
    if isinstance(value, State):
        if isinstance(value, Success):
            return value.result
        return _trigger_failed(spec, upstream, value)
    results = []
    for child in value:
        if not isinstance(child, Success):
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
        return "SLOT"  # one slot marker in every process


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


def _fill(template: Any, values: Any) -> Any:
    if template is SLOT:
        return next(values)
    if type(template) is Shape:
        return template.fill(values)
    return template


def _call(spec: TaskSpec, kwargs: dict[str, Any]) -> Any:
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

    thread = threading.Thread(target=target, name=f"nbflow-{spec.name}", daemon=True)
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
