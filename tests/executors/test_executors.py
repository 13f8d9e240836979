"""Executor configuration, errors, pickling, reports and process hygiene."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time

import pytest
from _flows import diamond_flow

from nbflow import Flow, task
from nbflow.engine.events import FlowStarted
from nbflow.errors import ClusterConnectionError, ExecutorNotStartedError, NbflowError
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LocalDaskExecutor("bogus"),
         "Unknown scheduler 'bogus'; expected one of 'threads', 'processes', 'synchronous'."),
        (lambda: LocalDaskExecutor(num_workers=0),
         "num_workers must be a whole number >= 1, got 0"),
        (lambda: LocalDaskExecutor(num_workers="4"),
         "num_workers must be a whole number >= 1, got '4'"),
        (lambda: DaskExecutor(cluster_class="nope.Cluster"),
         "Could not import cluster_class 'nope.Cluster'"),
        (lambda: DaskExecutor(cluster_class="distributed.NoSuchCluster"),
         "Could not import cluster_class 'distributed.NoSuchCluster'"),
        (lambda: DaskExecutor(adapt_kwargs={"minimum": 5, "maximum": 2}),
         "adapt_kwargs minimum 5 is above maximum 2"),
        (lambda: DaskExecutor(adapt_kwargs={"minimum": 1, "max": 2}),
         "Unknown adapt_kwargs ['max']"),
        (lambda: DaskExecutor(adapt_kwargs={"minimum": -1}),
         "adapt_kwargs['minimum'] must be a number >= 0"),
        (lambda: DaskExecutor(address="localhost"),
         "Malformed scheduler address 'localhost'; expected 'tcp://HOST:PORT'"),
        (lambda: DaskExecutor(address="tcp://host:port"),
         "Malformed scheduler address 'tcp://host:port'"),
        (lambda: DaskExecutor(address="tcp://127.0.0.1:8786", cluster_class="distributed.LocalCluster"),
         "cannot be given with it"),
        (lambda: DaskExecutor(cluster_kwargs=[1]), "cluster_kwargs must be a dict"),
    ],
)
def test_bad_options_are_refused_at_construction(make, message):
    with pytest.raises(NbflowError) as info:
        make()
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_scheduler_aliases_and_defaults():
    assert LocalDaskExecutor("multiprocessing").scheduler == "processes"
    assert LocalDaskExecutor("sync").scheduler == "synchronous"
    assert LocalDaskExecutor().scheduler == "threads"
    assert LocalDaskExecutor().num_workers == os.cpu_count()


@pytest.mark.parametrize(
    "executor",
    [LocalExecutor(), LocalDaskExecutor("processes", num_workers=3),
     DaskExecutor(cluster_kwargs={"n_workers": 4, "threads_per_worker": 2},
                  adapt_kwargs={"minimum": 1, "maximum": 10},
                  performance_report_path="/tmp/report.html")],
    ids=repr,
)
def test_executors_are_picklable_configuration_with_readable_repr(executor):
    copy = pickle.loads(pickle.dumps(executor))
    assert repr(copy) == repr(executor)
    assert type(executor).__name__ + "(" in repr(executor)


def test_repr_shows_configuration():
    assert repr(DaskExecutor(address="tcp://127.0.0.1:8786")) == (
        "DaskExecutor(address='tcp://127.0.0.1:8786')")
    assert repr(LocalDaskExecutor("processes", num_workers=8)) == (
        "LocalDaskExecutor(scheduler='processes', num_workers=8)")


def test_submit_without_start_is_a_clear_error():
    with pytest.raises(ExecutorNotStartedError, match="is not started; call submit"):
        LocalDaskExecutor().submit(print, 1)


def test_executor_interface_resolves_nested_futures():
    ex = LocalDaskExecutor("threads", num_workers=2)
    with ex.start():
        a = ex.submit(lambda: 1)
        b = ex.submit(lambda x: x + 1, a)
        c = ex.submit(lambda xs: sum(xs), [a, b])
        assert ex.wait({"a": a, "rest": [b, (c,)]}) == {"a": 1, "rest": [2, (3,)]}
        bad = ex.submit(lambda: 1 / 0)
        assert isinstance(ex.wait([bad], return_exceptions=True)[0], ZeroDivisionError)
        with pytest.raises(ZeroDivisionError):
            ex.wait(bad)
    # picklable again after the run, with nothing of the run kept
    assert pickle.loads(pickle.dumps(ex)).num_workers == 2


def _add(x, y):
    return x + y


@pytest.mark.parametrize("kind", ["threads", "dask"])
def test_submit_map_submits_children_in_order(kind, request):
    if kind == "dask":
        cluster = request.getfixturevalue("dask_cluster")
        ex = DaskExecutor(address=cluster.scheduler_address)
    else:
        ex = LocalDaskExecutor(num_workers=2)
    with ex.start():
        ten = ex.submit(_add, 4, 6)
        children = ex.submit_map(
            _add, [(i, ten) for i in range(5)], extra_context={"task_name": "add"}
        )
        assert ex.wait(children) == [10, 11, 12, 13, 14]
        assert ex.submit_map(_add, []) == []
        if kind == "dask":
            # one Client.map: the children share a key prefix, numbered in order
            prefixes = {c.key.rpartition("-")[0] for c in children}
            assert len(prefixes) == 1 and prefixes.pop().startswith("add-")
            assert [c.key.rpartition("-")[2] for c in children] == list("01234")


@pytest.mark.slow
def test_unreachable_scheduler_is_a_clear_error_within_seconds():
    flow, _ = diamond_flow()
    start = time.monotonic()
    with pytest.raises(ClusterConnectionError) as info:
        flow.run(executor=DaskExecutor(address="tcp://127.0.0.1:1"))
    assert "Could not connect to the Dask scheduler at 'tcp://127.0.0.1:1'" in str(info.value)
    assert time.monotonic() - start < 60  # a hang would hit the test timeout instead


@pytest.mark.slow
def test_performance_report_written_and_read_in_terminal_state_handler(tmp_path, no_leaked_processes):
    path = tmp_path / "report.html"
    seen = {}

    def handler(flow, state, reference_states):
        seen["html"] = flow.executor.performance_report
        seen["file"] = path.read_text()

    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False},
                            performance_report_path=path)
    assert executor.performance_report == ""
    flow, _ = diamond_flow()
    flow.executor = executor
    flow.terminal_state_handler = handler
    assert flow.run().is_successful()  # marker-for-the-calling-code-tab
    assert seen["html"] == seen["file"]
    # "Calling Code" shows this test (the caller of flow.run), not nbflow's code
    assert "marker-for-the-calling-code-tab" in seen["html"]
    assert "def quiet" + "_report" not in seen["html"]  # (split: this line is in it)
    assert "<html" in seen["html"].lower() and "Bokeh" in seen["html"]
    # inline resources: it draws offline
    assert '<script type="text/javascript" src="https://cdn.bokeh.org' not in seen["html"]
    assert len(seen["html"]) > 500_000


@pytest.mark.slow
def test_dashboard_link_while_running_and_loopback_only(no_leaked_processes):
    links = []
    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1})
    flow, _ = diamond_flow()
    flow.run(executor=executor, listeners=[
        lambda events: links.extend(e.dashboard_link for e in events if isinstance(e, FlowStarted))
    ])
    assert links and links[0].startswith("http://127.0.0.1:")
    assert executor.dashboard_link is None


@pytest.mark.slow
def test_functions_defined_in_main_travel_to_processes(tmp_path, no_leaked_processes):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        from nbflow import Flow, task
        from nbflow.executors import LocalDaskExecutor

        OFFSET = 100

        class Box:
            def __init__(self, v):
                self.v = v

        @task
        def boxed(x):
            return Box(x + OFFSET)

        @task
        def unbox(b):
            return b.v

        if __name__ == "__main__":
            with Flow("main") as flow:
                out = unbox.map(boxed.map([1, 2, 3]))
            state = flow.run(executor=LocalDaskExecutor("processes", num_workers=2))
            print(state.result[out].result)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[101, 102, 103]"


def test_failing_main_function_traceback_shows_source_from_processes(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        from nbflow import Flow, task
        from nbflow.executors import LocalDaskExecutor

        @task
        def bad(x):
            return x / 0  # the line to see

        if __name__ == "__main__":
            with Flow("main") as flow:
                b = bad(1)
            state = flow.run(executor=LocalDaskExecutor("processes", num_workers=1))
            print(state.result[b].traceback)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert "return x / 0  # the line to see" in done.stdout, done.stdout + done.stderr
    assert str(script) in done.stdout


def test_temporary_cluster_and_pool_leave_no_process(no_leaked_processes):
    """The fixture checks; a process pool and an in-process cluster are started."""
    @task
    def pid():
        return os.getpid()

    with Flow("pids") as flow:
        p = pid()
    state = flow.run(executor=LocalDaskExecutor("processes", num_workers=2))
    assert state.result[p].result != os.getpid()
