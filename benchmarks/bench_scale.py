"""Scale: one task mapped over 100,000 elements, with and without the live view.

Not part of the test suite. Run it with the project's interpreter::

    python benchmarks/bench_scale.py                       # the full set (~15 min)
    python benchmarks/bench_scale.py --n 20000 --repeats 1 # a quick look

The flow is ``inc.map(range(N))`` with ``inc(x) = x + 1``. It runs on

* ``LocalDaskExecutor(scheduler="threads", num_workers=2)``, next to plain Dask:
  ``dask.threaded.get`` of a graph of 100,000 ``inc`` tasks, graph built inside
  the clock (``dask.compute`` of 100,000 ``dask.delayed`` objects is no baseline:
  merging their one-task graphs took minutes here, and with graph optimisation
  the cull alone took over 10);
* ``DaskExecutor(address=...)`` on a ``LocalCluster`` this script starts (2 worker
  processes, 1 thread each), next to ``client.gather(client.map(inc, range(N)))``
  on the same cluster;

each nbflow run once with no listener and once with ``nbflow.widgets.RunView(flow)``
attached as a listener (no frontend needed: the view updates its widgets all the
same). Every run is a fresh Python process (so its memory figures start clean),
run in turn with the other variants of the same repeat, so the machine's load hits
them alike. Per run it measures, in the driver process only:

* wall time of the run (for plain Dask, graph building included), and the CPU
  time of the driver process (all its threads: less sensitive to other load);
* peak RSS above the RSS just before the run (sampled every 5 ms in a thread);
* with ``--tracemalloc`` one extra run per variant: the peak of Python allocations
  during the run (tracemalloc slows a run down, so these runs are not timed).

"Bytes per task" is the memory figure divided by N; the view's share is the
with-view figure minus the without-view one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

WORKERS = 2
VARIANTS = {
    "threads": ("nbflow", "nbflow+view", "dask"),
    "cluster": ("nbflow", "nbflow+view", "dask"),
}


def inc(x: int) -> int:
    """The trivial task body."""
    return x + 1


# -- one run, in a child process ---------------------------------------------------


class _RssPeak:
    """Samples this process's RSS in a thread; ``peak`` is the highest seen."""

    def __init__(self, every: float = 0.005) -> None:
        import psutil

        self._process = psutil.Process()
        self._every = every
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self._every):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _prepare(kind: str, variant: str, n: int, address: str | None) -> Any:
    """What to call for one run (everything before it built outside the timing)."""
    if variant == "dask":
        if kind == "threads":
            from dask._task_spec import Task
            from dask.threaded import get

            def plain() -> Any:
                # The graph as dask.compute would hand it to the scheduler, built
                # inside the clock. (dask.compute of 100,000 dask.delayed objects
                # is no baseline: merging their one-task graphs took over 3 min.)
                graph = {f"inc-{i}": Task(f"inc-{i}", inc, i) for i in range(n)}
                return get(graph, list(graph), num_workers=WORKERS)

            return plain, None
        from distributed import Client

        client = Client(address)

        def on_cluster() -> Any:
            return client.gather(client.map(inc, range(n)))

        return on_cluster, client
    from nbflow import Flow, task
    from nbflow.executors import DaskExecutor, LocalDaskExecutor

    with Flow("scale") as flow:
        task(inc).map(list(range(n)))
    if variant == "nbflow+view":
        from nbflow.widgets import RunView  # imported (ipywidgets too) before the clock

    def nbflow_run() -> Any:
        executor = (LocalDaskExecutor(scheduler="threads", num_workers=WORKERS)
                    if kind == "threads" else DaskExecutor(address=address))
        listeners = [RunView(flow)] if variant == "nbflow+view" else []
        state = flow.run(executor=executor, listeners=listeners)
        if not state.is_successful():
            raise RuntimeError(f"the flow did not succeed: {state!r}")
        return state

    return nbflow_run, None


