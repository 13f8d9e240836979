"""The executor panel: set controls, check the model, the flow and the message."""

from __future__ import annotations

import dataclasses
import html
import sys
import types

import pytest

from nbflow import Flow
from nbflow.errors import ClusterConnectionError, NbflowError
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from nbflow.executors.config import ExecutorConfig, ExecutorConfigError
from nbflow.widgets import ExecutorPanel

FIELDS = [f.name for f in dataclasses.fields(ExecutorConfig)]


@pytest.fixture
def flow():
    return Flow("panel", executor=LocalExecutor())


def shown(panel):
    """The message the panel shows, as text."""
    return html.unescape(panel._message.value)


def visible(control_or_box):
    return control_or_box.layout.display != "none"


def own_message(call):
    with pytest.raises(NbflowError) as info:
        call()
    return str(info.value)


def test_panel_has_a_control_and_css_class_per_field():
    import ipywidgets

    panel = ExecutorPanel()
    assert isinstance(panel, ipywidgets.VBox)
    assert "nbflow-executor-panel" in panel._dom_classes
    assert set(panel.controls) == set(FIELDS)
    for field in FIELDS:
        control = getattr(panel, f"_{field}")
        assert control is panel.controls[field]
        assert control.description == field
        assert f"nbflow-{field}" in control._dom_classes
    assert "nbflow-test_connection" in panel._test_connection._dom_classes
    assert panel.config == ExecutorConfig() and panel.problem is None
    assert type(panel.executor) is LocalExecutor


def test_panel_opens_on_the_flows_executor_without_replacing_it(flow):
    executor = LocalDaskExecutor("processes", num_workers=3)
    flow.executor = executor
    panel = ExecutorPanel(flow)
    assert panel._kind.value == "local-dask"
    assert panel._scheduler.value == "processes"
    assert panel._num_workers.value == "3"
    assert panel.config == ExecutorConfig(
        kind="local-dask", scheduler="processes", num_workers=3
    )
    assert flow.executor is executor


def test_panel_applies_valid_changes_to_the_flow(flow):
    panel = ExecutorPanel(flow)
    panel._kind.value = "local-dask"
    assert type(flow.executor) is LocalDaskExecutor
    panel._num_workers.value = "3"
    panel._scheduler.value = "processes"
    assert panel.problem is None and shown(panel) == ""
    assert panel.config == ExecutorConfig(
        kind="local-dask", scheduler="processes", num_workers=3
    )
    assert repr(flow.executor) == (
        "LocalDaskExecutor(scheduler='processes', num_workers=3)"
    )
    assert repr(panel.executor) == repr(flow.executor)
    assert panel.executor is not flow.executor
    assert panel.code.endswith(
        'flow.executor = LocalDaskExecutor(scheduler="processes", num_workers=3)'
    )
    code_html = html.unescape(panel._code.value)
    assert code_html.startswith("<pre style='") and code_html.endswith(f">{panel.code}</pre>")
    assert "font-family:var(--jp-code-font-family,monospace)" in code_html  # also in Voila


def test_panel_shows_invalid_value_and_keeps_the_last_valid_executor(flow):
    panel = ExecutorPanel(flow)
    panel.set(kind="local-dask", num_workers=2)
    before, config = flow.executor, panel.config
    panel._num_workers.value = "0"
    assert panel.problem == own_message(lambda: LocalDaskExecutor(num_workers=0))
    assert panel.problem in shown(panel)
    assert flow.executor is before and panel.config == config
    assert "num_workers=2" in panel.code
    panel._num_workers.value = "many"
    # the one check and message of a count, as from LocalDaskExecutor itself
    assert panel.problem == own_message(lambda: LocalDaskExecutor(num_workers="many"))
    assert flow.executor is before
    panel._num_workers.value = ""
    assert panel.problem is None and shown(panel) == ""
    assert flow.executor is not before and flow.executor.num_workers >= 1
    assert panel.config.num_workers is None


