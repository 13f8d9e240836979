"""Where the data lives: nbflow's DaskExecutor next to plain ``Client.submit``.

Not part of the test suite. Run it with the project's interpreter::

    python benchmarks/bench_data.py               # 8 x 250 MB, 3 repeats
    python benchmarks/bench_data.py --mb 50 -n 1  # a quick look

Eight numpy arrays of ``--mb`` MB are made, doubled and summed (2 GB of
intermediates made and 2 GB doubled at the default size) on a ``LocalCluster``
of 2 worker processes with 1 thread each, in two shapes:

* ``map``: ``make.map(range(8))`` -> ``double.map`` -> ``total.map`` -> one sum;
* ``chain``: eight separate chains ``make(i)`` -> ``double`` -> ``total``, then one sum.

The plain side submits the same functions with ``Client.submit`` on a client
already connected, and gathers only the eight totals (the arrays are freed as
soon as their consumers ran: nothing holds their futures). The nbflow sides
run ``flow.run(executor=DaskExecutor(address=...))`` of a flow built
beforehand (its client connects per run, as a user's does): ``nbflow`` keeps
every value readable on the cluster while the run's state is held (so the
cluster holds all 16 arrays, as a plain program that kept its futures
would); ``nbflow-rt`` passes ``return_tasks=[the sum]``, so the arrays are
freed as the run goes, as in the plain program. Reported per side: wall
time and the driver's peak RSS growth above its RSS before the run (sampled
every 5 ms in this process; the scheduler lives here too, the workers do
not), medians of the repeats, which are interleaved so other load hits both
sides alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
# the driver's peak RSS is measured as the data-on-the-cluster tests measure it
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from executors._data import PeakRSS  # noqa: E402

from nbflow import Flow, task, unmapped  # noqa: E402
from nbflow.executors import DaskExecutor  # noqa: E402

MB = 2**20
N = 8


def make(i: int, mb: int) -> np.ndarray:
    """An array of ``mb`` MB."""
    return np.full(mb * MB // 8, float(i))


def double(x: np.ndarray) -> np.ndarray:
    """Twice ``x``: a new array as large."""
    return x * 2


def total(x: np.ndarray) -> float:
    """The sum: a float, the only thing the driver needs."""
    return float(x.sum())


def grand(xs: list[float]) -> float:
    """The sum of the totals."""
    return float(sum(xs))


make_t, double_t, total_t, grand_t = task(make), task(double), task(total), task(grand)


def map_flow(mb: int) -> Flow:
    """The map shape."""
    with Flow("data-map") as flow:
        grand_t(total_t.map(double_t.map(make_t.map(range(N), mb=unmapped(mb)))))
    return flow


def chain_flow(mb: int) -> Flow:
    """The chain shape."""
    with Flow("data-chain") as flow:
        grand_t([total_t(double_t(make_t(i, mb))) for i in range(N)])
    return flow


def plain_map(client: Any, mb: int) -> float:
    """The map shape with ``Client.map``."""
    made = client.map(make, range(N), mb=mb, pure=False)
    doubled = client.map(double, made, pure=False)
    totals = client.map(total, doubled, pure=False)
    return grand(client.gather(totals))


def plain_chain(client: Any, mb: int) -> float:
    """The chain shape with ``Client.submit``."""
    totals = [client.submit(total, client.submit(double, client.submit(
        make, i, mb, pure=False), pure=False), pure=False) for i in range(N)]
    return grand(client.gather(totals))


def measure(fn: Callable[[], float], expected: float) -> tuple[float, float]:
    """Wall seconds and peak RSS growth (MB) of one call of ``fn``."""
    import gc

    gc.collect()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        value = fn()
        wall = time.perf_counter() - t0
    assert value == expected, (value, expected)
    return wall, (rss.peak - rss.start) / MB


def main() -> None:
    """Run the comparison and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=250, help="MB per array")
    parser.add_argument("-n", "--repeats", type=int, default=3)
    args = parser.parse_args()
    import logging

    from distributed import Client, LocalCluster

    # Clients that lose the cluster as it closes at the end say so at length.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)

    expected = float(sum(2 * i * (args.mb * MB // 8) for i in range(N)))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      memory_limit=0, silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        address = cluster.scheduler_address
        executor = DaskExecutor(address=address)
        flows = {"map": map_flow(args.mb), "chain": chain_flow(args.mb)}
        plains = {"map": plain_map, "chain": plain_chain}

        def nbflow_run(shape: str, returned: bool = False) -> float:
            terminal = flows[shape].terminal_tasks()
            state = flows[shape].run(executor=executor,
                                     return_tasks=terminal if returned else None)
            assert state.is_successful(), state.message
            (result,) = [state.result[t].result for t in terminal]
            return float(result)

        # Warm up both sides (imports, pickling of the functions, connections).
        nbflow_run("map"), plain_map(client, 1)
        rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.repeats):
            for shape in ("map", "chain"):
                rows.setdefault((shape, "plain"), []).append(
                    measure(lambda s=shape: plains[s](client, args.mb), expected))
                rows.setdefault((shape, "nbflow"), []).append(
                    measure(lambda s=shape: nbflow_run(s), expected))
                rows.setdefault((shape, "nbflow-rt"), []).append(
                    measure(lambda s=shape: nbflow_run(s, True), expected))
    load = os.getloadavg()[0]
    print(f"# nbflow data benchmark  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# {N} x {args.mb} MB made, doubled, summed ({2 * N * args.mb / 1024:.1f} GB "
          f"of intermediates); LocalCluster 2 worker processes x 1 thread; "
          f"{args.repeats} repeats, medians; load avg {load:.1f}")
    print(f"{'shape':6} {'side':9} {'wall s':>8} {'peak RSS growth MB':>20}   runs (s / MB)")
    for shape in ("map", "chain"):
        plain_wall = statistics.median(w for w, _ in rows[(shape, "plain")])
        plain_rss = statistics.median(r for _, r in rows[(shape, "plain")])
        for side in ("plain", "nbflow", "nbflow-rt"):
            runs = rows[(shape, side)]
            wall = statistics.median(w for w, _ in runs)
            rss = statistics.median(r for _, r in runs)
            each = ", ".join(f"{w:.2f}/{r:.0f}" for w, r in runs)
            extra = ("" if side == "plain" else
                     f"   wall {wall / plain_wall:.2f}x plain, RSS {rss - plain_rss:+.0f} MB")
            print(f"{shape:6} {side:9} {wall:8.2f} {rss:20.0f}   {each}{extra}")


if __name__ == "__main__":
    main()
