"""Prefect 1's flow semantics on every executor: triggers, signals, skips,
loops, state handlers, mapping corners, flatten, task_states and caching.

Written after Prefect 1.4.1's own tests for the same behaviour (triggers,
task runner, flow runner, mapping), not copied from them.
"""

from __future__ import annotations

import sys

import cloudpickle

from nbflow import Flow, Task, context, flatten, mapped, task, triggers, unmapped
from nbflow.engine import cache, signals
from nbflow.engine.cache_validators import all_inputs, all_parameters
from nbflow.engine.state import (
    Cached,
    Cancelled,
    Failed,
    Looped,
    Mapped,
    Paused,
    Resume,
    Retrying,
    Running,
    Skipped,
    Success,
    TimedOut,
    TriggerFailed,
)

# Workers of a `dask worker` process cannot import the tests: pickle by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@task
def inc(x):
    return x + 1


@task
def add(x, y):
    return x + y


@task
def numbers(n):
    return list(range(n))


@task
def boom():
    raise ValueError("boom")


@task
def seven():
    return 7


@task
def show(x):
    return repr(x)


# -- bugs and silent differences ------------------------------------------------


def test_mapped_inputs_of_different_lengths_zip_to_the_shortest(executor):
    with Flow("zip") as flow:
        z = add.map(x=numbers(2), y=numbers(3))
        w = add.map(numbers.map([1, 2, 3]), [[10], [20]])
    state = flow.run(executor=executor)
    assert state.is_successful(), state.message
    assert state.result[z].result == [0, 2]
    assert state.result[w].result == [[0, 10], [0, 1, 20]]


def test_map_over_upstream_tasks_maps_over_their_result(executor):
    with Flow("u") as flow:
        n = numbers(3)
        each = seven.map(upstream_tasks=[n])
        per_child = seven.map(upstream_tasks=[inc.map([1, 2])])
    state = flow.run(executor=executor)
    assert state.result[each].result == [7, 7, 7]
    assert state.result[per_child].result == [7, 7]


def test_map_with_only_unmapped_arguments_is_one_ordinary_call(executor):
    with Flow("one") as flow:
        once = inc.map(unmapped(4))
        listed = show.map(unmapped([1, 2]))
    state = flow.run(executor=executor)
    assert state.result[once] == Success(result=5)
    assert not state.result[once].is_mapped()
    assert state.result[listed].result == "[1, 2]"


def test_mapped_annotation_in_an_ordinary_call(executor):
    with Flow("m") as flow:
        m = add(mapped(numbers(3)), 10)
    assert flow.run(executor=executor).result[m].result == [10, 11, 12]


def test_empty_flow_given_to_a_call_gets_the_task():
    flow = Flow("f")
    added = inc(1, flow=flow)
    assert added in flow and len(flow) == 1
    flow2 = Flow("g")
    m = inc.map([1, 2], flow=flow2)
    assert flow2.run().result[m].result == [2, 3]


# -- triggers ----------------------------------------------------------------------


@task(trigger=triggers.all_failed)
def on_all_failed():
    return "cleaned"


@task(trigger=triggers.any_failed)
def on_any_failed():
    return "any"


@task(trigger=triggers.always_run)
def finally_(x):
    return type(x).__name__


@task(trigger=triggers.some_successful(at_least=2))
def two_ok():
    return "two"


@task(trigger=triggers.some_failed(at_most=0.2))
def few_failed():
    return "few"


@task(trigger=triggers.any_successful)
def any_ok():
    return "any-ok"


def test_triggers(executor):
    with Flow("t") as flow:
        bad, good = boom(), seven()
        cleaned = on_all_failed(upstream_tasks=[bad])
        not_cleaned = on_all_failed(upstream_tasks=[good])
        anyf = on_any_failed(upstream_tasks=[good, bad])
        fin = finally_(bad)
        two = two_ok(upstream_tasks=[good, bad, inc(1)])
        not_two = two_ok(upstream_tasks=[good, bad])
        few = few_failed(upstream_tasks=[bad, good])
        any_ok_ = any_ok(upstream_tasks=[bad, good])
        none_ok = any_ok(upstream_tasks=[bad])
    flow.set_reference_tasks([cleaned])
    # On a temporary cluster only reference tasks' results come home unless named.
    state = flow.run(executor=executor, return_tasks=flow.tasks)
    r = state.result
    assert state.is_successful(), state.message
    assert r[cleaned].result == "cleaned"
    assert isinstance(r[not_cleaned], TriggerFailed)
    assert "all_failed" in r[not_cleaned].message
    assert r[anyf].result == "any"
    assert r[fin].result == "ValueError"  # a failed upstream passes its error
    assert r[two].result == "two"
    assert isinstance(r[not_two], TriggerFailed)
    assert isinstance(r[few], TriggerFailed)  # 1 of 2 failed > 20 %
    assert r[any_ok_].result == "any-ok"
    assert isinstance(r[none_ok], TriggerFailed)


