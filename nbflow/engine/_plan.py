"""Planning a task's submission: its spec, its inputs, how many children.

Pure functions of a task's binding and of what its upstream tasks were
submitted as (its *slots*); :class:`~nbflow.engine.runner.FlowRun` calls them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from nbflow.core._values import iter_tasks
from nbflow.core.flow import Edge, Flow
from nbflow.core.task import Task, _VarArgs, _VarKwargs, flatten, unmapped
from nbflow.engine import signals
from nbflow.engine._outcome import task_state
from nbflow.engine.state import (
    Cancelled,
    DeferredResult,
    Failed,
    Mapped,
    Pending,
    Skipped,
    State,
    Success,
    TriggerFailed,
    fetch_results,
)
from nbflow.engine.task_runner import (
    CHILDREN,
    ELEMENT,
    FLAT_SLOT,
    NESTED,
    SINGLE,
    SLOT,
    TRIGGER,
    VALUE,
    Shape,
    TaskSpec,
)

__all__ = [
    "CHILDREN_SLOT",
    "FINAL",
    "FUTURE",
    "ChildFutures",
    "Flat",
    "Remote",
    "flat",
    "Slots",
    "compile_task",
    "decided",
    "kind_of",
    "map_size",
    "parent_state",
    "short",
    "template",
]

#: How a task was submitted: a future, a list of child futures, or a final State.
FUTURE, CHILDREN_SLOT, FINAL = 0, 1, 2
Slots = dict[Task, tuple[int, Any]]


def compile_task(
    flow: Flow, task: Task, slots: Slots, index: int,
    parameters: dict[str, Any] | None = None,
) -> tuple[TaskSpec, list[Any], dict[int, Any]]:
    """Turn a task's binding into a spec, its inputs, and which are mapped
    (input position -> the sequence, or the upstream task, mapped over).
    """
    binding = flow.binding(task)
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
        if isinstance(raw, flatten) and isinstance(raw.value, Task) and binding.mapped:
            # Flat-mapped: the upstream's result(s) are joined, then split.
            mapped[len(inputs)] = Flat(raw.value)
            plan.append((key, VALUE, raw.value.name))
            inputs.append(None)
        elif isinstance(raw, flatten) and not any(True for _ in iter_tasks(raw)):
            literal = flat(raw.value)
            if binding.mapped and not is_unmapped:
                mapped[len(inputs)] = literal
                plan.append((key, VALUE, None))
                inputs.append(literal)
            else:
                constants[key] = literal
        elif isinstance(raw, Task):
            kind, source = slots[raw]
            if binding.mapped and not is_unmapped:
                mapped[len(inputs)], entry = _mapped_over(raw, kind, source, key)
                plan.append(entry)
            else:
                plan.append((key, CHILDREN, raw.name))
            inputs.append(source)
        elif any(True for _ in iter_tasks(raw)):
            found = [t for t, _ in iter_tasks(raw)]
            shape = template(raw)
            plan.append((key, NESTED, (shape, [t.name for t in found])))
            inputs.append([slots[t][1] for t in found])
        elif binding.mapped and not is_unmapped:
            mapped[len(inputs)] = raw
            plan.append((key, VALUE, None))
            inputs.append(raw)
        else:
            constants[key] = raw
    for up in binding.mapped_upstream:
        # ``.map(upstream_tasks=[up])``: mapped over, no data passed.
        kind, source = slots[up]
        mapped[len(inputs)], entry = _mapped_over(up, kind, source, None)
        plan.append(entry)
        inputs.append(source)
    if binding.upstream:
        plan.append((None, TRIGGER, tuple(t.name for t in binding.upstream)))
        inputs.append([slots[t][1] for t in binding.upstream])
    fn = task.fn if task.fn is not None else task.run
    spec = TaskSpec(
        fn, task.name, index, max_retries=task.max_retries,
        retry_delay=task.retry_delay, timeout=task.timeout, constants=constants,
        inputs=tuple(plan), positional=binding.positional, varargs=varargs,
        varkw=varkw,
    )
    _add_semantics(flow, task, spec, plan, parameters)
    return spec, inputs, mapped


def _mapped_over(
    upstream: Task, kind: int, source: Any, key: str | None
) -> tuple[Any, tuple[str | None, int, Any]]:
    """How a mapped task takes an upstream task it maps over, and its plan entry.

    A mapped upstream: child i feeds child i. A running one: each child takes
    its element where it runs (see :func:`map_size`). A decided one (a
    parameter): its result is split here.
    """
    if kind == CHILDREN_SLOT:
        return ChildFutures(upstream.name, source), (key, SINGLE, upstream.name)
    if kind == FUTURE:
        return Remote(upstream.name, source), (key, ELEMENT, upstream.name)
    return upstream, (key, VALUE, upstream.name)


def _add_semantics(
    flow: Flow, task: Task, spec: TaskSpec, plan: list[tuple[str | None, int, Any]],
    parameters: dict[str, Any] | None,
) -> None:
    """Copy what the task runner needs beyond the defaults: trigger, skips,
    state handlers, cache (nothing, for a task that sets none of them).
    """
    from nbflow.engine.cache import candidates
    from nbflow.engine.state import portable
    from nbflow.triggers import all_successful

    trigger = getattr(task, "_trigger", None)
    if trigger is not None and trigger is not all_successful:
        spec.trigger = trigger
        spec.edges = _edges(flow, task, plan)
    spec.skip_on_upstream_skip = getattr(task, "skip_on_upstream_skip", True)
    handlers = getattr(task, "state_handlers", None)
    if handlers:
        spec.handlers = tuple(handlers)
        spec.task = task
    cache_for = getattr(task, "cache_for", None)
    if cache_for is not None:
        spec.cache_for = cache_for
        spec.cache_validator = task.cache_validator
        spec.caches = [portable(c) for c in candidates(task)]
        spec.parameters = parameters


def _edges(
    flow: Flow, task: Task, plan: list[tuple[str | None, int, Any]]
) -> tuple[Any, ...]:
    """One Edge per planned input (a tuple of them for several tasks), so a
    custom trigger sees Prefect's ``dict[Edge, State]``.
    """
    binding = flow.binding(task)
    by_key = {key: value for key, value in binding.arguments.items()}
    found: list[Any] = []
    upstream_left = list(binding.upstream)
    mapped_left = list(binding.mapped_upstream)
    for key, kind, _ in plan:
        if kind == TRIGGER:
            found.append(tuple(Edge(u, task) for u in upstream_left))
        elif key is None:
            found.append(Edge(mapped_left.pop(0), task, None, True))
        else:
            value = by_key[key]
            ups = list(iter_tasks(value))
            edges = tuple(Edge(u, task, key, binding.mapped and not is_unmapped)
                          for u, is_unmapped in ups)
            found.append(edges if kind == NESTED else (edges[0] if edges else None))
    return tuple(found)


def map_size(
    task: Task, mapped: dict[int, Any], slots: Slots,
    length: Callable[[Any, str], Any], wait_one: Callable[[Any], Any],
) -> int | State:
    """How many children ``task`` has. The length of a running upstream's
    result is asked of ``length(future, upstream_name)`` (computed where the
    result is: an int, a final State, or the exception of a lost future); a
    flattened upstream is waited for with ``wait_one`` (its result comes here
    to be joined). Returns a final State when it cannot be mapped. Sequences of
    different lengths are zipped to the shortest, as Prefect does. ``mapped``
    keeps only the inputs that differ per child.
    """
    sizes: list[int] = []
    for position, source in list(mapped.items()):
        if isinstance(source, Remote):
            del mapped[position]  # every child gets the same future
            answer = length(source.future, source.name)
            if isinstance(answer, State):
                return answer
            if isinstance(answer, BaseException):
                return task_state(task, answer, None, False)
            sizes.append(answer)
            continue
        if isinstance(source, (Task, Flat)):
            upstream = source.task if isinstance(source, Flat) else source
            name = repr(upstream.name)
            kind, future = slots[upstream]
            if kind == CHILDREN_SLOT:
                children = [wait_one(f) for f in future]
                state = next((c for c in children if not isinstance(c, Success)
                              or isinstance(c, Skipped)), None) or Success(
                    result=[c.result for c in children])
            else:
                state = future if kind == FINAL else wait_one(future)
            if isinstance(state, State) and not state.is_finished():
                return Pending(f"Task {task.name!r} waits: upstream task {name} "
                               "is not finished.")
            if isinstance(state, Skipped) and task.skip_on_upstream_skip:
                return Skipped(
                    f"Upstream task {name} was skipped; if this was not the intended "
                    "behavior, consider changing `skip_on_upstream_skip=False` "
                    "for this task."
                )
            if not isinstance(state, Success):
                if isinstance(state, Cancelled):
                    return Cancelled(f"Upstream task {name} was cancelled.")
                return TriggerFailed(
                    f"Task {task.name!r} did not run: upstream task {name} is "
                    f"{kind_of(state)}."
                )
            source = state.result
            if isinstance(mapped[position], Flat):
                try:
                    source = flat(source)
                except TypeError:
                    return Failed(
                        f"Task {task.name!r} cannot flatten {name} "
                        f"(= {short(source)}): it is not a sequence; return a list "
                        "of lists from it."
                    )
        elif isinstance(source, ChildFutures):
            sizes.append(len(source))
            continue
        else:
            name = short(source)
        try:
            sizes.append(len(source))
            mapped[position] = source = list(source)
        except TypeError:
            return Failed(
                f"Task {task.name!r} cannot map over {name} "
                f"(= {short(source)}): it is not a sequence; map over a list, or "
                "wrap the argument in unmapped()."
            )
    return min(sizes, default=0)


def flat(value: Any) -> list[Any]:
    """``value``'s items, each list (tuple, ...) among them spliced in, as
    Prefect's ``flatten`` does (a string or a non-sequence is kept whole).
    """
    return [
        x
        for item in value
        for x in (item if isinstance(item, Iterable) and not isinstance(
            item, (str, bytes, dict)) else (item,))
    ]


class Flat:
    """An upstream task whose result (or children's results) is flattened."""

    __slots__ = ("task",)

    def __init__(self, task: Task) -> None:
        self.task = task


class Remote:
    """The future of the running unmapped upstream task ``name``, mapped over."""

    __slots__ = ("name", "future")

    def __init__(self, name: str, future: Any) -> None:
        self.name = name
        self.future = future


class ChildFutures(list):  # type: ignore[type-arg]
    """The child futures of the mapped upstream task ``name``."""

    __slots__ = ("name",)

    def __init__(self, name: str, futures: list[Any]) -> None:
        super().__init__(futures)
        self.name = name


def parent_state(task: Task, children: list[State]) -> State:
    """A mapped task's state from its children's (through its state handlers)."""
    n = len(children)
    bad = [c for c in children if not c.is_successful()]
    results: Any = (_ChildResults(children)
                    if any(c.is_result_deferred() for c in children)
                    else [c.result for c in children])
    waiting = sum(not c.is_finished() for c in bad)
    if waiting:
        return decided(task, Pending(
            f"{waiting} of {n} mapped children of {task.name!r} are not finished.",
            results, map_states=children,
        ))
    if not bad:
        return decided(task, Mapped(f"Mapped {n} children.", results,
                                    map_states=children))
    if all(isinstance(c, Cancelled) for c in bad):
        cls: type[State] = Cancelled
    elif all(isinstance(c, (TriggerFailed, Cancelled)) for c in bad):
        cls = TriggerFailed
    else:
        cls = Failed
    first = next((c for c in bad if c.is_failed()), bad[0])
    return decided(task, cls(
        f"{len(bad)} of {n} mapped children of {task.name!r} did not succeed; "
        f"first: {first.message}",
        results, map_states=children,
    ))


def decided(task: Task, state: State) -> State:
    """Pass a state the driver decides for ``task`` (a mapped parent's, or
    one it ends without running) through the task's state handlers.
    """
    handlers = getattr(task, "state_handlers", None)
    if not handlers:
        return state
    try:
        for handler in handlers:
            state = handler(task, Pending(), state) or state
    except signals.PrefectStateSignal as sig:
        return sig.state
    except Exception as exc:
        return Failed(
            f"Task {task.name!r}: a state handler raised {type(exc).__name__}: {exc}",
            exc,
        )
    return state


class _ChildResults(DeferredResult):
    """A mapped task's results, some kept on a cluster: fetched together."""

    __slots__ = ("children",)

    def __init__(self, children: list[State]) -> None:
        self.children = children

    def fetch(self) -> list[Any]:
        """Fetch the children's results at once; return them in order."""
        fetch_results(self.children)
        return [c.result for c in self.children]

    @classmethod
    def sizes(cls, items: list[DeferredResult]) -> list[int | None]:
        """The sum of the children's sizes (None if one is unknown)."""
        out: list[int | None] = []
        for item in items:
            assert isinstance(item, _ChildResults)
            deferred = [c._result for c in item.children if c.is_result_deferred()]
            found = type(deferred[0]).sizes(deferred) if deferred else []
            out.append(None if None in found else sum(n or 0 for n in found))
        return out


def template(value: Any) -> Any:
    """``value`` with each task in it replaced by a slot to fill."""
    if isinstance(value, Task):
        return SLOT
    if isinstance(value, flatten) and isinstance(value.value, Task):
        return FLAT_SLOT
    if isinstance(value, (unmapped, flatten)):
        return template(value.value)
    if isinstance(value, dict):
        factory = getattr(value, "default_factory", None)
        return Shape(type(value), [(k, template(v)) for k, v in value.items()], factory)
    if isinstance(value, (list, tuple, set, frozenset)):
        return Shape(type(value), [template(v) for v in value])
    return value


def kind_of(state: Any) -> str:
    """The name of a state, or of what stands in for one."""
    return state.name if isinstance(state, State) else type(state).__name__


def short(value: Any) -> str:
    """``repr(value)``, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
