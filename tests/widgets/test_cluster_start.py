"""Starting an executor does not look frozen: the view says what happens (a
cluster starting, a connection, worker processes) with a running clock; the
dashboard link leads somewhere, or says its cluster is gone."""

from __future__ import annotations

import pickle

import pytest

from nbflow import Flow, task
from nbflow.engine.runner import FlowRun
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from nbflow.widgets import RunView
from nbflow.widgets.run_view import starting_text


def _inc(x):
    return x + 1


def _flow() -> Flow:
    inc = task(name="inc")(_inc)
    with Flow("f") as flow:
        inc(1)
    return flow


def test_starting_texts_say_what_happens():
    assert starting_text(LocalExecutor()) is None
    assert starting_text(LocalDaskExecutor(scheduler="threads")) is None
    assert starting_text(LocalDaskExecutor(scheduler="processes", num_workers=2)) == (
        "Starting 2 worker processes …")
    assert starting_text(DaskExecutor(cluster_kwargs={"n_workers": 3})) == (
        "Starting a temporary Dask cluster (LocalCluster with 3 workers) …")
    assert starting_text(DaskExecutor(address="tcp://127.0.0.1:8786")) == (
        "Connecting to the Dask cluster at tcp://127.0.0.1:8786 …")


def test_the_view_says_the_pool_is_starting_until_the_flow_starts():
    flow = _flow()
    view = RunView(flow)
    run = FlowRun(flow, executor=LocalDaskExecutor(scheduler="processes", num_workers=1),
                  listeners=[view])
    view.attach(run, cancellable=False)
    assert 'class="nbflow-starting">Starting 1 worker processes …<' in view.header.value
    assert "Pending" not in view.header.value
    assert run.run().is_successful()
    assert "nbflow-starting" not in view.header.value
    assert "nbflow-flow-state nbflow-state-success" in view.header.value


@pytest.mark.slow
def test_a_temporary_clusters_dashboard_says_it_is_gone_an_existing_ones_stays(
    dask_cluster,
):
    flow = _flow()
    view = RunView(flow)
    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False,
                                            "dashboard_address": "127.0.0.1:0"})
    run = FlowRun(flow, executor=executor, listeners=[view])
    view.attach(run, cancellable=False)
    assert "Starting a temporary Dask cluster" in view.header.value
    assert run.run().is_successful()
    assert 'class="nbflow-dashboard"' not in view.header.value
    assert "Dask dashboard (closed with its cluster)" in view.header.value
    assert "Dask dashboard (closed with its cluster)" in view.html()
    existing = DaskExecutor(address=dask_cluster.scheduler_address)
    view = RunView(flow, executor=existing)
    assert flow.run(executor=existing, listeners=[view]).is_successful()
    assert 'class="nbflow-dashboard" href="http' in view.header.value


def test_a_temporary_cluster_says_how_many_workers_are_up():
    flow = _flow()
    executor = DaskExecutor(cluster_kwargs={"n_workers": 2, "processes": False,
                                            "dashboard_address": "127.0.0.1:0"})
    said: list[str] = []
    executor.on_starting = said.append
    assert flow.run(executor=executor).is_successful()
    what = "Starting a temporary Dask cluster (LocalCluster)"
    assert said == [f"{what}: {n} of 2 workers up …" for n in range(3)], said
    assert pickle.loads(pickle.dumps(executor)).on_starting is None


def test_the_view_shows_workers_coming_up_until_the_flow_starts():
    flow = _flow()
    view = RunView(flow)
    executor = DaskExecutor(cluster_kwargs={"n_workers": 2, "processes": False,
                                            "dashboard_address": "127.0.0.1:0"})
    run = FlowRun(flow, executor=executor, listeners=[view])
    headers: list[str] = []
    view.header.observe(lambda change: headers.append(change["new"]), names="value")
    view.attach(run, cancellable=False)
    assert run.run().is_successful()
    up = [h for h in headers if "workers up" in h]
    assert any("2 of 2 workers up …</span> · " in h for h in up), headers
    assert up[0].index("nbflow-starting") > 0
    assert "workers up" not in view.header.value
    assert executor.on_starting is None  # the view let go of the executor