def test_trigger_sees_edges_and_mapped_children(executor):
    def keyed(upstream_states):
        keys = sorted(str(e.key) for e in upstream_states)
        children = [len(s.map_states) for s in upstream_states.values() if s.is_mapped()]
        if keys != ["None", "x"] or children != [3]:
            raise signals.FAIL(f"saw {keys} {children}")
        return True

    with Flow("e") as flow:
        m = inc.map([1, 2, 3])
        t = Task(fn=lambda x: sum(x), name="total", trigger=keyed)(m, upstream_tasks=[seven()])
    state = flow.run(executor=executor)
    assert state.result[t].result == 9, state.result[t].message


def test_not_all_skipped_and_skip_on_upstream_skip(executor):
    @task
    def skipper():
        raise signals.SKIP("not today")

    with Flow("s") as flow:
        s = skipper()
        after = inc(s)
        mapped_after = inc.map(s)
        child_skip = inc.map(numbers(2))
        runs = Task(fn=lambda x: "ran", name="runs", skip_on_upstream_skip=False)(s)
        nas = Task(fn=lambda: "x", name="nas", trigger=triggers.not_all_skipped,
                   skip_on_upstream_skip=False)(upstream_tasks=[s])
    state = flow.run(executor=executor)
    r = state.result
    assert isinstance(r[s], Skipped) and r[s].message == "not today"
    assert isinstance(r[after], Skipped) and isinstance(r[mapped_after], Skipped)
    assert r[child_skip].is_successful()
    assert r[runs].result == "ran"
    assert isinstance(r[nas], Skipped)
    assert state.is_successful()  # skipped reference tasks count as successes


# -- signals and states -----------------------------------------------------------------


@task
def signalled(kind):
    if kind == "fail":
        raise signals.FAIL("told to fail")
    if kind == "success":
        raise signals.SUCCESS("early", result=42)
    if kind == "skip":
        raise signals.SKIP("skip me")
    return kind


def test_signals_end_tasks_in_their_states(executor):
    with Flow("sig") as flow:
        f, s, k = signalled("fail"), signalled("success"), signalled("skip")
        m = signalled.map(["fail", "ok", "skip"])
    r = flow.run(executor=executor).result
    assert type(r[f]) is Failed and r[f].message == "told to fail"
    assert r[s] == Success(result=42) and r[s].message == "early"
    assert type(r[k]) is Skipped
    assert [type(c) for c in r[m].map_states] == [Failed, Success, Skipped]


@task
def accumulate(x):
    current = context.get("task_loop_result", x)
    if current < 20:
        raise signals.LOOP(result=current + 5)
    return (current, context.get("task_loop_count"))


def test_loop_runs_again_with_its_result(executor):
    with Flow("loop") as flow:
        a = accumulate(1)
        m = accumulate.map([3, 30])
    r = flow.run(executor=executor).result
    assert r[a].result == (21, 5)
    assert r[m].result == [(23, 5), (30, None)]


@task(max_retries=2)
def retry_until_third():
    run = context.get("task_run_count")
    if run < 3:
        raise signals.RETRY(f"run {run}")
    return run


@task(timeout=0.2)
def too_slow():
    import time

    time.sleep(30)


def test_retry_signal_and_timed_out(executor):
    with Flow("r") as flow:
        r = retry_until_third()
        t = too_slow()
    state = flow.run(executor=executor)
    assert state.result[r].result == 3
    assert isinstance(state.result[t], TimedOut)


def test_state_handlers_see_every_change_and_may_replace_it(executor):
    def fix(task, old, new):
        # every transition of Prefect's task runner passes through here
        if isinstance(new, Running):
            assert old.is_pending()
        if isinstance(new, Failed):
            return Success(f"fixed after {type(old).__name__}", result=99)
        return None

    def on_failure(task, state):
        raise RuntimeError("handler broke")

    def tag_parent(task, old, new):
        if new.is_mapped():
            return Success("parent seen", result=new.result)
        return None

    with Flow("h") as flow:
        fixed = boom.copy(state_handlers=[fix])()
        loud = Task(fn=boom.fn, name="loud", on_failure=on_failure)()
        parent = inc.copy(state_handlers=[tag_parent]).map([1, 2])
        not_run = inc.copy(state_handlers=[fix]).map(boom())
    state = flow.run(executor=executor)
    assert state.result[parent] == Success(result=[2, 3])
    assert state.result[parent].message == "parent seen"
    assert state.result[not_run].result == 99  # decided in the driver, handled too
    assert state.result[fixed].result == 99
    assert state.result[fixed].message == "fixed after Running"
    assert "a state handler raised RuntimeError: handler broke" in state.result[loud].message


