"""The notebook cache without IPython: cell keys, reasons, options, executors.

Real diskcache stores in temporary folders, real executors; what ran is told
by the cells' side effects (a list they append to) and by the run's states.
"""

from __future__ import annotations

import datetime
import time

import pytest

from nbflow import Flow
from nbflow.engine.state import Cached
from nbflow.executors import DaskExecutor, LocalDaskExecutor
from nbflow.notebook import cache, register_cell, run_notebook_flow


@pytest.fixture
def store(tmp_path, monkeypatch):
    """The cache on, in a fresh folder; forgets this process's settings after."""
    monkeypatch.setenv("NBFLOW_CACHE", "on")
    monkeypatch.setattr(cache, "_settings", cache._Settings(location=str(tmp_path / "c")))
    monkeypatch.setattr(cache, "_memory", {})
    return tmp_path / "c"


@pytest.fixture
def flow():
    return Flow("test-cache")


def run(ns, flow, **kwargs):
    ns.setdefault("RAN", []).clear()
    state = run_notebook_flow(ns, flow=flow, **kwargs)
    assert state.is_successful(), state
    return {t.name: s for t, s in state.result.items()}


def cells(flow, **sources):
    for name, source in sources.items():
        register_cell(f"RAN.append({name!r})\n{source}", name, flow=flow)


def restart():
    """What a kernel restart forgets: the results held in memory."""
    cache._memory.clear()


def test_unchanged_cells_are_cached_and_outputs_written_back(store, flow):
    ns = {"k": 2}
    cells(flow, a="x = k * 10\nprint('A')", b="y = x + 1")
    assert set(run(ns, flow)) == {"a", "b"} and ns["RAN"] == ["a", "b"]
    del ns["x"], ns["y"]
    restart()
    states = run(ns, flow)
    assert ns["RAN"] == []
    assert all(isinstance(s, Cached) for s in states.values())
    assert (ns["x"], ns["y"]) == (20, 21)
    assert states["a"].result.stdout == "A\n"  # what it printed is replayed
    assert cache.last_plan().summary() == "Cache: reused 2 of 2 tasks."


def test_reasons_input_code_upstream(store, flow):
    ns = {"k": 2}
    cells(flow, a="x = k * 10", b="y = x + 1", c="z = k")
    run(ns, flow)
    ns["k"] = 3
    run(ns, flow)
    assert sorted(ns["RAN"]) == ["a", "b", "c"]
    assert cache.last_plan().ran == {"a": "input 'k' changed",
                                     "b": "upstream 'a' changed",
                                     "c": "input 'k' changed"}
    cells(flow, b="y = x + 2  # changed")
    run(ns, flow)
    assert ns["RAN"] == ["b"] and cache.last_plan().ran == {"b": "code changed"}


def define(ns, source, filename):
    """Run ``source`` as IPython runs a cell: its functions' source is findable."""
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), ns)


def test_helpers_are_hashed_by_source_transitively(store, flow):
    ns: dict = {"__name__": "__main__"}
    define(ns, "def inner(v):\n    return v + 1\n\ndef outer(v):\n"
               "    return inner(v) * 2", "<helpers-1>")
    cells(flow, a="y = outer(1)")
    run(ns, flow)
    assert ns["y"] == 4
    # defined again, the same code with a comment: still reused
    define(ns, "def inner(v):\n    # one more\n    return v + 1", "<helpers-2>")
    run(ns, flow)
    assert ns["RAN"] == []
    # the helper of the helper changed: the cell runs again
    define(ns, "def inner(v):\n    return v + 100", "<helpers-3>")
    run(ns, flow)
    assert ns["RAN"] == ["a"] and ns["y"] == 202
    assert cache.last_plan().ran == {"a": "helper 'outer' changed"}


def test_no_cache_cell_and_its_downstream_always_run(store, flow):
    ns: dict = {}
    register_cell("RAN.append('a')\nx = 1", "a", flow=flow, cache=False)
    cells(flow, b="y = x + 1", c="z = 5")
    run(ns, flow)
    run(ns, flow)
    assert sorted(ns["RAN"]) == ["a", "b"]
    assert cache.last_plan().ran == {"a": "--no-cache", "b": "upstream 'a' is not cached"}


