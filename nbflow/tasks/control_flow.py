"""Branching, as Prefect 1's ``prefect.tasks.control_flow``: ``case``,
``merge``, ``switch`` and ``ifelse``.

A branch that is not taken ends Skipped, and so do the tasks after it (unless
they set ``skip_on_upstream_skip=False``); :func:`merge` takes the result of
the branch that ran. Uses the model, states and signals only.

Examples
--------
>>> from nbflow import Flow, task
>>> from nbflow.tasks.control_flow import case, merge
>>> @task
... def is_even(n):
...     return n % 2 == 0
>>> @task
... def say(text):
...     return text
>>> with Flow("branch") as flow:
...     cond = is_even(4)
...     with case(cond, True):
...         yes = say("even")
...     with case(cond, False):
...         no = say("odd")
...     out = merge(yes, no)
>>> flow.run().result[out].result
'even'

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbflow.core.task import Task, _case_stack, active_flow
from nbflow.engine import signals
from nbflow.errors import FlowContextError

if TYPE_CHECKING:
    from nbflow.core.flow import Flow

__all__ = ["CompareValue", "Merge", "case", "ifelse", "merge", "switch"]


class CompareValue(Task):
    """Succeed if its input equals ``value``; else raise ``SKIP``.

    Parameters
    ----------
    value : Any
        The value to compare with.
    **kwargs
        Task options.

    """

    def __init__(self, value: Any, **kwargs: Any) -> None:
        self.value = value
        kwargs.setdefault("name", f'CompareValue: "{value}"')
        super().__init__(**kwargs)

    def run(self, value: Any) -> None:
        """Raise ``SKIP`` unless ``value`` matches."""
        if value != self.value:
            raise signals.SKIP(f'Provided value "{value}" did not match "{self.value}"')


class Merge(Task):
    """The first result that is not None among its inputs (a skipped branch's is None).

    Runs unless every input was skipped (trigger ``not_all_skipped``).
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.setdefault("skip_on_upstream_skip", False):
            raise FlowContextError(
                f"Merge tasks must have skip_on_upstream_skip=False, got "
                f"{kwargs['skip_on_upstream_skip']!r}."
            )
        if "trigger" not in kwargs:
            from nbflow.triggers import not_all_skipped

            kwargs["trigger"] = not_all_skipped
        super().__init__(**kwargs)

    def run(self, **task_results: Any) -> Any:
        """The first input, by name, that is not None."""
        return next((v for _, v in sorted(task_results.items()) if v is not None), None)


class case:  # noqa: N801 - Prefect's spelling
    """Run the tasks made inside ``with case(task, value):`` only if ``task``'s
    result equals ``value``; otherwise they end Skipped.

    Parameters
    ----------
    task : Task
        The condition.
    value : Any
        The value it must have.

    """

    def __init__(self, task: Task, value: Any) -> None:
        self.task = task
        self.value = value
        self._tasks: set[Task] = set()
        self._flow: Flow | None = None

    def add_task(self, task: Task, flow: Flow) -> None:
        """Note ``task``, added to ``flow`` inside this block."""
        if self._flow is None:
            self._flow = flow
        elif self._flow is not flow:
            raise FlowContextError(
                f"case({self.task.name!r}, {self.value!r}) was used with two flows, "
                f"{self._flow.name!r} and {flow.name!r}; use one case per flow."
            )
        self._tasks.add(task)

    def __enter__(self) -> case:
        _case_stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _case_stack.remove(self)
        flow = self._flow
        if not self._tasks or flow is None:
            return
        cond = CompareValue(self.value, name=f"case({self.value})").bind(
            value=self.task, flow=flow
        )
        for child in self._tasks:
            # Tasks fed by another task of this block skip through it.
            if not self._tasks.intersection(flow.upstream_tasks(child)):
                child.set_upstream(cond, flow=flow)


def merge(*tasks: Task, flow: Flow | None = None) -> Task:
    """A task whose result is that of the first of ``tasks`` that ran.

    Parameters
    ----------
    *tasks : Task
        The branches, in order of preference.
    flow : Flow, optional
        Default: the active flow.

    Returns
    -------
    Task

    """
    branches: dict[str, Any] = {f"task{i + 1}": t for i, t in enumerate(tasks)}
    return Merge().bind(flow=flow, **branches)


def switch(condition: Task, cases: dict[Any, Task], mapped: bool = False) -> None:
    """Run the task of ``cases`` whose key equals ``condition``'s result; the
    others end Skipped.

    Parameters
    ----------
    condition : Task
    cases : dict
        Value -> task.
    mapped : bool
        Compare element by element (the tasks are mapped).

    """
    flow = active_flow()
    if flow is None:
        raise FlowContextError(
            "switch() was called outside a flow; call it inside `with Flow(...):`."
        )
    for value, branch in cases.items():
        match = CompareValue(value)
        match_task = match.map(condition) if mapped else match(condition)
        branch.set_dependencies(flow, upstream_tasks=[match_task], mapped=mapped)


def _truth(x: Any) -> bool:
    return bool(x)


_as_bool = Task(_truth, name="as_bool")


def ifelse(
    condition: Task, true_task: Task | None, false_task: Task | None,
    mapped: bool = False,
) -> None:
    """Run ``true_task`` if ``condition``'s result is truthy, else ``false_task``.

    Parameters
    ----------
    condition, true_task, false_task : Task
    mapped : bool
        Decide element by element.

    """
    cases = {v: t for v, t in ((True, true_task), (False, false_task)) if t is not None}
    if cases:
        flag = _as_bool.map(condition) if mapped else _as_bool(condition)
        switch(flag, cases, mapped=mapped)