def test_flow_state_handlers_and_on_failure(executor):
    changes = []

    def record(flow, old, new):
        changes.append((type(old).__name__, type(new).__name__))

    failed = []
    with Flow("fh", state_handlers=[record], on_failure=lambda f, s: failed.append(f)) as flow:
        boom()
    state = flow.run(executor=executor)
    assert changes == [("Pending", "Running"), ("Running", "Failed")]
    assert failed == [flow] and state.is_failed()


# -- flatten, task_states, caching ----------------------------------------------------------


def test_flatten_maps_over_a_list_of_lists(executor):
    with Flow("flat") as flow:
        nested = numbers.map([1, 2, 3])
        flat = inc.map(flatten(nested))
        whole = inc.map(flatten(Task(fn=lambda: [[1], [2, 3]], name="lol")()))
        reduced = show(flatten(nested))
        literal = inc.map(flatten([[1], [2, 3]]))
        loose = inc.map(flatten([1, [2], 3]))
        twice = inc.map(flatten(numbers.map(flatten(numbers.map([2, 3])))))
    r = flow.run(executor=executor).result
    assert r[literal].result == [2, 3, 4] and r[loose].result == [2, 3, 4]
    assert r[twice].result == [1, 1, 1, 2]  # [[], [0], [], [0], [0, 1]] + 1
    assert r[flat].result == [1, 1, 2, 1, 2, 3]
    assert r[whole].result == [2, 3, 4]
    assert r[reduced].result == "[0, 0, 1, 0, 1, 2]"


def test_task_states_start_the_run_from_given_states(executor):
    with Flow("resume") as flow:
        a = boom()
        b = inc(a)
    state = flow.run(executor=executor, task_states={a: Success(result=41)})
    assert state.result[b].result == 42
    assert state.result[a] == Success(result=41)


def test_task_states_cached_is_checked_by_the_validator(executor):
    import datetime

    with Flow("cached") as flow:
        a = boom()
        b = inc(a)
    fresh = flow.run(executor=executor, task_states={a: Cached(result=1)})
    assert isinstance(fresh.result[a], Cached) and fresh.result[b].result == 2
    old = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    expired = flow.run(executor=executor,
                       task_states={a: Cached(result=1, cached_result_expiration=old)})
    assert type(expired.result[a]) is Failed  # ran again


def test_cache_for_gives_cached_states_within_the_process(executor, tmp_path):
    cache.clear()
    log = tmp_path / "runs"

    @task(cache_for=60, cache_validator=all_inputs)
    def counted(x, path):
        with open(path, "a") as f:
            f.write("x")
        return x * 2

    @task(cache_for=60, cache_validator=all_parameters)
    def param_cached(n, path):
        with open(path, "a") as f:
            f.write("p")
        return n

    from nbflow import Parameter

    with Flow("cache") as flow:
        n = Parameter("n", default=1)
        c = counted.map([1, 2], unmapped(str(log)))
        p = param_cached(n, str(log))
    first = flow.run(executor=executor)
    assert [type(s) for s in first.result[c].map_states] == [Cached, Cached]
    again = flow.run(executor=executor)
    assert again.result[c].result == [2, 4] and again.result[p].result == 1
    other = flow.run(executor=executor, n=2)
    assert other.result[p].result == 2
    assert sorted(log.read_text()) == sorted("xxpp")
    assert all(isinstance(s, Cached) for s in again.result[c].map_states)
    cache.clear()


def test_new_states_cross_processes(executor):
    """Retrying (with run_count), Looped and Skipped come back from workers."""
    events = []
    with Flow("x") as flow:
        r = retry_until_third()
        a = accumulate(18)
    flow.run(executor=executor, listeners=[events.extend])
    names = [e.new.name for e in events if getattr(e, "task", None) is r]
    assert names.count("Retrying") == 2 and names[-1] == "Success"
    assert Looped.__name__ not in [e.new.name for e in events if getattr(e, "task", None) is a][-1:]
    assert Retrying(run_count=1) == Retrying(run_count=1) != Retrying(run_count=2)
    assert isinstance(Mapped(), Success)


def test_task_subclass_getitem_and_base_task_run_everywhere(executor):
    # Defined here, not at module level: distributed pickles a module-level
    # class by reference, and a `dask worker` cannot import this test module
    # (a notebook's classes live in __main__ and go by value).
    class Multiply(Task):
        """A Task subclass with its own ``run``, as Prefect users write them."""

        def __init__(self, factor, **kwargs):
            self.factor = factor
            super().__init__(**kwargs)

        def run(self, x):
            return x * self.factor

    @task
    def pair():
        return {"k": [1, 2]}

    with Flow("sub") as flow:
        m = Multiply(3, name="triple")(inc(1))
        each = Multiply(2).map([1, 2])
        k = pair()["k"][1]
        nothing = Task("nothing")()
    r = flow.run(executor=executor).result
    assert r[m].result == 6 and r[each].result == [2, 4]
    assert r[k].result == 2 and r[nothing] == Success(result=None)