def test_panel_builds_a_temporary_dask_cluster(flow):
    panel = ExecutorPanel(flow)
    panel._kind.value = "dask"
    panel._n_workers.value = "4"
    panel._threads_per_worker.value = "2"
    assert flow.executor.cluster_kwargs == {"n_workers": 4, "threads_per_worker": 2}
    assert panel.code.endswith(
        "flow.executor = DaskExecutor(cluster_kwargs="
        '{"n_workers": 4, "threads_per_worker": 2})'
    )
    panel._cluster_class.value = "distributed.LocalCluster"
    panel._cluster_kwargs.value = '{"processes": false}'
    assert "cluster_class='distributed.LocalCluster'" in repr(flow.executor)
    assert flow.executor.cluster_kwargs == {
        "n_workers": 4,
        "threads_per_worker": 2,
        "processes": False,
    }
    before = flow.executor
    panel._cluster_kwargs.value = '{"processes": fals'
    assert panel.problem.startswith("cluster_kwargs is not valid JSON")
    assert flow.executor is before
    panel._cluster_kwargs.value = '{"n_workers": 1}'
    assert "n_workers is given both as 4 and in cluster_kwargs as 1" in shown(panel)
    panel._cluster_class.value = "nope.Cluster"
    assert panel.problem.startswith("n_workers is given both")  # first problem first
    panel._cluster_kwargs.value = ""
    assert panel.problem == own_message(
        lambda: DaskExecutor(cluster_class="nope.Cluster")
    )
    assert flow.executor is before


def test_panel_adaptive_bounds_are_validated(flow):
    panel = ExecutorPanel(flow)
    panel.set(kind="dask", cluster="adaptive", maximum=10)
    assert flow.executor.adapt_kwargs == {"minimum": 0, "maximum": 10}
    before = flow.executor
    panel._minimum.value = "12"
    assert (
        panel.problem
        == "adapt_kwargs minimum 12 is above maximum 10; make minimum <= maximum."
    )
    assert flow.executor is before
    panel._maximum.value = ""
    assert flow.executor.adapt_kwargs == {"minimum": 12}


def test_panel_existing_cluster_address_is_validated(flow, tmp_path):
    panel = ExecutorPanel(flow)
    panel.set(kind="dask")
    before = flow.executor
    panel._cluster.value = "existing"
    assert "needs the scheduler's address" in shown(panel)
    panel._address.value = "tcp://10.0.0.5"
    assert panel.problem == own_message(lambda: DaskExecutor(address="tcp://10.0.0.5"))
    assert flow.executor is before
    panel._address.value = "tls://10.0.0.5:8786"
    assert "is a TLS scheduler; give tls_ca_file" in panel.problem
    for name in ("ca.pem", "client.pem"):
        (tmp_path / name).write_text("x\n")
    panel._tls_client_key.value = str(tmp_path / "client.key")
    assert panel.problem.startswith("tls_client_key given without tls_client_cert")
    panel._tls_client_cert.value = str(tmp_path / "client.pem")
    panel._tls_ca_file.value = str(tmp_path / "ca.pem")
    assert (
        panel.problem
        == f"tls_client_key {str(tmp_path / 'client.key')!r} is not a file; give the path of an existing PEM file."
    )
    assert flow.executor is before
    panel._tls_client_key.value = ""
    assert panel.problem is None
    assert flow.executor.address == "tls://10.0.0.5:8786"
    assert flow.executor.client_kwargs["security"].tls_client_cert == str(
        tmp_path / "client.pem"
    )
    assert "Security(tls_ca_file=" in panel.code and "tls_client_key" not in panel.code


def test_panel_worker_timeout_of_an_existing_cluster(flow):
    address = "tcp://127.0.0.1:8786"
    panel = ExecutorPanel(flow)
    assert not visible(panel._sections["existing"])
    panel.set(kind="dask", cluster="existing", address=address)
    assert visible(panel._sections["existing"])
    assert panel._worker_timeout in panel._sections["existing"].children
    assert panel._worker_timeout.value == "60"  # the executor's default
    assert panel._worker_timeout.placeholder == "None: do not wait"
    panel._worker_timeout.value = "2.5"
    assert flow.executor.worker_timeout == 2.5 and panel.problem is None
    assert "worker_timeout=2.5" in panel.code
    for bad in ("-1", "soon"):
        panel._worker_timeout.value = bad
        value = float(bad) if bad != "soon" else bad
        assert panel.problem == own_message(
            lambda: DaskExecutor(address=address, worker_timeout=value)  # noqa: B023
        )
        assert flow.executor.worker_timeout == 2.5  # the last valid one stays
    panel._worker_timeout.value = ""
    assert flow.executor.worker_timeout is None and panel.problem is None
    # it opens on the flow's executor's
    flow.executor = DaskExecutor(address=address, worker_timeout=7)
    assert ExecutorPanel(flow)._worker_timeout.value == "7"


