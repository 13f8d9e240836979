"""The notebook flow without IPython: registering cells, edges, running, writing back."""

from __future__ import annotations

import threading

import pytest

from nbflow import Flow
from nbflow.errors import FlowValidationError, NbflowError, TaskFailed
from nbflow.executors import LocalDaskExecutor
from nbflow.notebook import (
    CellFailed,
    CellSyntaxError,
    CellTask,
    MapValueError,
    RegistrationError,
    UndefinedNameError,
    UnserialisableValueError,
    cell_output,
    current_flow,
    describe_cell,
    describe_flow,
    failure,
    register_cell,
    remove_task,
    reset_flow,
    run_notebook_flow,
)


@pytest.fixture
def flow():
    return Flow("test-notebook")


def names(flow):
    return [t.name for t in flow.ordered_tasks()]


def edges(flow):
    return {(e.upstream.name, e.downstream.name, e.key) for e in flow.edges}


def test_current_flow_is_one_plain_flow():
    assert isinstance(current_flow(), Flow)
    assert current_flow() is current_flow()


def test_register_cell_edges_from_latest_provider_above(flow):
    register_cell("x = 1", "a", flow=flow)
    register_cell("x = x + 1\ny = 2", "b", flow=flow)
    c = register_cell("z = x + y + k", "c", flow=flow)
    assert isinstance(c, CellTask)
    assert edges(flow) == {("a", "b", "x"), ("b", "c", "x"), ("b", "c", "y")}
    assert describe_cell(c, flow) == (
        "Task 'c': reads x (from b), y (from b) from other tasks; provides z."
    )


def test_register_cell_same_name_replaces_in_place(flow):
    register_cell("x = 1", "a", flow=flow)
    register_cell("y = x", "b", flow=flow)
    register_cell("z = y", "c", flow=flow)
    new = register_cell("y = 5", "b", flow=flow)
    assert names(flow) == ["a", "b", "c"]
    assert flow.ordered_tasks()[1] is new
    assert edges(flow) == {("b", "c", "y")}


def test_register_cell_default_name_is_first_created_name(flow):
    register_cell("df = load()", flow=flow)
    task = register_cell("df['a'] = 1\ntotal = df.sum()", flow=flow)
    assert task.name == "total"
    assert register_cell("df['b'] = 2", flow=flow).name.startswith("df_")
    assert register_cell("df = load()", flow=flow).name == "df"
    assert len(flow) == 3


def test_register_cell_syntax_error_leaves_flow_unchanged(flow):
    with pytest.raises(CellSyntaxError, match="line 2"):
        register_cell("x = 1\nx = = 2", "bad", flow=flow)
    assert len(flow) == 0


def test_register_cell_unknown_after_is_an_error(flow):
    register_cell("x = 1", "a", flow=flow)
    with pytest.raises(RegistrationError, match="'nope'.*'a'"):
        register_cell("y = 1", "b", after=["nope"], flow=flow)
    assert names(flow) == ["a"]


def test_register_cell_cycle_through_after_is_refused_and_undone(flow):
    register_cell("x = 1", "a", flow=flow)
    register_cell("y = x", "b", flow=flow)
    old = flow.ordered_tasks()[0]
    with pytest.raises(FlowValidationError, match="cycle") as info:
        register_cell("x = 1", "a", after=["b"], flow=flow)
    assert isinstance(info.value, NbflowError)
    assert flow.ordered_tasks()[0] is old
    assert edges(flow) == {("a", "b", "x")}
    flow.validate()


def test_remove_and_reset(flow):
    register_cell("x = 1", "a", flow=flow)
    register_cell("y = x", "b", flow=flow)
    remove_task("a", flow=flow)
    assert names(flow) == ["b"] and edges(flow) == set()
    with pytest.raises(RegistrationError, match="'zzz'"):
        remove_task("zzz", flow=flow)
    flow.executor = LocalDaskExecutor()
    reset_flow(flow)
    assert len(flow) == 0 and isinstance(flow.executor, LocalDaskExecutor)


