"""Where each task ran (a thread, a pool process, a Dask worker), as the run
state records it for the run timeline."""

from __future__ import annotations

import re

import pytest

from nbflow import Flow, task
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from nbflow.widgets import RunState


def _inc(x):
    return x + 1


inc = task(name="inc")(_inc)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("local", r"MainThread"),
        ("threads", r"nbflow-dask-\d"),
        ("processes", r"pid \d+"),
        ("dask", r"tcp://127\.0\.0\.1:\d+"),
    ],
)
def test_run_state_knows_where_each_task_ran(kind, expected, request):
    if kind == "dask":
        dask_cluster = request.getfixturevalue("dask_cluster")

    executor = {
        "local": LocalExecutor,
        "threads": lambda: LocalDaskExecutor(num_workers=2),
        "processes": lambda: LocalDaskExecutor(scheduler="processes", num_workers=2),
        "dask": lambda: DaskExecutor(address=dask_cluster.scheduler_address),
    }[kind]()
    with Flow("where") as flow:
        inc.map(inc.map(range(4)))
        inc(1)
    run_state = RunState()
    assert flow.run(executor=executor, listeners=[run_state]).is_successful()
    single = [t for t in run_state.snapshot().tasks if t.size is None]
    mapped = [t for t in run_state.snapshot().tasks if t.size is not None]
    assert single and all(re.fullmatch(expected, t.where) for t in single)
    for t in mapped:
        assert len(t.spans) == 4
        assert all(re.fullmatch(expected, where) for *_, where in t.spans)
        assert t.where is None  # a mapped parent runs nowhere itself


def _ones(mb):
    import numpy as np

    return np.ones(mb * 2**20 // 8)


def _length(values):
    return len(values)


def _flow_of_big_values():
    ones, length = task(name="ones")(_ones), task(name="length")(_length)
    with Flow("big values") as flow:
        big = ones(16)
        length(big)
        length(ones.map([1, 1]))
    return flow


def test_the_run_view_shows_where_each_value_lives_and_its_size(dask_cluster):
    from nbflow.widgets import RunView

    flow = _flow_of_big_values()
    view = RunView(flow)
    state = flow.run(executor=DaskExecutor(address=dask_cluster.scheduler_address),
                     listeners=[view])
    assert state.is_successful(), state.message
    table = view.table.value
    assert "<th>data</th>" in table
    # 16 MiB stayed where it was made; the reference task's value came here;
    # the two children of the map stayed, 1 MiB each.
    assert '<td class="nbflow-lives">on cluster, 16.8 MB</td>' in table
    assert '<td class="nbflow-lives">here</td>' in table
    assert '<td class="nbflow-lives">on cluster, 2.1 MB</td>' in table


def test_the_run_view_has_no_data_column_when_every_value_is_here():
    from nbflow.widgets import RunView

    flow = _flow_of_big_values()
    view = RunView(flow)
    assert flow.run(listeners=[view]).is_successful()
    assert "<th>data</th>" not in view.table.value


def test_the_run_view_says_values_of_a_temporary_cluster_were_not_kept():
    from nbflow.widgets import RunView

    flow = _flow_of_big_values()
    view = RunView(flow)
    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False})
    assert flow.run(executor=executor, listeners=[view]).is_successful()
    table = view.table.value
    assert '<td class="nbflow-lives">not kept</td>' in table
    assert '<td class="nbflow-lives">here</td>' in table
    assert "on cluster" not in table