def test_unhashable_input_runs_and_says_why(store, flow):
    import threading

    ns = {"lock": threading.Lock()}
    cells(flow, a="held = lock.locked()")
    run(ns, flow)
    run(ns, flow)
    assert ns["RAN"] == ["a"]
    assert cache.last_plan().ran["a"].startswith("input 'lock' cannot be hashed")


def test_cache_for_expires(store, flow):
    ns: dict = {}
    register_cell("RAN.append('a')\nx = 1", "a", flow=flow,
                  cache_for=datetime.timedelta(seconds=0.5))
    run(ns, flow)
    restart()
    run(ns, flow)
    assert ns["RAN"] == []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        restart()
        run(ns, flow)
        if ns["RAN"]:
            break
    assert ns["RAN"] == ["a"]
    assert cache.last_plan().ran == {"a": "its stored result expired or was evicted"}


@pytest.mark.parametrize("option", [{"timeout": 30.0}, {"trigger": "all_finished"},
                                    {"skip_on_upstream_skip": False}])
def test_options_that_change_what_a_cell_does_are_in_its_key(store, flow, option):
    ns: dict = {}
    cells(flow, a="x = 1", b="y = x + 1")
    run(ns, flow)
    register_cell("RAN.append('b')\ny = x + 1", "b", flow=flow, **option)
    run(ns, flow)
    assert ns["RAN"] == ["b"]
    assert cache.last_plan().ran == {"b": "options changed"}
    run(ns, flow)
    assert ns["RAN"] == []


def test_retries_and_cache_for_are_not_in_the_key(store, flow):
    ns: dict = {}
    cells(flow, a="x = 1", b="y = x + 1")
    run(ns, flow)
    register_cell("RAN.append('b')\ny = x + 1", "b", flow=flow, retries=3,
                  retry_delay=0.5, cache_for=datetime.timedelta(hours=1))
    restart()
    states = run(ns, flow)
    assert ns["RAN"] == []
    assert isinstance(states["b"], Cached)
    # a --cache-for shorter than the stored result's age: it runs again
    register_cell("RAN.append('b')\ny = x + 1", "b", flow=flow,
                  cache_for=datetime.timedelta(microseconds=1))
    run(ns, flow)
    assert ns["RAN"] == ["b"]
    assert cache.last_plan().ran == {"b": "its stored result is older than --cache-for"}


class Counted:
    """A value that counts how often dask hashes it (its tokenize protocol)."""

    calls = 0

    def __dask_tokenize__(self):
        Counted.calls += 1
        return "counted"


def test_a_value_several_cells_read_is_hashed_once_per_run(store, flow):
    ns = {"big": Counted()}
    cells(flow, a="x = big", b="y = big", c="z = (big, x, y)")
    Counted.calls = 0
    run(ns, flow)
    assert Counted.calls == 1
    run(ns, flow)
    assert Counted.calls == 2 and ns["RAN"] == []


def test_a_damaged_index_is_replaced_with_one_warning(store, flow, capsys):
    from nbflow.notebook import _cache_store

    ns: dict = {}
    cells(flow, a="x = 1", b="y = x + 1")
    run(ns, flow)
    # what an OS crash could leave: the index is not a database any more
    _cache_store._stores.clear()  # as in a new kernel
    for path in store.glob("cache.db*"):
        path.unlink()
    (store / "cache.db").write_bytes(b"not a database " * 100)
    restart()
    capsys.readouterr()
    run(ns, flow)
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and "is damaged" in warnings[0]
    assert ns["RAN"] == ["a", "b"] and cache.last_plan().ran["a"] == "first run"
    # the new index keeps what ran since
    _cache_store._stores.clear()
    restart()
    run(ns, flow)
    assert ns["RAN"] == []


class EditableFinder:
    """What ``pip install -e`` puts on ``sys.meta_path``: one package, found in
    its project folder (not on ``sys.path``).
    """

    def __init__(self, name, folder):
        self.name, self.folder = name, str(folder)

    def find_spec(self, name, path=None, target=None):
        import importlib.machinery

        if name != self.name:
            return None
        return importlib.machinery.PathFinder.find_spec(name, [self.folder])