def test_describe_flow_lists_inputs_outputs_edges(flow):
    register_cell("x = 1", "a", flow=flow)
    register_cell("y = x + k", "b", retries=2, flow=flow)
    text = describe_flow(flow)
    assert "b (2 retries)" in text
    assert "inputs: x <- a" in text and "from namespace: k" in text
    assert "outputs: y" in text and "a -> b (x)" in text


def test_describe_flow_hides_the_tasks_that_pick_a_mapped_name(flow):
    register_cell("xs = [1, 2]\nk = 3", "load", flow=flow)
    register_cell("s = xs + k", "sq", map_var="xs", flow=flow)
    text = describe_flow(flow)
    assert "2 tasks" in text and "PickTask" not in text and "load.xs" not in text
    assert "load -> sq (k, xs)" in text


def test_run_notebook_flow_writes_back_and_captures_output(flow):
    ns = {"k": 10, "helper": lambda v: v * 3}
    register_cell("x = helper(2)\nprint('x is', x)", "a", flow=flow)
    register_cell("x += k\ny = [x, x]", "b", flow=flow)
    state = run_notebook_flow(ns, flow=flow)
    assert state.is_successful()
    assert ns["x"] == 16 and ns["y"] == [16, 16]
    assert cell_output(state, flow) == "[a] x is 6"
    assert failure(state, flow) is None


def test_run_notebook_flow_reads_namespace_when_run_starts(flow):
    ns = {"k": 1}
    register_cell("y = k", "a", flow=flow)
    ns["k"] = 2
    run_notebook_flow(ns, flow=flow)
    assert ns["y"] == 2


@pytest.mark.parametrize("executor", [None, LocalDaskExecutor()], ids=["local", "threads"])
def test_run_notebook_flow_maps(flow, executor):
    ns = {"items": [1, 2, 3]}
    register_cell("sq = items * items\nprint(items)", "sq", map_var="items", flow=flow)
    register_cell("total = sum(sq)\nxs = [10, 20]", "total", flow=flow)
    register_cell("half = xs / 2", "half", map_var="xs", flow=flow)
    register_cell("again = sq + 1", "again", map_var="sq", flow=flow)
    state = run_notebook_flow(ns, flow=flow, executor=executor)
    assert state.is_successful(), state
    assert ns["sq"] == [1, 4, 9] and ns["total"] == 14
    assert ns["half"] == [5.0, 10.0] and ns["again"] == [2, 5, 10]
    assert cell_output(state, flow).splitlines() == ["[sq[0]] 1", "[sq[1]] 2", "[sq[2]] 3"]


def test_run_notebook_flow_map_over_non_sequence_fails_before_running(flow):
    ns = {"n": 5, "ran": []}
    register_cell("ran.append(1)", "first", flow=flow)
    register_cell("y = n", "m", map_var="n", flow=flow)
    with pytest.raises(MapValueError, match="'m'.*'n'.*int"):
        run_notebook_flow(ns, flow=flow)
    assert ns["ran"] == []


def test_run_notebook_flow_undefined_name_names_cell_and_variable(flow):
    register_cell("y = missing + 1", "uses", flow=flow)
    with pytest.raises(UndefinedNameError, match="'uses' reads 'missing'"):
        run_notebook_flow({}, flow=flow)
    register_cell("missing = 1", "later", flow=flow)
    with pytest.raises(UndefinedNameError, match="'later' provides it"):
        run_notebook_flow({}, flow=flow)


def test_run_notebook_flow_failure_keeps_successes_and_cell_traceback(flow):
    ns: dict = {}
    register_cell("a = 1", "ok", flow=flow)
    register_cell("print('before')\nb = a / 0", "boom", flow=flow)
    register_cell("c = b", "after", flow=flow)
    state = run_notebook_flow(ns, flow=flow)
    assert state.is_failed()
    assert ns == {"a": 1}
    assert "[boom] before" in cell_output(state, flow)
    error = failure(state, flow)
    assert isinstance(error, CellFailed) and isinstance(error, TaskFailed)
    assert isinstance(error.__cause__, ZeroDivisionError)
    rendered = "\n".join(error._render_traceback_())
    assert 'File "<flowtask boom>", line 2' in rendered
    assert "b = a / 0" in rendered
    assert "runtime.py" not in rendered