def test_manual_only_pauses_until_resumed(executor):
    with Flow("pause") as flow:
        first = inc(1)
        gate = Task(fn=lambda x: x * 10, name="gate", trigger=triggers.manual_only)(first)
        after = inc(gate)
    # `first`'s result is passed to the second run: bring it home (a
    # temporary cluster keeps only reference tasks' results).
    paused = flow.run(executor=executor, return_tasks=[first])
    assert isinstance(paused.result[gate], Paused)
    assert not paused.result[after].is_successful()
    assert paused.message.startswith(
        "Some reference tasks did not finish (not finished: 'gate', 'inc"), paused.message
    resumed = flow.run(executor=executor, task_states={first: paused.result[first],
                                                        gate: Resume()})
    assert resumed.result[after].result == 21


@task
def parity(n):
    return "even" if n % 2 == 0 else "odd"


@task
def say(text):
    return text


def test_case_and_merge_branch(executor):
    from nbflow import Parameter
    from nbflow.tasks.control_flow import case, merge

    with Flow("branch") as flow:
        n = Parameter("n")
        p = parity(n)
        with case(p, "even"):
            even = say("even branch")
            after_even = show(even)
        with case(p, "odd"):
            odd = say("odd branch")
        out = merge(after_even, odd)
    four = flow.run(executor=executor, n=4)
    assert four.is_successful(), four.message
    assert four.result[out].result == "'even branch'"
    assert isinstance(four.result[odd], Skipped)
    three = flow.run(executor=executor, n=3)
    assert three.result[out].result == "odd branch"
    assert isinstance(three.result[even], Skipped)
    assert isinstance(three.result[after_even], Skipped)


def test_switch_and_ifelse(executor):
    from nbflow.tasks.control_flow import ifelse, switch

    with Flow("switch") as flow:
        p = parity(3)
        a, b = say("A"), say("B")
        switch(p, {"even": a, "odd": b})
        yes, no = say("yes"), say("no")
        ifelse(inc(-1), yes, no)
    r = flow.run(executor=executor).result
    assert isinstance(r[a], Skipped) and r[b].result == "B"
    assert isinstance(r[yes], Skipped) and r[no].result == "no"


@task(max_retries=1, retry_delay=0.2)
def second_try_reads(path):
    if context.get("task_run_count") == 1:
        raise RuntimeError("first run fails")
    with open(path) as f:
        return f.read()


@task
def write_file(path):
    with open(path, "w") as f:
        f.write("written")
    return 1


def test_retry_delay_waits_in_the_driver_not_in_a_worker(executor, tmp_path):
    """The delay frees the worker: a task submitted after the failing one runs
    during it (in-task sleeping ran the retry first on one thread), and the
    retry comes in the same executor session, with its downstream tasks."""
    path = str(tmp_path / "f")
    events = []
    with Flow("delay") as flow:
        again = second_try_reads(path)
        after = show(again)
        write_file(path)
        each = second_try_reads.map([path, path])
    state = flow.run(executor=executor, listeners=[events.extend])
    assert state.is_successful(), state.message
    assert state.result[after].result == "'written'"
    assert state.result[each].result == ["written", "written"]
    kinds = [e.new.name for e in events if getattr(e, "task", None) is again]
    assert kinds.count("Retrying") == 1 and kinds[-1] == "Success"
    assert "first run fails (retry 1 of 1)" in next(
        e.new.message for e in events
        if getattr(e, "task", None) is again and e.new.name == "Retrying")


@task(max_retries=1, retry_delay=600)
def fails_then_waits_long():
    raise RuntimeError("try later")


def test_cancel_during_a_retry_delay_ends_the_run_at_once(executor):
    import threading

    from nbflow.engine.runner import FlowRun

    with Flow("wait") as flow:
        t = fails_then_waits_long()
        inc(t)
    retrying = threading.Event()

    def listen(events):
        if any(getattr(e, "new", None) is not None and e.new.name == "Retrying"
               for e in events):
            retrying.set()

    run = FlowRun(flow, executor=executor, listeners=[listen]).start()
    assert retrying.wait(120), "the task never reached Retrying"
    run.cancel()
    state = run.join(120)
    assert state is not None, "the run still waits out its 600 s retry delay"
    assert state.is_cancelled()
    # Retrying, or Cancelled when the cancel came before the driver had it
    assert isinstance(state.result[t], (Retrying, Cancelled)), state.result[t]
