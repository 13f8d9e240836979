"""Per-task overhead of nbflow next to plain Python and plain Dask.

Not part of the test suite. Run it with the project's interpreter::

    python benchmarks/bench_overhead.py            # the full set (~10 min)
    python benchmarks/bench_overhead.py --quick    # fewer repeats, fewer cases

Workloads (trivial bodies: ``inc(x) = x + 1``):

* ``indep-1k`` / ``indep-10k``: 1,000 / 10,000 independent tasks;
* ``chain-1k``: a chain of 1,000 tasks, each taking the previous result;
* ``map-1k``: one task mapped over ``range(1000)``.

Each nbflow run is ``flow.run(executor=...)`` of a flow built beforehand, once
with no listener and once with one no-op listener (events on). The baseline is
the same work done without nbflow on the same scheduler, *including* building
its graph (``dask.delayed`` objects, or ``Client.submit`` calls):

* LocalExecutor: a plain loop of function calls, and ``dask.delayed`` with
  ``scheduler="synchronous"``;
* LocalDaskExecutor(threads / processes / synchronous): ``dask.delayed`` +
  ``dask.compute(scheduler=..., num_workers=...)``, same number of workers;
* DaskExecutor(address=...): ``Client.submit`` per task then ``gather``, with a
  client already connected to the same LocalCluster.

Times are medians of several repeats (the machine is shared and noisy); the
tables show microseconds per task and the ratio nbflow / baseline. For the
executors that start something per run (a process pool, a client connection),
the ``-fixed`` columns subtract each side's own one-task run, i.e. the marginal
cost per task without pool start or connection.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from nbflow import Flow, task  # noqa: E402
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor  # noqa: E402

WORKERS = 2


def inc(x: int) -> int:
    """The trivial task body."""
    return x + 1


inc_task = task(inc)


def noop_listener(batch: Any) -> None:
    """A listener that does nothing, so events are on but cost nothing else."""


# -- timing ---------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (pool workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of one call of ``fn`` (gc collected before)."""
    gc.collect()
    c0, t0 = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_seconds() - c0


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (wall, cpu) of each of ``fns``, run in turn ``repeats`` times, so
    that load from other processes hits every side alike.
    """
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(timed(fn))
    return {
        name: (
            statistics.median(w for w, _ in got),
            statistics.median(c for _, c in got),
        )
        for name, got in samples.items()
    }


# -- workloads: nbflow flows ----------------------------------------------------


def build_flows() -> dict[str, tuple[Flow, int]]:
    """Each workload as a flow, with its number of tasks."""
    flows: dict[str, tuple[Flow, int]] = {}
    for n, label in ((1000, "indep-1k"), (10000, "indep-10k")):
        with Flow(label) as flow:
            for i in range(n):
                inc_task(i)
        flows[label] = (flow, n)
    with Flow("chain-1k") as flow:
        x = inc_task(0)
        for _ in range(999):
            x = inc_task(x)
    flows["chain-1k"] = (flow, 1000)
    with Flow("map-1k") as flow:
        inc_task.map(list(range(1000)))
    flows["map-1k"] = (flow, 1000)
    with Flow("one") as flow:
        inc_task(0)
    flows["one"] = (flow, 1)
    return flows


def check_flow(state: Any, label: str) -> None:
    if not state.is_successful():
        raise SystemExit(f"benchmark flow {label} did not succeed: {state}")


# -- workloads: plain ---------------------------------------------------------------


def plain_loop(label: str) -> Any:
    """The work as plain function calls."""
    if label == "chain-1k":
        x = 0
        for _ in range(1000):
            x = inc(x)
        return x
    n = {"indep-1k": 1000, "indep-10k": 10000, "map-1k": 1000, "one": 1}[label]
    return [inc(i) for i in range(n)]


def delayed_graph(label: str) -> list[Any]:
    """The work as ``dask.delayed`` objects (what dask.compute gets)."""
    import dask

    d = dask.delayed(inc, pure=False)
    if label == "chain-1k":
        x = d(0)
        for _ in range(999):
            x = d(x)
        return [x]
    n = {"indep-1k": 1000, "indep-10k": 10000, "map-1k": 1000, "one": 1}[label]
    return [d(i) for i in range(n)]


def plain_dask(label: str, scheduler: str) -> Any:
    import dask

    kwargs = {} if scheduler == "synchronous" else {"num_workers": WORKERS}
    return dask.compute(*delayed_graph(label), scheduler=scheduler, **kwargs)


def raw_graph(label: str) -> tuple[dict[str, Any], list[str]]:
    """The work as a bare dask graph of ``Task`` nodes (what the scheduler runs)."""
    from dask._task_spec import Task, TaskRef

    graph: dict[str, Any] = {}
    if label == "chain-1k":
        graph["inc-0"] = Task("inc-0", inc, 0)
        for i in range(1, 1000):
            graph[f"inc-{i}"] = Task(f"inc-{i}", inc, TaskRef(f"inc-{i - 1}"))
        return graph, list(graph)
    n = {"indep-1k": 1000, "indep-10k": 10000, "map-1k": 1000, "one": 1}[label]
    for i in range(n):
        graph[f"inc-{i}"] = Task(f"inc-{i}", inc, i)
    return graph, list(graph)


def plain_get(label: str, scheduler: str) -> Any:
    """A bare graph run by the scheduler's ``get`` (no delayed, no optimisation)."""
    graph, keys = raw_graph(label)
    if scheduler == "threads":
        from dask.threaded import get

        return get(graph, keys, num_workers=WORKERS)
    if scheduler == "processes":
        from dask.multiprocessing import get

        return get(graph, keys, num_workers=WORKERS, optimize_graph=False)
    from dask.local import get_sync

    return get_sync(graph, keys)


