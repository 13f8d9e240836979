"""Planning a task's submission: its spec, its inputs, how many children.

Pure functions of a task's binding and of what its upstream tasks were
submitted as (its *slots*); :class:`~nbflow.engine.runner.FlowRun` calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbflow.core._values import iter_tasks
from nbflow.core.flow import Flow
from nbflow.core.task import Task, _VarArgs, _VarKwargs, unmapped
from nbflow.engine.state import Cancelled, Failed, Mapped, State, Success, TriggerFailed
from nbflow.engine.task_runner import (
    CHILDREN,
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
    "Slots",
    "compile_task",
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
    flow: Flow, task: Task, slots: Slots, index: int
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
        if isinstance(raw, Task):
            kind, source = slots[raw]
            if binding.mapped and not is_unmapped:
                # A mapped upstream: child i feeds child i. Any other: its
                # result is split when the task is (see map_size).
                if kind == CHILDREN_SLOT:
                    mapped[len(inputs)] = ChildFutures(raw.name, source)
                    plan.append((key, SINGLE, raw.name))
                else:
                    mapped[len(inputs)] = raw
                    plan.append((key, VALUE, raw.name))
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
    return spec, inputs, mapped


def map_size(
    task: Task, mapped: dict[int, Any], slots: Slots, wait_one: Callable[[Any], Any]
) -> int | State:
    """How many children ``task`` has; wait for unmapped upstream results
    it maps over. Returns a final State when it cannot be mapped.
    """
    sizes: dict[str, int] = {}
    for position, source in list(mapped.items()):
        if isinstance(source, Task):
            name = repr(source.name)
            kind, future = slots[source]
            state = future if kind == FINAL else wait_one(future)
            if not isinstance(state, Success):
                if isinstance(state, Cancelled):
                    return Cancelled(f"Upstream task {name} was cancelled.")
                return TriggerFailed(
                    f"Task {task.name!r} did not run: upstream task {name} is "
                    f"{kind_of(state)}."
                )
            source = state.result
        elif isinstance(source, ChildFutures):
            sizes[repr(source.name)] = len(source)
            continue
        else:
            name = short(source)
        try:
            sizes[name] = len(source)
            mapped[position] = source = list(source)
        except TypeError:
            return Failed(
                f"Task {task.name!r} cannot map over {name} "
                f"(= {short(source)}): it is not a sequence; map over a list, or "
                "wrap the argument in unmapped()."
            )
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{k} has {v}" for k, v in sizes.items())
        return Failed(
            f"Task {task.name!r} maps over sequences of different lengths "
            f"({detail}); make them equal or wrap one in unmapped()."
        )
    return next(iter(sizes.values()), 0)


class ChildFutures(list):  # type: ignore[type-arg]
    """The child futures of the mapped upstream task ``name``."""

    __slots__ = ("name",)

    def __init__(self, name: str, futures: list[Any]) -> None:
        super().__init__(futures)
        self.name = name


def parent_state(task: Task, children: list[State]) -> State:
    """A mapped task's state from its children's."""
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


def template(value: Any) -> Any:
    """``value`` with each task in it replaced by a slot to fill."""
    if isinstance(value, Task):
        return SLOT
    if isinstance(value, unmapped):
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
