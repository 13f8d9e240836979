"""The Flow, Task and State API as Prefect 1 spells it (the model; running
corners are in tests/executors/test_prefect_semantics.py)."""

from __future__ import annotations

import pickle

import pytest

from nbflow import Flow, Parameter, Task, task
from nbflow.core.flow import Edge
from nbflow.engine import signals
from nbflow.engine.state import (
    Cached,
    Failed,
    Finished,
    Looped,
    Mapped,
    Paused,
    Pending,
    Queued,
    Resume,
    Retrying,
    Scheduled,
    Skipped,
    State,
    Submitted,
    Success,
    TimedOut,
    TriggerFailed,
)
from nbflow.errors import FlowValidationError


@task
def inc(x):
    return x + 1


@task
def add(x, y):
    return x + y


def test_task_by_name_and_the_base_run():
    assert Task("name").name == "name"
    assert Task().name == "Task" and Task().run() is None
    with Flow("f") as flow:
        t = Task("nothing")()
    assert flow.run().result[t] == Success(result=None)


def test_subclassing_task_with_a_run_method():
    class Multiply(Task):
        def __init__(self, factor, **kwargs):
            self.factor = factor
            super().__init__(**kwargs)

        def run(self, x):
            return x * self.factor

    with Flow("sub") as flow:
        m = Multiply(3, name="triple")(inc(1))
    assert m.name == "triple"
    assert flow.run().result[m].result == 6


def test_edges_as_prefect_spells_them():
    a, b, c = Task("a"), Task("b"), Task("c")
    flow = Flow("e")
    e = flow.add_edge(upstream_task=a, downstream_task=b)
    assert (e.upstream_task, e.downstream_task, e.key, e.mapped) == (a, b, None, False)
    flow.add_edge(a, c, key="x")
    assert flow.edges_to(c) == {Edge(a, c, "x")}
    assert flow.edges_from(a) == {Edge(a, b), Edge(a, c, "x")}
    assert flow.all_upstream_edges() == {a: set(), b: {Edge(a, b)}, c: {Edge(a, c, "x")}}
    assert flow.root_tasks() == {a} and flow.terminal_tasks() == {b, c}
    assert flow.reference_tasks() == {b, c}
    copy = Flow("copy", edges=flow.edges)
    assert copy.edges == flow.edges
    with pytest.raises(FlowValidationError, match="cannot have upstream tasks"):
        flow.add_edge(a, Parameter("p"))


def test_kwargs_edges_are_keyed_by_their_own_names():
    @task
    def gather(**kwargs):
        return sorted(kwargs.items())

    with Flow("k") as flow:
        one, two = inc(0), inc(1)
        g = gather(a=one, b=two)
    assert {e.key for e in flow.edges_to(g)} == {"a", "b"}
    assert flow.run().result[g].result == [("a", 1), ("b", 2)]


def test_set_upstream_set_downstream_chain_and_pipe():
    a, b, c, d = Task("a"), Task("b"), Task("c"), Task("d")
    with Flow("s") as flow:
        b.set_upstream(a)
        b.set_downstream(c)
        flow.chain(c, d)
        piped = inc(1).pipe(add, y=10)
    assert flow.upstream_tasks(b) == [a] and flow.upstream_tasks(d) == [c]
    assert flow.upstream_tasks(c) == [b]
    assert flow.run().result[piped].result == 12
    with pytest.raises(FlowValidationError, match="cannot take these arguments"), Flow("x"):
        inc(1).pipe(add, z=1)


def test_getitem_task():
    @task
    def pair():
        return {"k": 5, "j": [1, 2]}

    with Flow("g") as flow:
        p = pair()
        k = p["k"]
        j = p["j"][1]
    assert k.name == "pair['k']"
    state = flow.run()
    assert state.result[k].result == 5 and state.result[j].result == 2


def test_copy_update_get_tasks_and_replace():
    with Flow("one") as one:
        x = Task(inc.fn, name="x", tags=["io", "slow"])(1)
        y = Task(add.fn, name="y", tags=["io"])(x, 1)
    copied = one.copy()
    copied.add_task(Task("extra"))
    assert len(one) == 2 and len(copied) == 3
    assert copied.edges == one.edges
    with Flow("two") as two:
        z = inc(5)
    two.update(one)
    assert two.tasks == {x, y, z} and two.edges == one.edges
    assert one.get_tasks(tags=["io"]) == [x, y]
    assert one.get_tasks(tags=["slow"]) == [x]
    assert one.get_tasks(task_type=Parameter) == []
    with pytest.raises(TypeError, match="expects a Task to put in 'x'"):
        one.replace(x, 55)
    new = Task(lambda x: 55, name="x55")  # keeps x's arguments and edges
    one.replace(x, new)
    assert one.run().result[y].result == 56


def test_state_equality_hierarchy_and_pickling():
    assert Success("a", result=1) == Success("b", result=1)
    assert Success(result=1) != Success(result=2)
    assert Success(result=1) != Cached(result=1)
    assert len({Success(), Success()}) == 2  # hashed by identity, as in Prefect
    assert issubclass(Skipped, Success) and issubclass(Cached, Success)
    assert issubclass(Mapped, Success) and issubclass(TimedOut, Failed)
    assert issubclass(TriggerFailed, Failed) and issubclass(Looped, Finished)
    assert issubclass(Retrying, Scheduled) and issubclass(Paused, Scheduled)
    assert issubclass(Resume, Scheduled) and issubclass(Scheduled, Pending)
    assert Retrying.parents(names_only=True) == ["Scheduled", "Pending", "State"]
    assert set(Success.children(names_only=True)) == {"Cached", "Mapped", "Skipped"}
    assert "Submitted" in State.children(names_only=True)
    for state in (
        Retrying("r", run_count=2), Looped(loop_count=3, result=1),
        Cached(result=1, cached_inputs={"x": 1}), Submitted(state=Pending()),
        Queued(state=Retrying(run_count=1)), Skipped("s"), TimedOut("t"),
        Mapped(map_states=[Success(result=1)], result=[1]),
    ):
        back = pickle.loads(pickle.dumps(state))
        assert back == state and back.message == state.message
    assert Mapped(map_states=[Success(), Failed()]).n_map_states == 2
    assert Skipped().is_skipped() and Skipped().is_successful()
    assert Submitted(state=Pending()).is_meta_state()


def test_signals_carry_their_states():
    assert type(signals.FAIL("x").state) is Failed
    assert type(signals.TRIGGERFAIL().state) is TriggerFailed
    assert type(signals.SKIP().state) is Skipped
    assert signals.SUCCESS(result=3).state.result == 3
    assert signals.LOOP(result=4).state.result == 4
    assert signals.signal_from_state(Skipped()) is signals.SKIP
    assert not issubclass(signals.FAIL, Exception)  # an `except Exception` lets it by


def test_text_progress_counts_every_kind_of_failure():
    import io

    from nbflow.cli.progress import TextProgress

    @task(timeout=0.2)
    def maybe_stuck(x):
        import time

        if x:
            time.sleep(30)
        return x

    with Flow("p") as flow:
        maybe_stuck.map([0, 1])
    out = io.StringIO()
    flow.run(listeners=[TextProgress(out)])
    assert "2/2 done, 1 failed" in out.getvalue()  # the TimedOut child counts