def plain_submit(client: Any, label: str) -> Any:
    """The work as individual ``Client.submit`` calls, then one gather."""
    if label == "chain-1k":
        x = client.submit(inc, 0, pure=False)
        futures = [x]
        for _ in range(999):
            x = client.submit(inc, x, pure=False)
            futures.append(x)
        return client.gather(futures)
    n = {"indep-1k": 1000, "indep-10k": 10000, "map-1k": 1000, "one": 1}[label]
    return client.gather([client.submit(inc, i, pure=False) for i in range(n)])


# -- the cases --------------------------------------------------------------------


class Row:
    """One line of the table."""

    def __init__(self, group: str, label: str, n: int) -> None:
        self.group, self.label, self.n = group, label, n
        self.nb: float | None = None
        self.nb_ev: float | None = None
        self.base: dict[str, float] = {}
        self.nb_cpu = 0.0
        self.base_cpu: dict[str, float] = {}
        self.fixed: dict[str, float] = {}  # one-task run of each side


def run_nbflow(flow: Flow, make: Callable[[], Any], listen: bool) -> None:
    listeners = [noop_listener] if listen else []
    state = flow.run(executor=make(), listeners=listeners)
    check_flow(state, flow.name)


def measure_group(
    group: str,
    make: Callable[[], Any],
    baselines: dict[str, Callable[[str], Any]],
    flows: dict[str, tuple[Flow, int]],
    labels: list[str],
    repeats: Callable[[int], int],
    fixed: bool,
) -> list[Row]:
    rows = []
    names = labels + (["one"] if fixed else [])
    # one warm-up of each side (imports, first pool, function caches)
    run_nbflow(flows["one"][0], make, False)
    for base in baselines.values():
        base("one")
    for label in names:
        flow, n = flows[label]
        reps = repeats(n)
        row = Row(group, label, n)
        fns: dict[str, Callable[[], Any]] = {
            "nbflow": lambda flow=flow: run_nbflow(flow, make, False),
            "nbflow+ev": lambda flow=flow: run_nbflow(flow, make, True),
        }
        for name, base in baselines.items():
            fns[name] = lambda base=base, label=label: base(label)
        got = interleaved(fns, reps)
        row.nb, row.nb_cpu = got.pop("nbflow")
        row.nb_ev, _ = got.pop("nbflow+ev")
        row.base = {k: w for k, (w, _) in got.items()}
        row.base_cpu = {k: c for k, (_, c) in got.items()}
        rows.append(row)
        print(f"  {group:<28} {label:<10} done", file=sys.stderr, flush=True)
    if fixed:
        one = rows.pop()
        for row in rows:
            row.fixed = {
                "nbflow": one.nb or 0.0,
                "nbflow+ev": one.nb_ev or 0.0,
                **one.base,
            }
    return rows


# -- import time -----------------------------------------------------------------