def one_run(kind: str, variant: str, n: int, address: str | None, trace: bool) -> dict:
    """Run one variant once in this process; return its figures."""
    import tracemalloc

    import psutil

    run, client = _prepare(kind, variant, n, address)
    if kind == "threads":
        import dask.threaded  # noqa: F401 - imported before the clock on every side
    if kind == "cluster":
        # a client is connected before the clock starts on both sides (nbflow
        # connects its own inside the run: that is part of its cost)
        from distributed import Client

        warm = client or Client(address)
        warm.run(lambda: None)
    gc.collect()
    before = psutil.Process().memory_info().rss
    if trace:
        tracemalloc.start()
    with _RssPeak() as rss:
        c0, t0 = time.process_time(), time.perf_counter()
        result = run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"wall": wall, "cpu": cpu, "rss": rss.peak - before}
    if trace:
        out["traced"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    del result
    return out


# -- the driver ----------------------------------------------------------------------


def _child(kind: str, variant: str, n: int, address: str | None, trace: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", kind, variant,
           "--n", str(n)]
    if address:
        cmd += ["--address", address]
    if trace:
        cmd.append("--tracemalloc")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind}/{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(kind: str, n: int, repeats: int, address: str | None, trace: bool,
            variants: tuple[str, ...] = VARIANTS["threads"]) -> dict[str, dict[str, Any]]:
    """Median figures of each variant of ``kind``; runs interleaved."""
    samples: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(repeats):
        for variant in variants:
            got = _child(kind, variant, n, address, trace=False)
            samples[variant].append(got)
            print(f"  {kind:8} {variant:12} repeat {r + 1}: {got['wall']:7.2f} s, "
                  f"CPU {got.get('cpu', 0):7.2f} s, RSS +{got['rss'] / 2**20:7.1f} MiB",
                  flush=True)
    figures: dict[str, dict[str, Any]] = {}
    for variant, got in samples.items():
        figures[variant] = {
            "walls": [g["wall"] for g in got],
            "wall": statistics.median(g["wall"] for g in got),
            "cpu": statistics.median(g.get("cpu", 0) for g in got),
            "rss": statistics.median(g["rss"] for g in got),
        }
        if trace:
            traced = _child(kind, variant, n, address, trace=True)["traced"]
            figures[variant]["traced"] = traced
            print(f"  {kind:8} {variant:12} tracemalloc peak {traced / 2**20:7.1f} MiB",
                  flush=True)
    return figures


def report(kind: str, n: int, figures: dict[str, dict[str, Any]]) -> None:
    """Print one table (Markdown) and the view's share."""
    runs = max(len(f["walls"]) for f in figures.values())
    print(f"\n### {kind}: {n:,} tasks, medians of up to {runs}\n")
    print("| variant | wall s (runs) | RSS peak MiB | RSS B/task | tracemalloc MiB "
          "| tracemalloc B/task |")
    print("| --- | --- | --- | --- | --- | --- |")
    for variant, f in figures.items():
        runs = ", ".join(f"{w:.1f}" for w in f["walls"])
        traced = f.get("traced")
        tm = (f"{traced / 2**20:.1f} | {traced / n:,.0f}" if traced is not None
              else "- | -")
        print(f"| {variant} | {f['wall']:.2f} ({runs}) | {f['rss'] / 2**20:.1f} "
              f"| {f['rss'] / n:,.0f} | {tm} |")
    if "nbflow" not in figures or "nbflow+view" not in figures:
        return
    base, view = figures["nbflow"], figures["nbflow+view"]
    print(f"\nwith view / without: {view['wall'] / base['wall']:.2f}x wall "
          f"(target <= 1.1x), {view['cpu'] / max(base['cpu'], 1e-9):.2f}x driver CPU")
    print(f"view's share: {(view['wall'] - base['wall']):+.2f} s, RSS "
          f"{(view['rss'] - base['rss']) / n:+,.0f} B/task", end="")
    if "traced" in view:
        print(f", tracemalloc {(view['traced'] - base['traced']) / n:+,.0f} B/task",
              end="")
    print(flush=True)
    if "dask" in figures:
        plain = figures["dask"]["wall"]
        print(f"nbflow / plain Dask: {base['wall'] / plain:.2f}x wall "
              f"(with view {view['wall'] / plain:.2f}x)\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="threads repeats")
    parser.add_argument("--cluster-repeats", type=int, default=1,
                        help="DaskExecutor repeats (100k on a cluster is slow)")
    parser.add_argument("--only", choices=list(VARIANTS), default=None)
    parser.add_argument("--tracemalloc", action="store_true",
                        help="one extra (untimed) run per variant under tracemalloc")
    parser.add_argument("--variants", default="nbflow,nbflow+view,dask",
                        help="comma-separated subset of nbflow, nbflow+view, dask")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "VARIANT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--address", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, variant = args.one
        print(json.dumps(one_run(kind, variant, args.n, args.address, args.tracemalloc)))
        return
    variants = tuple(v for v in args.variants.split(",") if v)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, N = {args.n:,}",
          flush=True)
    if args.only in (None, "threads"):
        figures = measure("threads", args.n, args.repeats, None, args.tracemalloc,
                          variants)
        report("LocalDaskExecutor(threads, 2) vs dask.threaded.get", args.n,
               figures)
    if args.only in (None, "cluster"):
        from distributed import LocalCluster

        with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
            figures = measure("cluster", args.n, args.cluster_repeats,
                              cluster.scheduler_address, args.tracemalloc, variants)
        report("DaskExecutor(address=LocalCluster(2 workers)) vs client.map",
               args.n, figures)


if __name__ == "__main__":
    main()
