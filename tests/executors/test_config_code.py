"""The executor config as code, as a dict, from an executor; cluster inspection."""

from __future__ import annotations

import json
import types

import pytest
from _configs import tls, write_pem_files

from nbflow.errors import ClusterConnectionError
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from nbflow.executors.config import ExecutorConfig, ExecutorConfigError, inspect_cluster


@pytest.fixture
def pem_files(tmp_path):
    return write_pem_files(tmp_path)


# -- code ----------------------------------------------------------------------------


def test_config_code_for_each_kind():
    assert ExecutorConfig().code() == (
        "from nbflow.executors import LocalExecutor\n\nflow.executor = LocalExecutor()"
    )
    assert ExecutorConfig(kind="local-dask", scheduler="processes", num_workers=8).code(
        imports=False
    ) == ('flow.executor = LocalDaskExecutor(scheduler="processes", num_workers=8)')
    assert ExecutorConfig(
        kind="dask",
        n_workers=4,
        threads_per_worker=2,
        performance_report=True,
        performance_report_path="report.html",
    ).code() == (
        "from nbflow.executors import DaskExecutor\n\n"
        "flow.executor = DaskExecutor(\n"
        '    cluster_kwargs={"n_workers": 4, "threads_per_worker": 2},\n'
        '    performance_report_path="report.html",\n'
        ")"
    )
    assert ExecutorConfig(
        kind="dask", cluster="existing", address="tcp://10.0.0.5:8786"
    ).code("ex", imports=False) == ('ex = DaskExecutor(address="tcp://10.0.0.5:8786")')


def test_config_code_for_tls_shows_paths_and_imports_security(pem_files):
    code = tls(pem_files).code()
    assert code.startswith(
        "from distributed import Security\n"
        "from nbflow.executors import DaskExecutor\n\n"
    )
    assert f'tls_client_key="{pem_files["client.key"]}"' in code
    assert "require_encryption=True" in code


ROUND_TRIP = {
    "local": dict(),
    "threads": dict(kind="local-dask", num_workers=2),
    "processes": dict(kind="local-dask", scheduler="processes", num_workers=5),
    "synchronous": dict(kind="local-dask", scheduler="synchronous", num_workers=1),
    "temporary": dict(kind="dask", n_workers=4, threads_per_worker=2),
    "default cluster": dict(kind="dask"),
    "cluster_class": dict(
        kind="dask",
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "processes": False,
            "name": 'q"uote',
            "resources": {"GPU": 1},
            "env": {"x": [1, None]},  # nested values round-trip
        },
    ),
    "adaptive": dict(
        kind="dask", cluster="adaptive", minimum=1, maximum=10, n_workers=1
    ),
    "existing": dict(
        kind="dask", cluster="existing", address="tcp://10.0.0.5:8786", debug=True
    ),
    "report": dict(
        kind="dask", performance_report=True, performance_report_path="report.html"
    ),
}


@pytest.mark.parametrize("fields", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_config_code_reproduces_the_executor(fields):
    config = ExecutorConfig(**fields)
    namespace = {"flow": types.SimpleNamespace(executor=None)}
    exec(config.code(), namespace)
    pasted = namespace["flow"].executor
    assert type(pasted) is type(config.build())
    assert repr(pasted) == repr(config.build())
    assert ExecutorConfig.from_executor(pasted) == config


def test_config_code_reproduces_the_tls_executor(pem_files):
    namespace = {"flow": types.SimpleNamespace(executor=None)}
    exec(tls(pem_files).code(), namespace)
    assert repr(namespace["flow"].executor) == repr(tls(pem_files).build())
    assert ExecutorConfig.from_executor(namespace["flow"].executor) == tls(pem_files)


# -- dicts and executors -------------------------------------------------------------


@pytest.mark.parametrize("fields", ROUND_TRIP.values(), ids=ROUND_TRIP.keys())
def test_config_dict_round_trips_through_json(fields):
    config = ExecutorConfig(**fields)
    data = json.loads(json.dumps(config.to_dict()))
    assert ExecutorConfig.from_dict(data) == config


def test_config_dict_keeps_settings_of_other_kinds_and_rejects_unknown_keys():
    config = ExecutorConfig(kind="local", num_workers=3, address="tcp://h:1")
    assert ExecutorConfig.from_dict(config.to_dict()) == config
    assert ExecutorConfig.from_dict({"kind": "dask"}) == ExecutorConfig(kind="dask")
    with pytest.raises(
        ExecutorConfigError,
        match=r"Unknown executor config keys "
        r"\['workers'\]",
    ):
        ExecutorConfig.from_dict({"workers": 3})


def test_config_from_executor_reads_each_kind():
    from distributed import LocalCluster

    assert ExecutorConfig.from_executor(None) == ExecutorConfig()
    assert ExecutorConfig.from_executor(LocalExecutor()) == ExecutorConfig()
    assert ExecutorConfig.from_executor(LocalDaskExecutor("multiprocessing", 3)) == (
        ExecutorConfig(kind="local-dask", scheduler="processes", num_workers=3)
    )
    config = ExecutorConfig.from_executor(
        DaskExecutor(
            cluster_class=LocalCluster,
            adapt_kwargs={"maximum": 3},
            cluster_kwargs={"n_workers": 1, "processes": False},
            performance_report_path="r.html",
        )
    )
    assert config == ExecutorConfig(
        kind="dask",
        cluster="adaptive",
        maximum=3,
        n_workers=1,
        cluster_class="distributed.deploy.local.LocalCluster",
        cluster_kwargs={"processes": False},
        performance_report=True,
        performance_report_path="r.html",
    )
    assert config.problem() is None


@pytest.mark.parametrize(
    "executor, what",
    [
        (lambda: LocalDaskExecutor(chunksize=2), "scheduler keywords"),
        (lambda: DaskExecutor(adapt_kwargs={"interval": "1s"}), "adapt_kwargs"),
        (
            lambda: DaskExecutor(address="tcp://h:1", client_kwargs={"name": "x"}),
            "client_kwargs",
        ),
        (lambda: DaskExecutor(cluster_class=lambda: None), "cluster_class"),
    ],
)
def test_config_from_executor_refuses_what_it_cannot_hold(executor, what):
    with pytest.raises(
        ExecutorConfigError,
        match=f"{what}.*which an ExecutorConfig "
        "cannot hold; set flow.executor in Python",
    ):
        ExecutorConfig.from_executor(executor())


# -- cluster inspection -----------------------------------------------------------


@pytest.mark.slow
def test_inspect_cluster_reports_workers_threads_memory(existing_cluster):
    # The session's real `dask scheduler` with two one-thread `dask worker`s.
    summary = inspect_cluster(existing_cluster, timeout=30)
    assert (summary.address, summary.workers, summary.threads) == (
        existing_cluster,
        2,
        2,
    )
    assert summary.memory > 0
    assert summary.describe().startswith("2 workers, 2 threads, ")


def test_inspect_cluster_unreachable_raises_connection_error():
    with pytest.raises(
        ClusterConnectionError,
        match=r"Could not connect to the Dask "
        r"scheduler at 'tcp://127.0.0.1:1'",
    ):
        inspect_cluster("tcp://127.0.0.1:1", timeout=1)
