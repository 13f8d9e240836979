"""A cluster is not the laptop: real ``dask scheduler`` / ``dask worker``
processes started in another folder, without the client's folder on their
``sys.path``, get the flow's own modules; packages they lack (or have in
another version) stop the run, in one line, before anything runs.
"""

from __future__ import annotations

import html
import importlib
import os
import re
import sys
import time
import warnings
from pathlib import Path

import pytest
from _processes import start_scheduler, start_worker, stop, wait_for_workers

from nbflow import Flow, task
from nbflow.engine.runner import FlowRun
from nbflow.errors import ClusterEnvironmentError
from nbflow.executors import DaskExecutor
from nbflow.executors.dask import client_environment
from nbflow.notebook import register_cell, run_notebook_flow
from nbflow.notebook.flow import Flow as NotebookFlow

pytestmark = pytest.mark.slow

WORKTREE = str(Path(__file__).resolve().parents[2])


def _fake_distribution(site: Path, name: str, version: str, *, package: bool = True
                       ) -> None:
    """A tiny installed distribution: a package (unless not ``package``: the
    metadata only, claiming another version of one installed) and its .dist-info.
    """
    if package:
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(
            f"VERSION = {version!r}\n\n\nclass Thing:\n    x = 1\n")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    (info / "RECORD").write_text("")