def import_time(repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``import nbflow`` in a fresh interpreter."""
    code = (
        "import time; t, c = time.perf_counter(), time.process_time(); "
        "import nbflow; "
        "print(time.perf_counter() - t, time.process_time() - c)"
    )
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(HERE),
        )
        wall, cpu = map(float, out.stdout.split())
        times.append((wall, cpu))
    return statistics.median(w for w, _ in times), statistics.median(
        c for _, c in times
    )


# -- printing --------------------------------------------------------------------


def us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:9.1f}"


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'executor':<30} {'workload':<10} {'nbflow':>9} {'+events':>9} "
        f"{'baseline':<22} {'plain':>9} {'ratio':>6} {'ratio+ev':>8} {'cpu ratio':>9}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        assert row.nb is not None and row.nb_ev is not None
        first = True
        for name, base in row.base.items():
            lead = (
                (
                    f"{row.group:<30} {row.label:<10} {us(row.nb, row.n)} "
                    f"{us(row.nb_ev, row.n)}"
                )
                if first
                else " " * 60
            )
            cpu = row.base_cpu.get(name, 0.0)
            cpu_ratio = f"{row.nb_cpu / cpu:9.2f}" if cpu > 0.002 else f"{'-':>9}"
            print(
                f"{lead} {name:<22} {us(base, row.n)} {row.nb / base:6.2f} "
                f"{row.nb_ev / base:8.2f} {cpu_ratio}"
            )
            first = False
        if row.fixed:
            fx = row.fixed
            m = row.n - 1
            nb, nbe = row.nb - fx["nbflow"], row.nb_ev - fx["nbflow+ev"]
            for name, base in row.base.items():
                b = base - fx[name]
                print(
                    f"{'':<30} {'  -fixed':<10} {us(nb, m)} {us(nbe, m)} "
                    f"{name:<22} {us(b, m)} {nb / b:6.2f} {nbe / b:8.2f}"
                )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats; skip the process-based LocalCluster",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated groups: local,threads,processes,"
        "synchronous,distributed,distributed-processes,import",
    )
    args = parser.parse_args()
    quick = args.quick
    only = set(filter(None, args.only.split(",")))

    def want(name: str) -> bool:
        return not only or name in only

    def repeats(n: int, slow: bool = False) -> int:
        if quick:
            return 3 if (slow or n >= 10000) else 5
        return 5 if (slow or n >= 10000) else 9

    import dask
    import distributed

    print(
        f"# nbflow per-task overhead  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(
        f"# python {sys.version.split()[0]}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}, {os.cpu_count()} cores, "
        f"load avg {os.getloadavg()[0]:.1f}, {'quick' if quick else 'full'} run"
    )
    print(
        "# wall µs per task (medians); ratio = nbflow / plain wall time; +events = one "
        "no-op listener;"
    )
    print(
        "# cpu ratio = CPU seconds of this process and its reaped pool workers, "
        "nbflow / plain (less sensitive to other load; partial for a cluster)"
    )
    print()

    if want("import"):
        t, cpu = import_time(5 if quick else 9)
        print(
            f"import nbflow (fresh subprocess, median): {t * 1e3:.1f} ms wall, "
            f"{cpu * 1e3:.1f} ms CPU  (target < 50 ms: "
            f"{'met' if t < 0.05 else 'NOT met'})"
        )
        print()

    flows = build_flows()
    labels = ["indep-1k", "indep-10k", "chain-1k", "map-1k"]
    rows: list[Row] = []

    if want("local"):
        rows += measure_group(
            "LocalExecutor",
            LocalExecutor,
            {
                "plain loop": plain_loop,
                "delayed synchronous": lambda lb: plain_dask(lb, "synchronous"),
            },
            flows,
            labels,
            repeats,
            fixed=False,
        )
    for sched in ("threads", "processes", "synchronous"):
        if not want(sched):
            continue
        kwargs = {} if sched == "synchronous" else {"num_workers": WORKERS}
        rows += measure_group(
            f"LocalDaskExecutor({sched})",
            lambda s=sched, k=kwargs: LocalDaskExecutor(s, **k),
            {
                f"delayed {sched}": lambda lb, s=sched: plain_dask(lb, s),
                f"graph+get {sched}": lambda lb, s=sched: plain_get(lb, s),
            },
            flows,
            labels,
            lambda n, s=sched: repeats(n, slow=s == "processes"),
            fixed=sched == "processes",
        )
    for processes in (False, True):
        group = "distributed-processes" if processes else "distributed"
        if not want(group) or (processes and quick and not only):
            continue
        # --quick leaves out the 10k case on a cluster (minutes on a loaded machine)
        some = [lb for lb in labels if not (quick and lb == "indep-10k")]
        rows += bench_distributed(processes, flows, some, repeats)

    if rows:
        print_table(rows)
        summary(rows)


def bench_distributed(
    processes: bool,
    flows: dict[str, tuple[Flow, int]],
    labels: list[str],
    repeats: Callable[..., int],
) -> list[Row]:
    import logging

    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=processes,
        host="127.0.0.1",
        protocol="tcp://",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    try:
        address = cluster.scheduler_address
        return measure_group(
            f"DaskExecutor(address) {'procs' if processes else 'threads'}",
            lambda: DaskExecutor(address=address),
            {"Client.submit": lambda lb: plain_submit(client, lb)},
            flows,
            labels,
            lambda n: repeats(n, slow=True),
            fixed=True,
        )
    finally:
        client.close()
        cluster.close()


def summary(rows: list[Row]) -> None:
    print("Targets")
    for row in rows:
        assert row.nb is not None
        if row.group == "LocalExecutor":
            v = row.nb / row.n * 1e6
            print(
                f"  LocalExecutor {row.label:<10} {v:7.1f} µs/task  "
                f"(< 30 µs: {'met' if v < 30 else 'NOT met'})"
            )
        else:
            for name, base in row.base.items():
                r = row.nb / base
                line = (
                    f"  {row.group:<34} {row.label:<10} vs {name:<22} ratio "
                    f"{r:5.2f} (<= 1.3: {'met' if r <= 1.3 else 'NOT met'})"
                )
                if row.fixed:
                    m = (row.nb - row.fixed["nbflow"]) / (base - row.fixed[name])
                    line += f"  -fixed {m:5.2f}"
                print(line)


if __name__ == "__main__":
    main()