def test_panel_performance_report_needs_a_path(flow, tmp_path):
    panel = ExecutorPanel(flow)
    panel.set(kind="dask")
    assert not visible(panel._performance_report_path)
    panel._performance_report.value = True  # ticked: a default path is offered
    assert visible(panel._performance_report_path)
    assert panel.problem is None
    assert flow.executor.performance_report_path == "dask-report.html"
    before = flow.executor
    panel._performance_report_path.value = ""  # cleared: an error, nothing applied
    assert panel.problem.startswith("performance_report is on but")
    assert flow.executor is before
    path = str(tmp_path / "report.html")
    panel._performance_report_path.value = path
    assert flow.executor.performance_report_path == path
    panel._performance_report.value = False
    assert flow.executor.performance_report_path is None
    assert panel.config.performance_report_path == path  # kept for switching back


def test_panel_shows_only_the_controls_of_the_chosen_kind_and_mode():
    panel = ExecutorPanel()
    sections = panel._sections

    def on():
        shown = {name for name, box in sections.items() if visible(box)}
        assert "cache" in shown  # the cache location: for every executor
        return shown - {"cache"}

    assert on() == set()
    panel._kind.value = "local-dask"
    assert on() == {"local-dask"}
    panel._kind.value = "dask"
    assert on() == {"dask", "temporary", "report"}
    panel._cluster.value = "adaptive"
    assert on() == {"dask", "temporary", "adaptive", "report"}
    panel._cluster.value = "existing"
    assert on() == {"dask", "existing", "report"}
    assert panel._address in sections["existing"].children[0].children


def test_panel_sections_hold_the_controls_they_show_and_hide():
    from nbflow.executors.config import OPTIONS

    panel = ExecutorPanel()

    def inside(box):
        for child in getattr(box, "children", ()):
            yield child
            yield from inside(child)

    for field, spec in OPTIONS.items():
        if field != "kind":  # always shown, above the sections
            assert panel.controls[field] in inside(panel._sections[spec.section]), field
    assert set(OPTIONS) == set(FIELDS)


def test_panel_ignores_unparsable_text_in_hidden_controls(flow):
    panel = ExecutorPanel(flow)
    panel.set(kind="dask")
    panel._n_workers.value = "four"
    assert panel.problem.startswith("n_workers must be a whole number >= 0, got 'four'")
    panel._kind.value = "local-dask"
    assert panel.problem is None and type(flow.executor) is LocalDaskExecutor
    panel._kind.value = "dask"
    assert panel.problem.startswith("n_workers must be a whole number >= 0, got 'four'")
    assert type(flow.executor) is LocalDaskExecutor


def test_panel_keeps_settings_of_other_kinds_when_switching(flow):
    panel = ExecutorPanel(flow)
    panel.set(kind="local-dask", num_workers=5)
    panel._kind.value = "dask"
    assert type(flow.executor) is DaskExecutor
    panel._kind.value = "local-dask"
    assert flow.executor.num_workers == 5


def test_panel_on_an_executor_it_cannot_hold_says_so_and_keeps_it(flow):
    executor = DaskExecutor(adapt_kwargs={"interval": "1s"})
    flow.executor = executor
    panel = ExecutorPanel(flow)
    assert "which an ExecutorConfig cannot hold" in shown(panel)
    assert flow.executor is executor and panel.config == ExecutorConfig()
    panel._kind.value = "local-dask"
    assert type(flow.executor) is LocalDaskExecutor and panel.problem is None


def test_panel_set_maps_config_values_to_controls(flow):
    panel = ExecutorPanel(flow, config=ExecutorConfig(kind="dask", n_workers=1))
    assert flow.executor.cluster_kwargs == {"n_workers": 1}  # a given config applies
    panel.set(cluster="adapt", minimum=1, cluster_kwargs={"processes": False})
    assert panel._cluster.value == "adaptive" and panel._minimum.value == "1"
    assert panel._cluster_kwargs.value == '{"processes": false}'
    assert flow.executor.adapt_kwargs == {"minimum": 1}
    with pytest.raises(ExecutorConfigError, match="Unknown scheduler 'gpu'"):
        panel.set(scheduler="gpu")
    with pytest.raises(ExecutorConfigError, match=r"Unknown executor config keys"):
        panel.set(workers=3)


def test_panel_code_reproduces_its_executor(flow):
    panel = ExecutorPanel(flow)
    panel.set(
        kind="dask",
        cluster="adaptive",
        n_workers=1,
        threads_per_worker=2,
        minimum=1,
        maximum=3,
        cluster_kwargs={"processes": False},
    )
    namespace = {"flow": types.SimpleNamespace()}
    exec(panel.code, namespace)
    assert repr(namespace["flow"].executor) == repr(flow.executor)
    assert repr(namespace["flow"].executor) == repr(panel.executor)