@pytest.fixture(scope="module")
def far_cluster(tmp_path_factory):
    """A scheduler and two workers started in a folder of their own, with only
    nbflow on their path; worker ``w1`` also has ``nbflowversioned`` 2.0.
    Yields ``(address, folder)``.
    """
    folder = tmp_path_factory.mktemp("far-cluster")
    site = folder / "w1-site"
    _fake_distribution(site, "nbflowversioned", "2.0.0")
    env = {"PYTHONPATH": WORKTREE}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        scheduler, address = start_scheduler(folder)
        workers = [start_worker(folder, address, name="w0")]
        mp.setenv("PYTHONPATH", os.pathsep.join([WORKTREE, str(site)]))
        workers.append(start_worker(folder, address, name="w1"))
    try:
        wait_for_workers(address, 2)
        yield address, folder
    finally:
        for worker in workers:
            stop(worker)
        stop(scheduler)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The client's folder (the notebook's): the current directory and on
    ``sys.path``, with a user module of a name of its own; also a site folder
    on the client's path only, with ``nbflowonlyclient`` 1.2 and
    ``nbflowversioned`` 2.1 installed.
    """
    folder = tmp_path / "project"
    folder.mkdir()
    site = tmp_path / "client-site"
    _fake_distribution(site, "nbflowonlyclient", "1.2.0")
    _fake_distribution(site, "nbflowversioned", "2.1.0")
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(folder))
    module = "mylib"
    (folder / f"{module}.py").write_text("VALUE = 1\n\ndef double(x):\n    return 2 * x\n")
    importlib.invalidate_caches()
    yield folder, module
    for name in [m for m in sys.modules if m.split(".")[0] in (
            module, "nbflowonlyclient", "nbflowversioned")]:
        del sys.modules[name]


@task
def use_module(x: int) -> tuple[int, int]:
    import mylib  # in the client's folder only

    return mylib.double(x), mylib.VALUE


@task
def use_only_client() -> str:
    import nbflowonlyclient

    return str(nbflowonlyclient.VERSION)


@task
def use_versioned() -> str:
    import nbflowversioned

    return str(nbflowversioned.VERSION)


@task
def touch(path: str) -> None:
    Path(path).write_text("ran")


def _run(flow: Flow, address: str, **kwargs):
    return flow.run(executor=DaskExecutor(address=address, **kwargs))


def test_user_module_of_the_client_folder_reaches_workers_elsewhere(far_cluster, project):
    address, _ = far_cluster
    _, module = project
    with Flow("own-code") as flow:
        result = use_module(21)
    state = _run(flow, address)
    # nbflowversioned differs on w1 (2.0 vs 2.1 here), but no task uses it.
    assert state.is_successful(), state.result[result].message
    assert state.result[result].result == (42, 1)
    # The run is over: the shared scheduler keeps no plugin of it.
    from distributed import Client

    def ours(dask_scheduler):
        return [n for n in [*dask_scheduler.plugins, *dask_scheduler.worker_plugins]
                if n.startswith("nbflow")]

    with Client(address, timeout=30, set_as_default=False) as client:
        deadline = time.monotonic() + 30  # the scheduler sees the client go
        while (left := client.run_on_scheduler(ours)) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert left == []


def test_cell_importing_a_module_of_the_notebook_folder_runs_elsewhere(
    far_cluster, project
):
    address, _ = far_cluster
    folder, module = project
    flow = NotebookFlow("cells")
    register_cell(f"import {module}\ny = {module}.double({module}.VALUE)", name="c",
                  flow=flow)
    namespace: dict = {}
    state = run_notebook_flow(namespace, flow=flow, executor=DaskExecutor(address=address))
    assert state.is_successful(), [s.message for s in state.result.values()]
    assert namespace["y"] == 2
    # Edited between two runs (the cell imports it: the client never did).
    (folder / f"{module}.py").write_text("VALUE = 5\n\ndef double(x):\n    return 3 * x\n")
    state = run_notebook_flow(namespace, flow=flow, executor=DaskExecutor(address=address))
    assert state.is_successful(), [s.message for s in state.result.values()]
    assert namespace["y"] == 15


def test_edited_module_reloaded_on_the_client_is_used_by_the_next_run(
    far_cluster, project
):
    address, _ = far_cluster
    folder, module = project
    imported = importlib.import_module(module)
    with Flow("edited") as flow:
        result = use_module(1)
    assert _run(flow, address).result[result].result == (2, 1)
    (folder / f"{module}.py").write_text("VALUE = 7\n\ndef double(x):\n    return 10 * x\n")
    importlib.reload(imported)  # what %autoreload does
    state = _run(flow, address)
    assert state.result[result].result == (10, 7), state.result[result].message


def test_package_the_workers_lack_stops_the_run_before_anything_runs(
    far_cluster, project, tmp_path
):
    address, _ = far_cluster
    marker = tmp_path / "ran.txt"
    with Flow("lacking") as flow:
        touch(str(marker))
        use_only_client()
        use_versioned()
    with pytest.raises(ClusterEnvironmentError, match="cannot run this flow") as caught:
        _run(flow, address)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".")
    assert "'nbflowonlyclient' (1.2.0 here) is missing on tcp://127.0.0.1:" in message
    assert "used by task 'use_only_client'" in message
    assert "'nbflowversioned' is 2.0.0 on tcp://127.0.0.1:" in message
    assert "but 2.1.0 here, used by task 'use_versioned'" in message
    assert "check_environment=False" in message
    assert not marker.exists()  # nothing ran


def test_check_environment_false_runs_anyway(far_cluster, project, tmp_path):
    address, _ = far_cluster
    marker = tmp_path / "ran.txt"
    with Flow("anyway") as flow:
        touch(str(marker))
        lacking = use_only_client()
    state = _run(flow, address, check_environment=False)
    assert marker.read_text() == "ran"
    assert state.result[lacking].is_failed()
    assert "nbflowonlyclient" in state.result[lacking].message


@task
def wait_for_file(path: str, deadline: float) -> str:
    while not Path(path).exists():
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)
    return "released"


def test_worker_joining_after_the_run_started_gets_the_code(far_cluster, project, tmp_path):
    from distributed import Client

    address, folder = far_cluster
    _, module = project
    release = tmp_path / "release"
    with Flow("joining") as flow:
        gate = wait_for_file(str(release), time.time() + 120)
        result = use_module(2, upstream_tasks=[gate])
    run = FlowRun(flow, executor=DaskExecutor(address=address)).start()
    late = None
    try:
        with Client(address, timeout=30, set_as_default=False) as client:
            before = set(client.scheduler_info(n_workers=-1)["workers"])
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PYTHONPATH", WORKTREE)
                late = start_worker(folder, address, name="late")
            client.wait_for_workers(3, timeout=60)
            (joined,) = set(client.scheduler_info(n_workers=-1)["workers"]) - before
            # The run's code reached the worker that joined after it began.
            value = client.run(eval, f"__import__({module!r}).double(4)", workers=[joined])
            assert value == {joined: 8}
            release.write_text("go")
            state = run.join(120)
            assert state is not None and state.is_successful()
            assert state.result[result].result == (4, 1)
    finally:
        release.write_text("go")
        run.join(120)
        if late is not None:
            stop(late)


def elsewhere_cluster(folder: str, n_workers: int = 1, packages: tuple[str, ...] = (),
                      versions: tuple[tuple[str, str], ...] = (), **kwargs):
    """A ``cluster_class`` factory: a cluster whose workers are ``dask worker``
    processes started in their own folder, with only nbflow on their path and
    the ``packages`` "installed" (a stand-in for building an image) at the
    versions the client has, as ``client_environment()`` tells it. The
    scheduler is a ``LocalCluster``'s, in this process.
    """
    from distributed import LocalCluster

    site = Path(folder) / f"site-{len(list(Path(folder).iterdir()))}"
    site.mkdir()
    for pin in client_environment().requirements(packages):
        name, _, version = pin.partition("==")
        _fake_distribution(site, name, version)
    for name, version in versions:  # other versions, as far as metadata says
        _fake_distribution(site, name, version, package=False)

    class ElsewhereCluster(LocalCluster):
        def close(self, *args, **kw):
            for worker in workers:
                stop(worker)
            return super().close(*args, **kw)

    cluster = ElsewhereCluster(n_workers=0, **kwargs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([WORKTREE, str(site)]))
        workers = [start_worker(Path(folder), cluster.scheduler_address, name=f"e{i}")
                   for i in range(n_workers)]
    cluster.wait_for_workers(n_workers, timeout=60)
    return cluster


def test_temporary_cluster_whose_workers_start_elsewhere(project, tmp_path,
                                                       no_leaked_processes):
    far = tmp_path / "elsewhere"
    far.mkdir()
    executor = DaskExecutor(cluster_class=elsewhere_cluster,
                            cluster_kwargs={"folder": str(far)})
    with Flow("temporary") as flow:
        result = use_module(5)
    state = flow.run(executor=executor)
    assert state.result[result].result == (10, 1), state.result[result].message
    with Flow("temporary-lacking") as flow:
        use_only_client()
    with pytest.raises(ClusterEnvironmentError, match="'nbflowonlyclient' .* is missing"):
        flow.run(executor=executor)
    # A factory that builds its workers from the client's environment.
    executor.cluster_kwargs["packages"] = ("nbflowonlyclient",)
    with Flow("temporary-built") as flow:
        version = use_only_client()
    state = flow.run(executor=executor)
    assert state.result[version].result == "1.2.0", state.result[version].message


@task
def read_data(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_data_file_of_the_client_folder_gets_a_hint(far_cluster, project):
    address, _ = far_cluster
    folder, _ = project
    (folder / "data.csv").write_text("a,b\n")
    with Flow("data") as flow:
        result = read_data("data.csv")
    state = _run(flow, address)
    message = state.result[result].message
    assert "FileNotFoundError" in message
    assert "'data.csv' exists here but not where the task ran" in message
    assert "data files do not travel" in message


def test_test_connection_names_what_the_workers_lack_and_which_cell_uses_it(
    far_cluster, project
):
    from nbflow.executors.cluster_info import inspect_cluster
    from nbflow.notebook import current_flow, reset_flow
    from nbflow.widgets import ExecutorPanel

    address, _ = far_cluster
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    plain = inspect_cluster(address, timeout=30)
    assert plain.describe().endswith(f" GiB memory, Python {python}")
    reset_flow()
    try:
        register_cell("import nbflowonlyclient\nv = nbflowonlyclient.VERSION",
                      name="clean", flow=current_flow())
        panel = ExecutorPanel()
        panel.set(kind="dask", cluster="existing", address=address)
        summary = panel.test_connection(timeout=30).result(timeout=60)
    finally:
        reset_flow()
    assert summary.problems == ("missing on 2 workers: nbflowonlyclient (cell 'clean')",)
    text = html.unescape(panel._connection.value)
    assert text.startswith(f"<b>{address}</b>: 2 workers, 2 threads, ")
    assert text.endswith(
        f", Python {python}; missing on 2 workers: nbflowonlyclient (cell 'clean')")


FLOW_FILE = '''
from nbflow import Flow, task

import mylib


@task
def own():
    return mylib.double(mylib.VALUE)


@task
def lacking():
    import nbflowonlyclient

    return nbflowonlyclient.VERSION


with Flow("on-the-cluster") as flow:
    own()
    lacking()
'''


def test_nbflow_run_shows_the_check_and_refuses_in_one_line(
    far_cluster, project, monkeypatch
):
    from _cli import run

    address, _ = far_cluster
    folder, _ = project
    (folder / "flow.py").write_text(FLOW_FILE)
    site = next(p for p in sys.path if p.endswith("client-site"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([WORKTREE, site]))
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    result = run("run", "flow.py", "--address", address, cwd=folder)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"Cluster: 2 workers, Python {python}; missing on 2 workers: "
            "nbflowonlyclient (task 'lacking')\n") in result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert "'nbflowonlyclient' (1.2.0 here) is missing on tcp://127.0.0.1:" in line
    assert "--no-check-environment" in line
    # Run anyway: the module next to the flow file travels, the package does not.
    result = run("run", "flow.py", "--address", address, "--no-check-environment",
                 cwd=folder)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^\s*own\s+Success", result.stdout, re.M), result.stdout
    assert "No module named 'nbflowonlyclient'" in result.stdout


def test_the_scheduler_is_checked_for_what_unpickling_the_tasks_imports(
    far_cluster, project
):
    import nbflowonlyclient
    from distributed import Client

    from nbflow.executors._environment import check_cluster, flow_needs
    from nbflow.notebook import CellFunction

    address, _ = far_cluster
    # The value a cell reads travels with it: the scheduler unpickles it too.
    # A package imported inside a task's body is needed where it runs only.
    cell = CellFunction("clean", "y = thing.x", "<flowtask clean>", ("y",),
                        namespace={"thing": nbflowonlyclient.Thing()})
    needs = flow_needs({"clean": cell, "use_versioned": use_versioned.fn})
    with Client(address, timeout=30, set_as_default=False) as client:
        found = check_cluster(client, needs, address)
    assert found.workers == 2
    assert "missing on 2 workers and the scheduler: nbflowonlyclient (cell 'clean')" in (
        found.problems)
    assert "missing on 1 worker: nbflowversioned (task 'use_versioned')" in (
        found.problems)
    (detail,) = [d for d in found.details if d.startswith("'nbflowonlyclient'")]
    assert detail.endswith(", the scheduler, used by cell 'clean'")


def test_two_people_on_one_cluster_keep_their_own_modules(far_cluster, project, tmp_path):
    from _cli import run

    address, _ = far_cluster
    with Flow("mine") as flow:
        result = use_module(3)
    assert _run(flow, address).result[result].result == (6, 1)
    # Someone else (another process, another folder) runs their own module.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "otherlib.py").write_text("NAME = 'other'\n")
    (theirs / "flow.py").write_text(
        "from nbflow import Flow, task\nimport otherlib\n\n\n@task\ndef name():\n"
        "    return otherlib.NAME\n\n\nwith Flow('theirs') as flow:\n    name()\n")
    done = run("run", "flow.py", "--address", address, cwd=theirs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'other'" in done.stdout
    # My module is still there for my next run.
    state = _run(flow, address)
    assert state.result[result].result == (6, 1), state.result[result].message


def test_distributed_version_table_is_not_shown_for_what_the_flow_does_not_use(
    project, tmp_path, recwarn
):
    from distributed.versions import VersionMismatchWarning

    far = tmp_path / "elsewhere"
    far.mkdir()
    # The workers say they have toolz 0.1.0: distributed's check would print
    # its table; no task of this flow uses toolz.
    executor = DaskExecutor(cluster_class=elsewhere_cluster, cluster_kwargs={
        "folder": str(far), "versions": (("toolz", "0.1.0"),)})
    with Flow("quiet") as flow:
        result = use_module(2)
    state = flow.run(executor=executor)
    assert state.result[result].result == (4, 1), state.result[result].message
    assert not [w for w in recwarn if issubclass(w.category, VersionMismatchWarning)]


def far_adaptive_cluster(folder: str, **kwargs):
    """A ``cluster_class`` factory for adaptive scaling: a ``SpecCluster`` (its
    scheduler in this process) whose workers are ``dask worker`` processes
    started in ``folder`` with only nbflow on their path.
    """
    import asyncio
    import subprocess

    from _processes import DASK
    from distributed import Scheduler, SpecCluster
    from distributed.deploy.spec import ProcessInterface

    class FarWorker(ProcessInterface):
        def __init__(self, scheduler: str, name: str | None = None) -> None:
            super().__init__()
            self.scheduler_address = scheduler
            self.name = name

        async def start(self) -> None:
            log = open(Path(folder) / f"adaptive-{self.name}.log", "wb")  # noqa: SIM115
            self.proc = await asyncio.create_subprocess_exec(
                DASK, "worker", self.scheduler_address, "--host", "127.0.0.1",
                "--nthreads", "1", "--no-dashboard", "--name", str(self.name),
                cwd=folder, env={**os.environ, "PYTHONPATH": WORKTREE},
                stdout=log, stderr=subprocess.STDOUT)
            await super().start()

        async def close(self) -> None:
            if self.proc.returncode is None:
                self.proc.terminate()
                await self.proc.wait()
            await super().close()

    return SpecCluster(
        scheduler={"cls": Scheduler, "options": {
            "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}},
        worker={"cls": FarWorker, "options": {}},
        **kwargs,
    )


@task
def double_slowly(x: int) -> int:
    import mylib

    time.sleep(0.5)
    return mylib.double(x)


def test_adaptive_cluster_workers_that_start_later_elsewhere_get_the_code(
    project, tmp_path, no_leaked_processes
):
    far = tmp_path / "adaptive"
    far.mkdir()
    executor = DaskExecutor(cluster_class=far_adaptive_cluster,
                            cluster_kwargs={"folder": str(far)},
                            adapt_kwargs={"minimum": 0, "maximum": 2})
    with Flow("adaptive") as flow:
        doubled = double_slowly.map([1, 2, 3, 4])
    # No worker yet when the code is sent: the ones adaptive scaling starts get it.
    state = flow.run(executor=executor)
    assert state.is_successful(), [s.message for s in state.result[doubled].map_states]
    assert state.result[doubled].result == [2, 4, 6, 8]
    assert list(far.glob("adaptive-*.log"))  # it did start workers there


def test_flow_run_magic_refuses_in_one_line_and_hints_at_data_files(far_cluster, project):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from nbflow.notebook import CellFailed, current_flow, reset_flow

    address, _ = far_cluster
    folder, _ = project
    (folder / "data.csv").write_text("a,b\n")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbflow")
    reset_flow()
    try:
        current_flow().executor = DaskExecutor(address=address)
        ip.run_cell_magic("flowtask", "clean",
                          "import nbflowonlyclient\nv = nbflowonlyclient.VERSION")
        with pytest.raises(UsageError) as refused:
            ip.run_line_magic("flow", "run")
        (line,) = str(refused.value).splitlines()
        assert "'nbflowonlyclient' (1.2.0 here) is missing on " in line
        assert "used by cell 'clean'" in line
        ip.run_line_magic("flow", "remove clean")
        # The notebook's module travels; its data file does not, and says so.
        ip.run_cell_magic("flowtask", "load",
                          "import mylib\nx = mylib.VALUE\ntext = open('data.csv').read()")
        with pytest.raises(CellFailed, match="'data.csv' exists here but not where "
                           "the task ran: data files do not travel"):
            ip.run_line_magic("flow", "run")
    finally:
        reset_flow()
        current_flow().executor = None
        ip.run_line_magic("unload_ext", "nbflow")


OTHER_PYTHON_PRELOAD = '''
"""Make this worker say it runs another Python minor version (see the test)."""
import collections
import sys

real = sys.version_info
VersionInfo = collections.namedtuple(
    "VersionInfo", "major minor micro releaselevel serial")
OTHER = VersionInfo(real.major, real.minor - 1, 0, "final", 0)


def dask_setup(worker):
    sys.version_info = OTHER
    sys.version = "%d.%d.0 (another Python)" % OTHER[:2]
'''


def test_worker_on_another_python_minor_version_is_refused_in_one_line(tmp_path):
    """A worker with another Python minor version stops the run before
    anything runs, in one line naming both versions and the worker.

    This machine has one Python (Debian 12: ``/usr/bin/python3.11`` only, the
    venv's is 3.11 too; no second minor version is packaged, and building one
    or making a second venv with dask for it is not cheap), so the worker is a
    real ``dask worker`` of this Python whose preload makes it *report* the
    previous minor version: it replaces ``sys.version_info`` in that worker
    process, which is what any code asking the worker's Python sees. nbflow's
    check runs unmodified: the same ``client.run`` round trip to the real
    worker process, the same comparison here.
    """
    preload = tmp_path / "otherpython.py"
    preload.write_text(OTHER_PYTHON_PRELOAD)
    marker = tmp_path / "ran.txt"
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    other = f"{sys.version_info[0]}.{sys.version_info[1] - 1}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", WORKTREE)
        scheduler, address = start_scheduler(tmp_path)
        workers = [start_worker(tmp_path, address, name="same")]
        workers.append(start_worker(tmp_path, address, "--preload", str(preload),
                                    name="older"))
    try:
        wait_for_workers(address, 2)
        from distributed import Client
        from distributed.versions import VersionMismatchWarning

        with warnings.catch_warnings():  # distributed's table, for this client
            warnings.simplefilter("ignore", VersionMismatchWarning)
            client = Client(address, timeout=30, set_as_default=False)
        with client:
            older = [a for a, w in client.scheduler_info(n_workers=-1)[
                "workers"].items() if w["name"] == "older"]
        with Flow("other-python") as flow:
            touch(str(marker))
        with pytest.raises(ClusterEnvironmentError) as caught:
            _run(flow, address)
    finally:
        for worker in workers:
            stop(worker)
        stop(scheduler)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".")
    assert f"Python {other} on {older[0]} ({here} here)" in message
    assert not marker.exists()  # nothing ran


def _refused_on_a_late_worker(message: str | None) -> None:
    assert message is not None
    assert "\n" not in message and message.endswith(".")
    assert message.startswith("The workers of ")
    assert "'nbflowonlyclient' (1.2.0 here) is missing on tcp://127.0.0.1:" in message
    assert "used by task 'use_only_client'" in message
    assert "check_environment=False" in message


def test_adaptive_workers_that_join_after_the_check_check_themselves(
    project, tmp_path, no_leaked_processes
):
    far = tmp_path / "adaptive"
    far.mkdir()
    executor = DaskExecutor(cluster_class=far_adaptive_cluster,
                            cluster_kwargs={"folder": str(far)},
                            adapt_kwargs={"minimum": 0, "maximum": 1})
    with Flow("adaptive-lacking") as flow:
        lacking = use_only_client()
        own = use_module(3)
    # No worker when the run checks (the scheduler, here, has everything);
    # the worker adaptive scaling starts lacks nbflowonlyclient.
    state = flow.run(executor=executor)
    _refused_on_a_late_worker(state.result[lacking].message)
    assert state.result[lacking].is_failed()
    # A task that does not use it runs there.
    assert state.result[own].result == (6, 1), state.result[own].message


def test_dask_worker_that_joins_an_existing_cluster_after_the_check_checks_itself(
    project, tmp_path
):
    from distributed import Client

    site = tmp_path / "good-site"
    _fake_distribution(site, "nbflowonlyclient", "1.2.0")
    release = tmp_path / "release"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([WORKTREE, str(site)]))
        scheduler, address = start_scheduler(tmp_path)
        good = start_worker(tmp_path, address, name="good")
    late = None
    try:
        wait_for_workers(address, 1)
        with Flow("late-lacking") as flow:
            gate = wait_for_file(str(release), time.time() + 120)
            lacking = use_only_client(upstream_tasks=[gate])
        run = FlowRun(flow, executor=DaskExecutor(address=address)).start()
        with Client(address, timeout=30, set_as_default=False) as client:
            deadline = time.monotonic() + 60  # the check passed: the gate runs
            while not any(client.processing().values()):
                assert time.monotonic() < deadline and run.state is None
                time.sleep(0.05)
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PYTHONPATH", WORKTREE)  # without nbflowonlyclient
                late = start_worker(tmp_path, address, name="late")
            client.wait_for_workers(2, timeout=60)
            # Only the late worker is left to run the rest.
            good.kill()
            good.wait(30)
            release.write_text("go")
            state = run.join(120)
        assert state is not None
        assert state.result[gate].is_successful(), state.result[gate].message
        _refused_on_a_late_worker(state.result[lacking].message)
    finally:
        release.write_text("go")
        for proc in (good, late):
            if proc is not None:
                stop(proc)
        stop(scheduler)