def test_run_notebook_flow_retries_a_cell(flow):
    ns = {"attempts": []}
    register_cell("attempts.append(1)\nif len(attempts) < 3:\n    raise OSError('flaky')\n"
                  "done = len(attempts)", "flaky", retries=2, retry_delay=0, flow=flow)
    assert run_notebook_flow(ns, flow=flow).is_successful()
    assert ns["done"] == 3


def test_run_notebook_flow_unserialisable_value_stops_before_processes(flow):
    ns = {"lock": threading.Lock(), "ran": []}
    register_cell("ran.append(1)", "first", flow=flow)
    register_cell("held = lock.locked()", "locky", flow=flow)
    processes = LocalDaskExecutor("processes", num_workers=1)
    with pytest.raises(UnserialisableValueError, match="'locky' reads 'lock'"):
        run_notebook_flow(ns, flow=flow, executor=processes)
    assert ns["ran"] == []
    # On threads nothing needs to travel: the same flow runs.
    assert run_notebook_flow(ns, flow=flow, executor=LocalDaskExecutor()).is_successful()
    assert ns["held"] is False


@pytest.mark.slow
def test_run_notebook_flow_on_processes_shows_cell_line(flow):
    ns = {"base": 3}
    register_cell("xs = [base, base + 1]\nprint('made', xs)", "make", flow=flow)
    register_cell("sq = xs ** 2", "sq", map_var="xs", flow=flow)
    register_cell("bad = sq[0] / 0", "bad", flow=flow)
    register_cell("import threading\nlk = threading.Lock()", "locker", flow=flow)
    register_cell("held = lk.locked()", "held", flow=flow)
    state = run_notebook_flow(ns, flow=flow,
                              executor=LocalDaskExecutor("processes", num_workers=2))
    assert ns["sq"] == [9, 16] and "bad" not in ns and "lk" not in ns
    assert "[make] made [3, 4]" in cell_output(state, flow)
    by_name = {t.name: s for t, s in state.result.items()}
    assert by_name["held"].name == "TriggerFailed"
    assert "Cell 'locker' provides 'lk' (lock)" in by_name["locker"].message
    rendered = "\n".join(failure(state, flow)._render_traceback_())
    assert "bad = sq[0] / 0" in rendered


def test_notebook_layer_imports_no_ipython_widgets_or_dask():
    import subprocess
    import sys

    code = ("import sys, nbflow.notebook\n"
            "print(sorted(m for m in ('IPython', 'ipywidgets', 'dask', 'distributed')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_performance_report_shows_the_cells_as_calling_code(flow, tmp_path):
    from nbflow.executors import DaskExecutor

    # Names built at run time: the fallback "Calling Code" is this test's own
    # source, which must not contain them.
    marker, task_name = "marker_" + "of_the_cell", "fir" + "st"
    register_cell(f"{marker} = 1", task_name, flow=flow)
    register_cell(f"second = {marker} + 1", "second", flow=flow)
    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False},
                            performance_report_path=tmp_path / "report.html")
    state = run_notebook_flow({}, flow=flow, executor=executor)
    assert state.is_successful()
    html = executor.performance_report
    assert f"%%flowtask {task_name}" in html and f"{marker} = 1" in html
    from nbflow.executors.base import calling_code

    assert calling_code() is None  # set for the run only


def test_a_mapped_cell_after_another_waits_for_it_without_mapping_over_it(flow):
    """`--map xs --after setup`: `setup` is an ordering edge only (Prefect's
    `.map(upstream_tasks=[t])` would map over t's result)."""
    ns = {}
    register_cell("marker = [1, 2, 3, 4, 5]", "setup", flow=flow)
    register_cell("ys = x * 10", "each", map_var="x", after=["setup"], flow=flow)
    ns["x"] = [1, 2]
    state = run_notebook_flow(ns, flow=flow)
    assert state.is_successful(), state.message
    assert ns["ys"] == [10, 20]
