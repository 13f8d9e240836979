"""Containers of tasks as arguments arrive with every task's result in place,
on every executor kind, or the task fails with one line saying why.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "executors"))
from _flows import inc  # noqa: E402

from nbflow import Flow, task  # noqa: E402
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor  # noqa: E402

Pair = collections.namedtuple("Pair", "left right")


@task
def echo(value):
    return value


EXECUTORS = {
    "local": LocalExecutor,
    "threads": lambda: LocalDaskExecutor("threads", num_workers=2),
    "processes": lambda: LocalDaskExecutor("processes", num_workers=2),
    "dask": lambda: DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False}),
}


@pytest.mark.parametrize("kind", EXECUTORS)
def test_every_container_of_tasks_arrives_whole(kind, no_leaked_processes):
    with Flow("containers") as flow:
        a, b, c = inc(1), inc(2), inc(3)
        factory = collections.defaultdict(list, {"x": a})
        got = {
            "set": echo({a, b}),
            "frozenset": echo(frozenset({a, b, c})),
            "tuple": echo((a, b)),
            "namedtuple": echo(Pair(a, right=b)),
            "list": echo([a, b, 7]),
            "dict": echo({"a": a, "b": b}),
            "defaultdict": echo(factory),
            "ordered": echo(collections.OrderedDict([("b", b), ("a", a)])),
            "nested": echo({"xs": [a, (b, {c})], "p": Pair(a, [b, c])}),
        }
    state = flow.run(executor=EXECUTORS[kind]())
    assert state.is_successful(), state.message
    values = {name: state.result[t].result for name, t in got.items()}
    assert values["set"] == {2, 3}
    assert values["frozenset"] == frozenset({2, 3, 4})
    assert values["tuple"] == (2, 3)
    assert values["namedtuple"] == Pair(2, 3)
    assert type(values["namedtuple"]).__name__ == "Pair"
    assert values["list"] == [2, 3, 7]
    assert values["dict"] == {"a": 2, "b": 3}
    assert isinstance(values["defaultdict"], collections.defaultdict)
    assert values["defaultdict"] == {"x": 2}
    assert values["defaultdict"]["new"] == []  # the factory came along
    assert list(values["ordered"].items()) == [("b", 3), ("a", 2)]
    assert values["nested"] == {"xs": [2, (3, {4})], "p": Pair(2, [3, 4])}


@task
def listing(n):
    return [n]


def test_a_container_that_cannot_hold_the_results_fails_in_one_line():
    with Flow("unhashable") as flow:
        result = echo({listing(1), listing(2)})  # a set of lists cannot be made
    state = flow.run()
    assert state.result[result].is_failed()
    message = state.result[result].message
    assert message.startswith(
        "Task 'echo' failed: its argument 'value', a set holding task results, "
        "cannot be rebuilt around them (TypeError: unhashable type: 'list'); "
    ), message
    assert "\n" not in message
