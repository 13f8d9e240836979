"""Flows and executors shared by the conformance suite.

The module is pickled by value, so its functions reach workers that cannot
import the tests (a `dask worker` started from the command line).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cloudpickle

from nbflow import Flow, Parameter, task, unmapped
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor

cloudpickle.register_pickle_by_value(sys.modules[__name__])

KINDS = [
    "local",
    "dask-threads",
    "dask-processes",
    "dask-synchronous",
    "cluster-temporary",
    "cluster-class-string",
    "cluster-class",
    "cluster-factory",
    "cluster-adaptive",
    "cluster-existing",
    "cluster-in-process",
]
SLOW = {"dask-processes", "cluster-temporary", "cluster-existing"}
_IN_PROCESS = {"processes": False, "threads_per_worker": 2}


def make_cluster(n: int):
    """A cluster factory, as `cluster_class` may be a function."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=n, dashboard_address="127.0.0.1:0",
                        **_IN_PROCESS)


def make_executor(kind: str, address: str | None = None):
    from distributed import LocalCluster

    return {
        "local": lambda: LocalExecutor(),
        "dask-threads": lambda: LocalDaskExecutor("threads", num_workers=2),
        "dask-processes": lambda: LocalDaskExecutor("processes", num_workers=2),
        "dask-synchronous": lambda: LocalDaskExecutor("synchronous"),
        "cluster-temporary": lambda: DaskExecutor(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1}),
        "cluster-class-string": lambda: DaskExecutor(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": 1, **_IN_PROCESS}),
        "cluster-class": lambda: DaskExecutor(
            cluster_class=LocalCluster, cluster_kwargs={"n_workers": 2, **_IN_PROCESS}),
        "cluster-factory": lambda: DaskExecutor(
            cluster_class=make_cluster, cluster_kwargs={"n": 2}),
        "cluster-adaptive": lambda: DaskExecutor(
            cluster_kwargs={"n_workers": 0, **_IN_PROCESS},
            adapt_kwargs={"minimum": 1, "maximum": 2}),
        "cluster-existing": lambda: DaskExecutor(address=address),
        "cluster-in-process": lambda: DaskExecutor(address=address),
    }[kind]()


@task
def inc(x):
    return x + 1


@task
def add(x, y):
    return x + y


@task
def total(xs):
    return sum(xs)


@task
def boom(x):
    raise ValueError(f"boom on {x}")


@task
def where():
    """Where this task runs: pid and, on a Dask worker, the scheduler address."""
    try:
        from distributed import get_worker

        scheduler = get_worker().scheduler.address
    except (ImportError, ValueError):
        scheduler = None
    return os.getpid(), scheduler


@task(max_retries=2, retry_delay=0.01)
def flaky(path: str):
    """Fail twice, then succeed; each attempt appends where it ran to ``path``."""
    try:
        from distributed import get_worker

        scheduler = get_worker().scheduler.address
    except (ImportError, ValueError):
        scheduler = "-"
    with open(path, "a") as f:
        f.write(f"{scheduler}\n")
    attempts = len(Path(path).read_text().splitlines())
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


@task
def sleepy(i):
    time.sleep(3)
    return i


def diamond_flow():
    with Flow("diamond") as flow:
        a = inc(1)
        b = inc(a)
        c = add(a, 10)
        d = add(b, c)
    return flow, d


def chain_flow(n: int = 20):
    with Flow("chain") as flow:
        x = inc(0)
        for _ in range(n - 1):
            x = inc(x)
    return flow, x


def wide_map_flow(n: int = 50):
    with Flow("wide") as flow:
        mapped = add.map(range(n), unmapped(1))
        again = inc.map(mapped)
        s = total(again)
    return flow, mapped, again, s


def failure_flow():
    with Flow("failure") as flow:
        a = inc(1)
        bad = boom(a)
        after = inc(bad)
        fine = add(a, 5)
    return flow, bad, after, fine


def parameter_flow():
    with Flow("params") as flow:
        n = Parameter("n", default=3)
        k = Parameter("k")
        numbers = task(lambda n: list(range(n)), name="numbers")(n)
        scaled = task(lambda x, k: x * k, name="scale").map(numbers, unmapped(k))
        s = total(scaled)
    return flow, s


@task
def wait_for(path: str, _after=None):
    """Block until ``path`` exists (another task creates it); give up after 60 s."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return path


@task
def touch(path: str, _after=None):
    Path(path).touch()
    return path


@task
def rendezvous(me: str, other: str):
    """Announce ``me``, then wait for ``other``: only ends if both run at once."""
    Path(me).touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(other):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never ran alongside {me}")
        time.sleep(0.01)
    return me


@task
def exits(code):
    sys.exit(code)


@task
def interrupts():
    raise KeyboardInterrupt


def exiting_flow():
    """A task that calls sys.exit, one that raises KeyboardInterrupt, one fine."""
    with Flow("exiting") as flow:
        a, b, c = exits(3), interrupts(), inc(1)
    return flow, (a, b, c)