# -- test connection ----------------------------------------------------------------


def test_panel_test_connection_rejects_a_malformed_address_at_once():
    panel = ExecutorPanel()
    panel.set(kind="dask", cluster="existing", address="nope")
    future = panel.test_connection()
    assert isinstance(future.exception(timeout=0), ExecutorConfigError)
    assert "Malformed scheduler address 'nope'" in html.unescape(
        panel._connection.value
    )


def test_panel_test_connection_shows_the_error_of_an_unreachable_scheduler(flow):
    panel = ExecutorPanel(flow)
    panel.set(kind="dask", cluster="existing", address="tcp://127.0.0.1:1")
    before = flow.executor
    panel._test_connection.click()
    future = panel._connection_future
    error = future.exception(timeout=60)  # the client itself gives up after 3 s
    assert isinstance(error, ClusterConnectionError)
    text = html.unescape(panel._connection.value)
    assert "Could not connect to the Dask scheduler at 'tcp://127.0.0.1:1'" in text
    assert not panel._test_connection.disabled
    assert flow.executor is before


@pytest.mark.slow
def test_panel_test_connection_shows_workers_threads_memory(existing_cluster):
    panel = ExecutorPanel()
    panel.set(kind="dask", cluster="existing", address=existing_cluster)
    summary = panel.test_connection(timeout=30).result(timeout=60)
    assert (summary.workers, summary.threads) == (2, 2) and summary.memory > 0
    text = html.unescape(panel._connection.value)
    assert text.startswith(f"<b>{existing_cluster}</b>: 2 workers, 2 threads, ")
    assert text.endswith(f" GiB memory, Python {sys.version_info[0]}.{sys.version_info[1]}")
    assert not panel._test_connection.disabled


@pytest.fixture
def cache_settings(monkeypatch):
    """The notebook cache on with no location chosen; forgotten after the test."""
    from nbflow.notebook import cache

    monkeypatch.setenv("NBFLOW_CACHE", "on")
    monkeypatch.delenv("NBFLOW_CACHE_DIR", raising=False)
    monkeypatch.setattr(cache, "_settings", cache._Settings())
    monkeypatch.setattr(cache, "_memory", {})
    return cache


def test_panel_cache_location_is_used_by_the_next_run(flow, cache_settings, tmp_path,
                                                      monkeypatch):
    from nbflow.notebook import register_cell, run_notebook_flow

    monkeypatch.chdir(tmp_path)
    panel = ExecutorPanel(flow)
    control = panel._cache_location
    assert control.value == "" and "default: .nbflow/cache" in control.placeholder
    assert visible(control) and not control.continuous_update  # sent on Enter
    shared = tmp_path / "shared" / "cache"  # made when first written
    control.value = str(shared)
    assert panel.problem is None and cache_settings.cache_location() == str(shared)
    assert f'configure_cache("{shared}")' in panel.code
    register_cell("x = 1", "a", flow=flow)
    run_notebook_flow({}, flow=flow)
    assert cache_settings.last_plan().location == str(shared) and shared.is_dir()
    # a panel opened later shows it; emptied, the default is back
    again = ExecutorPanel(flow)
    assert again._cache_location.value == str(shared)
    again._cache_location.value = ""
    assert cache_settings.cache_location() == str(tmp_path / ".nbflow" / "cache")
    assert "configure_cache" not in again.code


@pytest.mark.parametrize("where", ["file", "s3"])
def test_panel_cache_location_that_cannot_be_written_is_one_line(flow, cache_settings,
                                                                 tmp_path, where):
    panel = ExecutorPanel(flow)
    good = str(tmp_path / "cache")
    panel._cache_location.value = good
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    bad = str(a_file / "cache") if where == "file" else "s3://bucket/cache"
    panel._cache_location.value = bad
    assert panel.problem is not None and "\n" not in panel.problem
    assert panel.problem.startswith(f"The cache location {bad!r} cannot be written (")
    assert panel.problem.endswith("or leave it empty for the default.")
    assert html.escape(repr(bad), quote=False) in panel._message.value
    assert cache_settings.cache_location() == good  # the last valid one stays
    assert panel.config.cache_location == good
    with pytest.raises(ExecutorConfigError, match="cannot be written"):
        ExecutorConfig(cache_location=bad).build()
