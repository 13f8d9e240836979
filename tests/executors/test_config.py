"""The executor config: vocabulary, every invalid setting, building; no ipywidgets."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _configs import own_message, tls, write_pem_files

from nbflow import Flow, task
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from nbflow.executors.config import (
    CLUSTER_MODES,
    KINDS,
    ExecutorConfig,
    ExecutorConfigError,
    normalize_cluster_mode,
    normalize_kind,
)


@pytest.fixture
def pem_files(tmp_path):
    return write_pem_files(tmp_path)


# -- vocabulary --------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, kind",
    [
        ("local", "local"),
        ("LocalExecutor", "local"),
        ("local_dask", "local-dask"),
        ("LocalDaskExecutor", "local-dask"),
        ("Dask", "dask"),
        ("distributed", "dask"),
    ],
)
def test_normalize_kind_accepts_aliases(alias, kind):
    assert normalize_kind(alias) == kind
    assert ExecutorConfig(kind=alias).kind == kind


def test_normalize_kind_rejects_unknown_with_choices():
    with pytest.raises(
        ExecutorConfigError,
        match=r"Unknown executor kind 'ray'; "
        r"expected one of 'local', 'local-dask', 'dask'\.",
    ):
        normalize_kind("ray")


def test_normalize_cluster_mode_accepts_aliases_and_rejects_unknown():
    assert normalize_cluster_mode("adapt") == "adaptive"
    assert ExecutorConfig(cluster="address").cluster == "existing"
    assert CLUSTER_MODES == ("temporary", "adaptive", "existing")
    assert KINDS == ("local", "local-dask", "dask")
    with pytest.raises(ValueError, match="Unknown cluster mode 'huge'"):
        normalize_cluster_mode("huge")


def test_config_normalises_scheduler_alias_and_blank_text():
    config = ExecutorConfig(
        kind="local-dask",
        scheduler="multiprocessing",
        address="  ",
        performance_report_path="",
    )
    assert config.scheduler == "processes"
    assert config.address is None and config.performance_report_path is None


# -- every invalid setting ---------------------------------------------------------

INVALID = {
    "unknown kind": (dict(kind="ray"), "Unknown executor kind 'ray'"),
    "unknown scheduler": (
        dict(kind="local-dask", scheduler="gpu"),
        "Unknown scheduler 'gpu'",
    ),
    "num_workers 0": (
        dict(kind="local-dask", num_workers=0),
        "num_workers must be a whole number >= 1, got 0",
    ),
    "num_workers text": (
        dict(kind="local-dask", num_workers="4"),
        "num_workers must be a whole number >= 1, got '4'",
    ),
    "unknown mode": (dict(kind="dask", cluster="huge"), "Unknown cluster mode 'huge'"),
    "n_workers negative": (
        dict(kind="dask", n_workers=-1),
        "n_workers must be a whole number >= 0, got -1",
    ),
    "threads 0": (
        dict(kind="dask", threads_per_worker=0),
        "threads_per_worker must be a whole number >= 1, got 0",
    ),
    "n_workers twice": (
        dict(kind="dask", n_workers=3, cluster_kwargs={"n_workers": 2}),
        "n_workers is given both as 3 and in cluster_kwargs as 2",
    ),
    "cluster_kwargs list": (
        dict(kind="dask", cluster_kwargs=[1]),
        "cluster_kwargs must be a dict with string keys, got [1]",
    ),
    "cluster_kwargs not json": (
        dict(kind="dask", cluster_kwargs={"x": {1, 2}}),
        "is not JSON-able",
    ),
    "cluster_class missing": (
        dict(kind="dask", cluster_class="nope.Cluster"),
        "Could not import cluster_class 'nope.Cluster'",
    ),
    "min above max": (
        dict(kind="dask", cluster="adaptive", minimum=5, maximum=2),
        "minimum 5 is above maximum 2; make minimum <= maximum.",
    ),
    "min negative": (
        dict(kind="dask", cluster="adaptive", minimum=-1),
        "must be a number >= 0, got -1",
    ),
    "existing without address": (
        dict(kind="dask", cluster="existing"),
        "Cluster mode 'existing' needs the scheduler's address",
    ),
    "malformed address": (
        dict(kind="dask", cluster="existing", address="10.0.0.5"),
        "Malformed scheduler address '10.0.0.5'",
    ),
    "report without path": (
        dict(kind="dask", performance_report=True),
        "performance_report is on but performance_report_path is empty",
    ),
    "report folder missing": (
        dict(
            kind="dask",
            performance_report=True,
            performance_report_path="/no/such/dir/r.html",
        ),
        "The folder of performance_report_path '/no/such/dir/r.html' does not exist",
    ),
    "report path not text": (
        dict(kind="dask", performance_report=True, performance_report_path=5),
        "performance_report_path must be a path string, got 5",
    ),
    "tls address without files": (
        dict(kind="dask", cluster="existing", address="tls://127.0.0.1:8786"),
        "address 'tls://127.0.0.1:8786' is a TLS scheduler",
    ),
    "tls key without cert": (
        dict(
            kind="dask",
            cluster="existing",
            address="tls://127.0.0.1:8786",
            tls_client_key="/x/client.key",
        ),
        "tls_client_key given without tls_client_cert",
    ),
    "tls cert without ca": (
        dict(
            kind="dask",
            cluster="existing",
            address="tls://127.0.0.1:8786",
            tls_client_cert="/x/client.pem",
        ),
        "tls_client_cert given without tls_ca_file",
    ),
    "tls files missing": (
        dict(
            kind="dask",
            cluster="existing",
            address="tls://127.0.0.1:8786",
            tls_ca_file="/x/ca.pem",
            tls_client_cert="/x/c.pem",
        ),
        "tls_ca_file '/x/ca.pem' is not a file",
    ),
}


@pytest.mark.parametrize("fields, message", INVALID.values(), ids=INVALID.keys())
def test_config_problem_names_every_invalid_setting(fields, message):
    config = ExecutorConfig(**fields)
    problem = config.problem()
    assert problem is not None and message in problem
    assert problem.endswith(".") and "\n" not in problem
    with pytest.raises(ExecutorConfigError) as info:
        config.build()
    assert str(info.value) == problem
    assert isinstance(info.value, ValueError)
    with pytest.raises(ExecutorConfigError) as info:
        config.code()
    assert str(info.value) == problem


def test_config_tls_files_with_tcp_address_is_a_problem(pem_files):
    config = ExecutorConfig.from_dict(
        {**tls(pem_files).to_dict(), "address": "tcp://127.0.0.1:8786"}
    )
    assert "address 'tcp://127.0.0.1:8786' is not tls://" in config.problem()


def test_config_problems_reuse_the_executors_own_messages():
    assert ExecutorConfig(kind="local-dask", num_workers=0).problem() == own_message(
        lambda: LocalDaskExecutor(num_workers=0)
    )
    assert ExecutorConfig(kind="local-dask", scheduler="gpu").problem() == own_message(
        lambda: LocalDaskExecutor("gpu")
    )
    assert ExecutorConfig(
        kind="dask", cluster="existing", address="nope:"
    ).problem() == own_message(lambda: DaskExecutor(address="nope:"))
    assert ExecutorConfig(kind="dask", cluster_class="nope.X").problem() == own_message(
        lambda: DaskExecutor(cluster_class="nope.X")
    )


def test_config_ignores_settings_of_other_kinds():
    config = ExecutorConfig(
        kind="local",
        num_workers=0,
        address="bad",
        minimum=9,
        maximum=1,
        performance_report=True,
    )
    assert config.problem() is None
    assert type(config.build()) is LocalExecutor
    temporary = ExecutorConfig(kind="dask", address="bad", tls_client_key="/x")
    assert temporary.problem() is None
    assert repr(temporary.build()) == "DaskExecutor()"


# -- build ---------------------------------------------------------------------------


def test_config_builds_local_executor_by_default():
    assert ExecutorConfig().problem() is None
    assert type(ExecutorConfig().build()) is LocalExecutor


def test_config_builds_local_dask_executor():
    executor = ExecutorConfig(
        kind="local-dask", scheduler="processes", num_workers=3
    ).build()
    assert type(executor) is LocalDaskExecutor
    assert (executor.scheduler, executor.num_workers) == ("processes", 3)


def test_config_builds_temporary_dask_executor(tmp_path):
    report = str(tmp_path / "report.html")
    executor = ExecutorConfig(
        kind="dask",
        n_workers=4,
        threads_per_worker=2,
        cluster_kwargs={"processes": False},
        performance_report=True,
        performance_report_path=report,
        debug=True,
    ).build()
    assert type(executor) is DaskExecutor
    assert executor.address is None and "cluster_class" not in repr(executor)
    assert executor.cluster_kwargs == {
        "n_workers": 4,
        "threads_per_worker": 2,
        "processes": False,
    }
    assert executor.adapt_kwargs == {} and executor.debug is True
    assert executor.performance_report_path == report


def test_config_builds_adaptive_dask_executor():
    executor = ExecutorConfig(
        kind="dask",
        cluster="adaptive",
        minimum=1,
        maximum=10,
        cluster_class="distributed.LocalCluster",
    ).build()
    assert executor.adapt_kwargs == {"minimum": 1, "maximum": 10}
    assert "cluster_class='distributed.LocalCluster'" in repr(executor)
    unbounded = ExecutorConfig(kind="dask", cluster="adaptive").build()
    assert unbounded.adapt_kwargs == {"minimum": 0}


def test_config_builds_existing_dask_executor_with_tls(pem_files):
    from distributed import Security

    executor = tls(pem_files).build()
    assert executor.address == "tls://127.0.0.1:8786"
    assert executor.cluster_kwargs == {} and executor.adapt_kwargs == {}
    security = executor.client_kwargs["security"]
    assert isinstance(security, Security) and security.require_encryption
    assert security.tls_ca_file == pem_files["ca.pem"]
    assert security.tls_client_cert == pem_files["client.pem"]
    assert security.tls_client_key == pem_files["client.key"]
    assert tls(pem_files).client_kwargs()["security"].tls_ca_file == pem_files["ca.pem"]


def test_config_worker_timeout_applies_to_an_existing_cluster():
    address = "tcp://127.0.0.1:8786"
    config = ExecutorConfig(
        kind="dask", cluster="existing", address=address, worker_timeout=5
    )
    assert config.build().worker_timeout == 5.0
    assert config.code(imports=False) == (
        f'flow.executor = DaskExecutor(address="{address}", worker_timeout=5)'
    )
    assert ExecutorConfig.from_executor(config.build()) == config
    never = ExecutorConfig.from_executor(
        DaskExecutor(address=address, worker_timeout=None)
    )
    assert never.worker_timeout is None and never.build().worker_timeout is None
    # the default is not written out; a temporary cluster does not use it
    assert ExecutorConfig(kind="dask", cluster="existing", address=address).code(
        imports=False
    ) == f'flow.executor = DaskExecutor(address="{address}")'
    temporary = ExecutorConfig(kind="dask", worker_timeout=-1)
    assert temporary.problem() is None and "worker_timeout" not in temporary.code()
    assert not temporary.applies("worker_timeout") and config.applies("worker_timeout")


@pytest.mark.parametrize("value", [-1, float("inf"), "5", True])
def test_config_worker_timeout_has_the_executors_one_message(value):
    address = "tcp://127.0.0.1:8786"
    expected = (
        "worker_timeout must be a number of seconds >= 0, or None not to wait, "
        f"got {value!r}."
    )
    assert own_message(
        lambda: DaskExecutor(address=address, worker_timeout=value)
    ) == expected
    config = ExecutorConfig(
        kind="dask", cluster="existing", address=address, worker_timeout=value
    )
    assert config.problem() == expected


# -- imports ------------------------------------------------------------


def test_config_module_imports_standard_library_only():
    code = (
        "import sys, nbflow.executors.config, nbflow.executors.cluster_info\n"
        "bad = [m for m in ('dask', 'distributed', 'ipywidgets', 'IPython') "
        "if m in sys.modules]\nassert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- built executors run -------------------------------------------------------------


@task
def _square(x):
    return x * x


@pytest.mark.parametrize(
    "fields",
    [
        dict(),
        dict(kind="local-dask", num_workers=2),
        pytest.param(
            dict(
                kind="dask",
                n_workers=1,
                threads_per_worker=2,
                cluster_kwargs={"processes": False},
                performance_report=True,
            ),
            marks=pytest.mark.slow,
            id="dask-report",
        ),
    ],
    ids=lambda f: f.get("kind", "local") if isinstance(f, dict) else None,
)
def test_config_built_executor_runs_a_flow(fields, tmp_path, no_leaked_processes):
    if fields.get("performance_report"):
        fields = {**fields, "performance_report_path": str(tmp_path / "report.html")}
    executor = ExecutorConfig(**fields).build()
    with Flow("squares") as flow:
        squares = _square.map([1, 2, 3])
    state = flow.run(executor=executor)
    assert state.is_successful(), state.message
    assert state.result[squares].result == [1, 4, 9]
    if fields.get("performance_report"):
        assert "<html" in executor.performance_report.lower()
        assert (tmp_path / "report.html").exists()
