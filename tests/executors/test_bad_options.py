"""Executor options that cannot work are refused when the executor is made."""

from __future__ import annotations

import os
import sys

import pytest
from _cli import assert_usage_error, run

from nbflow.errors import NbflowError
from nbflow.executors import DaskExecutor, LocalDaskExecutor


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_worker": 2}, "Unknown cluster_kwargs ['n_worker'] for LocalCluster; "),
        ({"threads_per_worker": "2"},
         "cluster_kwargs['threads_per_worker'] must be a whole number >= 1, got '2'."),
        ({"n_workers": -1}, "cluster_kwargs['n_workers'] must be a whole number >= 0"),
        ({"processes": "no"}, "cluster_kwargs['processes'] must be True or False"),
        ({"scheduler_kwargs": {"idle_timeot": 3}},
         "Unknown scheduler_kwargs ['idle_timeot'] in cluster_kwargs;"),
        ({"n_workers": 0}, "cluster_kwargs['n_workers'] is 0 and the cluster does not "
         "adapt, so no task would ever run;"),
    ],
)
def test_bad_cluster_kwargs_refused_when_made(kwargs, message):
    with pytest.raises(NbflowError) as info:
        DaskExecutor(cluster_kwargs=kwargs)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(NbflowError):
        DaskExecutor(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)


def test_cluster_kwargs_localcluster_passes_on_are_accepted():
    # Its own, its workers' and nannies' (through **worker_kwargs), the scheduler's.
    kwargs = {
        "n_workers": 2, "threads_per_worker": 1, "processes": False,
        "memory_limit": "1GiB", "dashboard_address": "127.0.0.1:0",
        "lifetime": "1h", "death_timeout": 30, "env": {"A": "1"},
        "resources": {"GPU": 1}, "scheduler_kwargs": {"idle_timeout": 60},
    }
    assert DaskExecutor(cluster_kwargs=kwargs).cluster_kwargs == kwargs
    assert DaskExecutor(cluster_kwargs={"n_workers": 0}, adapt_kwargs={"maximum": 2})


def test_cluster_kwargs_of_a_users_cluster_class_pass_through():
    def my_cluster(**kwargs):  # pragma: no cover - never started here
        raise AssertionError

    executor = DaskExecutor(cluster_class=my_cluster, cluster_kwargs={"n_worker": 2})
    assert executor.cluster_kwargs == {"n_worker": 2}
    executor = DaskExecutor(
        cluster_class="distributed.SpecCluster", cluster_kwargs={"workers": {}}
    )
    assert executor.cluster_kwargs == {"workers": {}}


def test_unknown_local_dask_options_refused():
    with pytest.raises(TypeError) as info:
        LocalDaskExecutor(scheduler="threads", num_worker=4)
    assert isinstance(info.value, NbflowError)
    assert str(info.value).startswith(
        "Unknown LocalDaskExecutor options ['num_worker'] for scheduler 'threads';"
    )
    assert LocalDaskExecutor("processes", chunksize=2).kwargs == {"chunksize": 2}


def test_performance_report_path_checked_when_made(tmp_path):
    with pytest.raises(NbflowError, match=r"is a folder; give a file path"):
        DaskExecutor(performance_report_path=tmp_path)
    missing = tmp_path / "missing" / "report.html"
    with pytest.raises(NbflowError, match=r"is in a folder that does not exist"):
        DaskExecutor(performance_report_path=missing)
    assert DaskExecutor(performance_report_path=tmp_path / "r.html")


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere"
)
def test_performance_report_path_unwritable_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(NbflowError, match=r"cannot be written"):
            DaskExecutor(performance_report_path=folder / "r.html")
    finally:
        folder.chmod(0o700)


def test_cli_report_to_a_folder_is_a_usage_error(tmp_path):
    script = tmp_path / "one.py"
    script.write_text(
        "from nbflow import Flow, task\n\n@task\ndef one():\n    return 1\n\n"
        "with Flow('one') as flow:\n    one()\n"
    )
    result = run("run", "-p", script, "--report", tmp_path)
    assert_usage_error(result, "is a folder")
