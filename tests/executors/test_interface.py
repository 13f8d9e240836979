"""The Executor interface: Prefect 1's contract and the optional members."""

from __future__ import annotations

import contextlib
import logging

import pytest
from _flows import diamond_flow, inc

from nbflow import Flow
from nbflow.executors import DaskExecutor, Executor, LocalDaskExecutor, LocalExecutor
from nbflow.executors.base import calling_code, report_code, resolve_executor


class OnlyTheContract(Executor):
    """A user's executor written to Prefect 1's three methods, nothing else:
    no ``super().__init__()``, a ``start`` of its own, ``wait(futures)`` only.
    """

    def __init__(self):
        self.started = 0
        self.contexts = []

    @contextlib.contextmanager
    def start(self):
        self.started += 1
        yield

    def submit(self, fn, *args, extra_context=None, **kwargs):
        self.contexts.append(extra_context)
        return fn(*args, **kwargs)

    def wait(self, futures):
        return futures


def test_executor_base_can_be_instantiated_and_says_what_is_missing():
    ex = Executor()
    with ex.start():
        with pytest.raises(NotImplementedError, match="submit"):
            ex.submit(print, 1)
        with pytest.raises(NotImplementedError, match="wait"):
            ex.wait([])
    assert ex.crosses_processes is False
    assert ex.dashboard_link is None and ex.performance_report == ""


def test_a_subclass_with_only_start_submit_wait_runs_flows():
    flow, d = diamond_flow()
    with flow:
        mapped = inc.map([1, 2, 3])
    ex = OnlyTheContract()
    state = flow.run(executor=ex)
    assert state.is_successful(), state.message
    assert state.result[d].result == (1 + 2) + (2 + 10)
    assert state.result[mapped].result == [2, 3, 4]
    assert ex.started == 1
    # extra_context names the work for the executor, never reaches the function
    names = {c["task_name"] for c in ex.contexts}
    assert "inc" in names
    assert sorted(c["task_index"] for c in ex.contexts if "task_index" in c) == [0, 1, 2]


def test_local_executor_submit_outside_start_runs_the_function():
    assert LocalExecutor().submit(lambda x, y: x + y, 1, y=2) == 3


def _key_parts(key):
    return str(key).rsplit("-", 1)[0]


@pytest.mark.parametrize("kind", ["local-dask", "dask"])
def test_extra_context_becomes_the_key_and_never_reaches_fn(kind, request):
    if kind == "dask":
        address = request.getfixturevalue("dask_cluster").scheduler_address
        ex = DaskExecutor(address=address)
    else:
        ex = LocalDaskExecutor(num_workers=2)

    def takes_kwargs(**kwargs):
        return sorted(kwargs)

    with ex.start():
        future = ex.submit(
            takes_kwargs, a=1, extra_context={"task_name": "square", "task_index": 3}
        )
        assert ex.wait(future) == ["a"]
        assert _key_parts(future.key) == "square-3"
        plain = ex.submit(takes_kwargs)
        assert _key_parts(plain.key) == "takes_kwargs"


def test_crosses_processes_is_a_property_of_each_executor():
    assert LocalExecutor().crosses_processes is False
    assert LocalDaskExecutor("threads").crosses_processes is False
    assert LocalDaskExecutor("processes").crosses_processes is True
    assert DaskExecutor().crosses_processes is True


def test_performance_report_reads_the_file_whenever_it_exists(tmp_path):
    path = tmp_path / "report.html"
    ex = DaskExecutor(performance_report_path=path)
    assert ex.performance_report == ""
    path.write_text("<html>the report</html>", encoding="utf-8")
    assert ex.performance_report == "<html>the report</html>"
    assert DaskExecutor().performance_report == ""


def test_resolve_executor_is_the_one_default():
    mine = LocalDaskExecutor()
    assert resolve_executor(None, mine) is mine
    assert repr(resolve_executor(None, None)) == "LocalExecutor()"
    flow = Flow("f")
    assert flow.executor is None  # resolved at run time, not stored


def test_report_code_is_set_for_its_block_only():
    assert calling_code() is None
    with report_code("x = 1"):
        assert calling_code() == "x = 1"
    assert calling_code() is None


def test_dask_cluster_class_resolves_to_the_class():
    import distributed

    assert DaskExecutor().cluster_class is distributed.LocalCluster
    named = DaskExecutor(cluster_class="distributed.LocalCluster")
    assert named.cluster_class is distributed.LocalCluster
    assert repr(named) == "DaskExecutor(cluster_class='distributed.LocalCluster')"
    assert repr(DaskExecutor()) == "DaskExecutor()"


@pytest.mark.parametrize("debug, level", [(False, "ERROR"), (True, "WARNING")])
def test_debug_sets_silence_logs(debug, level):
    from distributed import LocalCluster

    seen = []

    class Recording(LocalCluster):
        def __init__(self, **kwargs):
            seen.append(kwargs.get("silence_logs"))
            super().__init__(**kwargs)

    ex = DaskExecutor(
        cluster_class=Recording,
        cluster_kwargs={"n_workers": 1, "processes": False},
        debug=debug,
    )
    with ex.start():
        pass
    assert seen == [getattr(logging, level)]