def test_an_editable_package_a_cell_imports_counts_by_its_source(store, flow,
                                                                 tmp_path,
                                                                 monkeypatch):
    import sys

    project = tmp_path / "project"
    (project / "edpkg").mkdir(parents=True)
    init = project / "edpkg" / "__init__.py"
    init.write_text("def f():\n    return 1\n")
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path,
                                           EditableFinder("edpkg", project)])
    ns: dict = {}
    cells(flow, a="from edpkg import *\nv = f()")
    try:
        run(ns, flow)
        run(ns, flow)
        assert ns["RAN"] == []
        init.write_text("def f():\n    return 2  # edited\n")
        run(ns, flow)
        assert ns["RAN"] == ["a"]
        assert cache.last_plan().ran == {"a": "module 'edpkg' changed"}
    finally:
        sys.modules.pop("edpkg", None)


def test_plain_values_are_hashed_without_importing_dask(tmp_path):
    # Importing dask (0.1-0.2 s) was the first run's cost after a restart for
    # any cell reading a number or a string from the notebook.
    import os
    import subprocess
    import sys

    code = """
import sys
from nbflow import Flow
from nbflow.notebook import cache, register_cell, run_notebook_flow
flow = Flow("plain")
ns = {"k": 3, "names": ["a", "b"], "opts": {"n": 1.5, "on": True, "none": None}}
register_cell("x = (k, names, opts)", "a", flow=flow)
register_cell("y = x", "b", flow=flow, map_var="names")
for _ in range(2):
    run_notebook_flow(ns, flow=flow)
    cache._memory.clear()
print(sorted(cache.last_plan().reused), "dask" in sys.modules)
"""
    env = {**os.environ, "NBFLOW_CACHE": "on", "NBFLOW_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.stdout.strip() == "['a', 'b'] False", out.stderr


def test_fresh_names_a_task_and_its_downstream(store, flow):
    ns: dict = {}
    cells(flow, a="x = 1", b="y = x + 1", c="z = y + 1", d="w = 2")
    run(ns, flow)
    run(ns, flow, fresh=["b"])
    assert ns["RAN"] == ["b", "c"]
    run(ns, flow, fresh=True)
    assert sorted(ns["RAN"]) == ["a", "b", "c", "d"]
    with pytest.raises(cache.CacheSettingsError, match="'nope' is not a task"):
        run(ns, flow, fresh=["nope"])


def test_clear_and_describe(store, flow):
    ns: dict = {}
    cells(flow, a="x = 1", b="y = 2")
    run(ns, flow)
    text = cache.describe_cache()
    assert "a:" in text and "b:" in text and "2 tasks" in text
    assert cache.clear_cache("a") == 1
    run(ns, flow)
    assert ns["RAN"] == ["a"]
    cache.clear_cache()
    run(ns, flow)
    assert sorted(ns["RAN"]) == ["a", "b"]
    assert (store.parent / "c").is_dir()


def test_default_location_is_git_ignored(tmp_path, monkeypatch, flow):
    monkeypatch.setenv("NBFLOW_CACHE", "on")
    monkeypatch.delenv("NBFLOW_CACHE_DIR", raising=False)
    monkeypatch.setattr(cache, "_settings", cache._Settings())
    monkeypatch.chdir(tmp_path)
    cells(flow, a="x = 1")
    run({}, flow)
    assert (tmp_path / ".nbflow" / ".gitignore").read_text().splitlines()[-1] == "*"


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_local_dask_workers_store_and_reuse(store, flow, scheduler):
    ns: dict = {"RAN": []}
    register_cell("import os\npid = os.getpid()", "a", flow=flow)
    register_cell("b = pid", "b", flow=flow)
    executor = LocalDaskExecutor(scheduler=scheduler, num_workers=2)
    state = run_notebook_flow(ns, flow=flow, executor=executor)
    assert state.is_successful()
    first = ns["pid"]
    restart()
    state = run_notebook_flow(ns, flow=flow, executor=executor)
    assert all(isinstance(s, Cached) for s in state.result.values())
    assert ns["pid"] == ns["b"] == first


def _in_process_cluster(**kwargs):
    """A temporary cluster nbflow cannot tell is local (not a LocalCluster class)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=1, processes=False, dashboard_address=None)


@pytest.mark.parametrize("where", ["local", "processes",
                                   pytest.param("cluster", marks=pytest.mark.slow)])
def test_mapped_cell_reuses_each_element_on_every_executor(store, flow, tmp_path,
                                                          where, request):
    from nbflow.executors import LocalExecutor

    if where == "cluster":
        executor = DaskExecutor(address=request.getfixturevalue("existing_cluster"))
    elif where == "processes":
        executor = LocalDaskExecutor(scheduler="processes", num_workers=2)
    else:
        executor = LocalExecutor()
    log = tmp_path / "children.log"
    ns = {"xs": [1, 2, 3], "LOG": str(log)}
    register_cell("open(LOG, 'a').write(f'{xs}\\n')\nsq = xs * xs", "sq", flow=flow,
                  map_var="xs")
    register_cell("total = sum(sq)", "total", flow=flow)

    def children() -> list[str]:
        before = log.read_text().split() if log.exists() else []
        restart()
        state = run_notebook_flow(ns, flow=flow, executor=executor)
        assert state.is_successful(), state
        mapped = next(s for t, s in state.result.items() if t.name == "sq")
        assert (ns["sq"], ns["total"]) == ([x * x for x in ns["xs"]],
                                           sum(x * x for x in ns["xs"]))
        ran = log.read_text().split()[len(before):]
        return [*sorted(ran), *(s.name for s in mapped.map_states)]

    assert children() == ["1", "2", "3", "Success", "Success", "Success"]
    assert children() == ["Cached", "Cached", "Cached"]
    assert cache.last_plan().reused["sq"] == "unchanged (3 elements)"
    assert list(cache.last_plan().reused) == ["sq", "total"]
    ns["xs"] = [1, 2, 3, 4]
    assert children() == ["4", "Cached", "Cached", "Cached", "Success"]
    assert cache.last_plan().ran == {"sq": "1 of 4 elements new or changed",
                                     "total": "upstream 'sq' changed"}
    # --fresh sq: every child runs, none is looked up
    before = log.read_text().split()
    restart()
    run_notebook_flow(ns, flow=flow, executor=executor, fresh=["sq"])
    assert sorted(log.read_text().split()[len(before):]) == ["1", "2", "3", "4"]


def test_a_map_over_a_mapped_cell_reuses_each_element(store, flow):
    ns = {"xs": [1, 2, 3]}
    register_cell("RAN.append(('a', xs))\ny = xs + 1", "a", flow=flow, map_var="xs")
    register_cell("RAN.append(('b', y))\nz = y * 2", "b", flow=flow, map_var="y")

    def children():
        restart()
        states = run(ns, flow)
        return sorted(ns["RAN"]), [c.name for c in states["b"].map_states]

    assert children() == ([("a", 1), ("a", 2), ("a", 3), ("b", 2), ("b", 3),
                           ("b", 4)], ["Success"] * 3)
    assert children() == ([], ["Cached"] * 3)
    ns["xs"] = [1, 20, 3]
    assert children() == ([("a", 20), ("b", 21)], ["Cached", "Success", "Cached"])
    assert ns["z"] == [4, 42, 8]


@pytest.mark.slow
def test_dask_executor_caches_where_its_workers_reach(store, flow, dask_cluster,
                                                      monkeypatch, tmp_path):
    ns: dict = {}
    register_cell("x = 1", "a", flow=flow)
    executor = DaskExecutor(address=dask_cluster.scheduler_address)
    assert run(ns, flow, executor=executor)["a"].name == "Success"
    # a location the user chose: cached (the worker stored it)
    restart()
    assert isinstance(run(ns, flow, executor=executor)["a"], Cached)
    assert ns["x"] == 1
    # a temporary LocalCluster with the default location: its workers reach it
    monkeypatch.setattr(cache, "_settings", cache._Settings())
    monkeypatch.delenv("NBFLOW_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    temporary = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False})
    assert run(ns, flow, executor=temporary)["a"].name == "Success"
    assert isinstance(run(ns, flow, executor=temporary)["a"], Cached)
    assert (tmp_path / ".nbflow" / "cache").is_dir()
    # another temporary cluster with the default location: not cached, and says so
    elsewhere = DaskExecutor(cluster_class=_in_process_cluster)
    assert run(ns, flow, executor=elsewhere)["a"].name == "Success"
    assert "temporary Dask cluster that is not a LocalCluster keeps nothing" in \
        cache.last_plan().summary()


@pytest.mark.slow
def test_nbflow_run_notebook_reuses_and_fresh_forces(tmp_path):
    import os
    import subprocess
    import sys

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    sources = ["%load_ext nbflow", "import os\nLOG = os.path.abspath('runs.log')",
               "%%flowtask load\nopen(LOG, 'a').write('load\\n')\nxs = [1, 2]",
               "%%flowtask total\nopen(LOG, 'a').write('total\\n')\ntotal = sum(xs)",
               "%flow run"]
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in sources]), path)
    env = {**os.environ, "NBFLOW_CACHE": "on"}
    env.pop("NBFLOW_CACHE_DIR", None)

    def nbflow_run(*args):
        done = subprocess.run([sys.executable, "-m", "nbflow", "run", str(path), *args],
                              capture_output=True, text=True, env=env, timeout=300,
                              cwd=str(tmp_path.parent))
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    log = tmp_path / "runs.log"
    first = nbflow_run()
    assert "ran load (first run); total (first run)" in first
    assert "Pending  Ran: first run." in first  # each task says why, as it starts
    out = nbflow_run()
    assert "Cache: reused 2 of 2 tasks." in out and "Cached" in out
    assert log.read_text().split() == ["load", "total"]
    assert "ran total (--fresh)" in nbflow_run("--fresh", "total")
    assert log.read_text().split() == ["load", "total", "total"]
    assert (tmp_path / ".nbflow" / "cache").is_dir()  # next to the notebook


@pytest.mark.slow
def test_cluster_stores_on_workers_and_reuses_without_the_kernel(store, flow,
                                                                existing_cluster):
    import os
    import pickle

    from distributed import Client

    from nbflow.notebook.run import namespace_reads

    ns: dict = {}
    register_cell("big = list(range(200_000))", "a", flow=flow)
    register_cell("n = len(big)", "b", flow=flow)
    executor = DaskExecutor(address=existing_cluster)
    states = run(ns, flow, executor=executor)
    assert [s.name for s in states.values()] == ["Success", "Success"]
    # stored by the worker that ran the cell, not by the kernel
    record = cache.open_store(str(store), cache.DEFAULT_SIZE_LIMIT).record("a")
    assert record is not None and not record["writer"].endswith(f"pid {os.getpid()}")
    # a cluster run reuses a result as its address in the store: a worker reads it
    restart()
    plan = cache.plan_run(flow, namespace_reads(flow, ns), ns, cluster=True)
    reused = {t.name: s.result for t, s in plan.task_states.items()}
    assert set(reused) == {"a", "b"}
    assert len(pickle.dumps(reused["a"])) < 2_000  # 200,000 numbers stay in the store
    with Client(existing_cluster) as client:
        assert client.submit(lambda r: r.value("big")[-1], reused["a"]).result() == 199_999
    # and a run with an edited downstream cell uses it on the cluster
    register_cell("n = len(big) + 1", "b", flow=flow)
    states = run(ns, flow, executor=executor)
    assert [s.name for s in states.values()] == ["Cached", "Success"]
    assert ns["n"] == 200_001 and ns["big"][-1] == 199_999


@pytest.fixture
def no_location(monkeypatch):
    """The cache on, no location set, nothing kept from another test."""
    monkeypatch.setenv("NBFLOW_CACHE", "on")
    monkeypatch.delenv("NBFLOW_CACHE_DIR", raising=False)
    monkeypatch.setattr(cache, "_settings", cache._Settings())
    monkeypatch.setattr(cache, "_memory", {})
    monkeypatch.setattr(cache, "_on_cluster", None)


@pytest.mark.slow
def test_existing_cluster_with_no_location_caches_in_its_memory(no_location, flow,
                                                               existing_cluster,
                                                               tmp_path):
    import os

    import numpy as np
    from executors._data import MB, Payload, arrivals

    from nbflow.notebook.run import namespace_reads
    from nbflow.notebook.write_back import ClusterValue

    log, runs = tmp_path / "arrivals", tmp_path / "runs"
    ns = {"Payload": Payload, "np": np, "LOG": str(log), "RUNS": str(runs), "MB": MB}
    register_cell("open(RUNS, 'a').write('a')\n"
                  "big = Payload(np.ones(20 * MB // 8), LOG)", "a", flow=flow)
    register_cell("n = len(big.array)", "b", flow=flow)
    executor = DaskExecutor(address=existing_cluster)
    budget = 100_000  # n comes home, big stays on the cluster

    def states():
        state = run_notebook_flow(ns, flow=flow, executor=executor, memory_budget=budget)
        assert state.is_successful(), state
        return {t.name: s for t, s in state.result.items()}

    assert [s.name for s in states().values()] == ["Success", "Success"]
    summary = cache.last_plan().summary()
    assert f"in memory on the Dask cluster at {existing_cluster} for this session " \
           "only" in summary and "cache location" in summary
    # an edited downstream cell: the upstream is reused where it is
    register_cell("n = len(big.array) + 1", "b", flow=flow)
    second = states()
    assert isinstance(second["a"], Cached) and second["a"].is_result_deferred()
    assert second["b"].name == "Success" and ns["n"] == 20 * MB // 8 + 1
    assert cache.last_plan().ran == {"b": "code changed"}
    assert runs.read_text() == "a"  # cell a ran once
    assert isinstance(ns["big"], ClusterValue)
    assert f"In memory on the Dask cluster at {existing_cluster} for this session: " \
           "a, b." in cache.describe_cache()
    # every run: the value never reached the kernel
    assert all(isinstance(s, Cached) for s in states().values())
    assert runs.read_text() == "a" and os.getpid() not in arrivals(log)
    # read here by the user, it is still reused from the cluster, not sent from here
    assert len(ns["big"].result().array) == 20 * MB // 8
    plan = cache.plan_run(flow, namespace_reads(flow, ns), ns, cluster=True,
                          cluster_address=existing_cluster)
    reused = {t.name: s for t, s in plan.task_states.items()}
    assert reused["a"].is_cached() and reused["a"].is_result_deferred()
    assert reused["b"].is_cached()  # its small value came home: reused from here
    # a cleared cache runs it again
    cache.clear_cache()
    assert [s.name for s in states().values()] == ["Success", "Success"]
    assert runs.read_text() == "aa"


@pytest.mark.slow
def test_a_shared_location_keeps_values_over_the_budget_off_the_kernel(
        store, flow, existing_cluster, tmp_path):
    import os

    import numpy as np
    from executors._data import MB, Payload, arrivals

    log = tmp_path / "arrivals"
    ns = {"Payload": Payload, "np": np, "LOG": str(log), "MB": MB}
    register_cell("big = Payload(np.ones(20 * MB // 8), LOG)", "a", flow=flow)
    executor = DaskExecutor(address=existing_cluster)
    for kind in ("Success", "Cached"):
        state = run_notebook_flow(ns, flow=flow, executor=executor, memory_budget=0)
        assert [s.name for s in state.result.values()] == [kind]
    assert os.getpid() not in arrivals(log)


@pytest.mark.slow
def test_results_kept_on_a_cluster_go_with_it(no_location, flow, tmp_path):
    from _processes import dask_cluster_processes

    from nbflow.notebook.run import namespace_reads

    ns: dict = {}
    register_cell("x = 1", "a", flow=flow)
    with dask_cluster_processes(tmp_path, 1) as (address, _, _):
        executor = DaskExecutor(address=address)
        run(ns, flow, executor=executor, memory_budget=0)
        assert isinstance(run(ns, flow, executor=executor, memory_budget=0)["a"], Cached)
    plan = cache.plan_run(flow, namespace_reads(flow, ns), ns, cluster=True,
                          cluster_address=address)
    assert [s.name for s in plan.task_states.values()] == ["Pending"]
    assert plan.ran == {"a": "its result was lost with the cluster"}


def test_a_failing_cell_is_not_stored_and_its_traceback_starts_at_the_cell(store, flow):
    from nbflow.notebook import failure

    register_cell("x = 1\ny = x / 0", "a", flow=flow)
    state = run_notebook_flow({}, flow=flow)
    rendered = "\n".join(failure(state, flow)._render_traceback_())
    assert rendered.splitlines()[1] == '  File "<flowtask a>", line 2, in <module>'
    assert "_cache_store" not in rendered
    state = run_notebook_flow({}, flow=flow)
    assert state.is_failed() and cache.last_plan().ran == {"a": "first run"}


def test_flow_cache_magics_in_a_shell(store, tmp_path, capsys):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from nbflow.notebook import current_flow, reset_flow

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbflow")
    reset_flow()
    current_flow().executor = None
    try:
        ip.run_line_magic("flow", f"cache location {tmp_path / 'elsewhere'}")
        assert cache.cache_location() == str(tmp_path / "elsewhere")
        ip.run_cell_magic("flowtask", "a --cache-for 1h", "x = 41 + 1")
        ip.run_cell_magic("flowtask", "b --no-cache", "y = x + 1")
        assert "(cached for 1:00:00)" in capsys.readouterr().out
        ip.run_line_magic("flow", "run")
        assert "Cache: reused 0 of 2 tasks; ran a (first run); b (--no-cache)." in (
            capsys.readouterr().out)
        ip.run_line_magic("flow", "run --fresh a")
        assert "ran a (--fresh); b (--fresh)." in capsys.readouterr().out
        ip.run_line_magic("flow", "cache")
        assert "a: " in capsys.readouterr().out
        ip.run_line_magic("flow", "cache clear a")
        assert "Removed 1 cache entries of 'a'." in capsys.readouterr().out
        (tmp_path / "a-file").write_text("")
        with pytest.raises(UsageError, match=r"The cache location '.*a-file/c' cannot "
                           r"be written \('.*a-file' is a file\); give a folder"):
            ip.run_line_magic("flow", f"cache location {tmp_path / 'a-file' / 'c'}")
        assert cache.cache_location() == str(tmp_path / "elsewhere")  # unchanged
        with pytest.raises(UsageError, match="Unknown `%flow cache` command 'purge'"):
            ip.run_line_magic("flow", "cache purge")
        with pytest.raises(UsageError, match="--fresh 'nope' is not a task"):
            ip.run_line_magic("flow", "run --fresh nope")
        with pytest.raises(UsageError, match="Bad --cache-for duration 'soon'"):
            ip.run_cell_magic("flowtask", "c --cache-for soon", "z = 1")
    finally:
        reset_flow()
        ip.run_line_magic("unload_ext", "nbflow")


def test_flow_run_task_states_a_finished_state_is_not_run():
    import pickle

    from nbflow import task
    from nbflow.engine.events import TaskStateChanged

    calls = []

    @task
    def load():
        calls.append("load")
        return 1

    @task
    def double(x):
        calls.append("double")
        return 2 * x

    with Flow("given") as f:
        x = load()
        y = double(x)
    seen = []

    def listener(batch):
        seen.extend((e.task.name, e.new.name) for e in batch
                    if isinstance(e, TaskStateChanged))

    state = f.run(task_states={x: Cached("Reused.", 20)}, listeners=[listener])
    assert calls == ["double"]
    assert state.result[y].result == 40 and isinstance(state.result[x], Cached)
    assert ("load", "Cached") in seen and ("load", "Running") not in seen
    back = pickle.loads(pickle.dumps(Cached("m", 1, cached_inputs={"key": "k"})))
    assert (back.message, back.result, back.cached_inputs) == ("m", 1, {"key": "k"})
    assert back.is_successful() and back.name == "Cached"
