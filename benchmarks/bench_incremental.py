"""Incremental runs: ``%flow run`` after a one-cell edit and after a kernel restart.

Not part of the test suite. Run it with the project's interpreter::

    python benchmarks/bench_incremental.py               # all of it
    python benchmarks/bench_incremental.py --only kernel  # or: hashing

``kernel``: a real ``python3`` kernel (``jupyter_client``) in a temporary folder
runs a 20-cell notebook flow whose first cell costs ``--slow`` seconds (a sleep
and a 10 MB array), the others a few milliseconds each; the leaf cell ``c19``
sleeps ``--edited`` seconds. Timed inside the kernel, around ``%flow run``:

* ``first run``: nothing stored yet (everything runs, and is stored);
* ``after edit``: ``c19`` re-registered with a changed body, ``%flow run``;
  the target is its own time plus at most 0.1 s;
* ``after restart``: a new kernel, the notebook's cells again, ``%flow run``
  (everything reused from disk); the target is 0.1 s (any first ``%flow run``
  of a kernel pays the ``baseline`` too);
* ``after restart + edit``: then ``c19`` edited again and run;
* ``baseline``: the first ``%flow run`` of a new kernel with the cache off and
  cells that cost nothing: what any first run pays (imports, the live view).

``hashing``: the cost of the key of an input of 100 MB and 1 GB (a float64
numpy array, ``dask.base.tokenize`` as the cache calls it), next to the time to
compute that array (``numpy.random.default_rng().random``), and the cost of
storing it and reading it back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

SETUP = ["%load_ext nbflow", "import time, numpy as np"]


def cells(slow: float, edited: float, tag: int) -> list[str]:
    out = [f"%%flowtask c0\ntime.sleep({slow})\nbase = np.arange(1_250_000.0)"]
    for i in range(1, 19):
        up = "base" if i < 4 else f"v{i - 3}"
        out.append(f"%%flowtask c{i}\nv{i} = float({up}.sum() if hasattr({up}, 'sum') "
                   f"else {up}) + {i}")
    out.append(f"%%flowtask c19\ntime.sleep({edited})\nleaf = v18 * 2 + {tag}")
    return out


TIMED = ("import time as _t\n_s = _t.perf_counter()\n"
         "get_ipython().run_line_magic('flow', 'run')\n"
         "print('ELAPSED', _t.perf_counter() - _s)")


class Kernel:
    def __init__(self, cwd: str, cache: str = "on") -> None:
        from jupyter_client.manager import start_new_kernel

        env = {**os.environ, "NBFLOW_CACHE": cache}
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=cwd, env=env)

    def run(self, code: str) -> str:
        out: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=600)
        text = "".join(out)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"{code}\n{text}")
        return text

    def timed_run(self) -> tuple[float, str]:
        text = self.run(TIMED)
        line = next(ln for ln in text.splitlines() if ln.startswith("ELAPSED"))
        summary = next((ln for ln in text.splitlines() if ln.startswith("Cache:")), "")
        return float(line.split()[1]), summary

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def bench_kernel(slow: float, edited: float, repeats: int) -> None:
    rows: dict[str, list[float]] = {}
    summaries: dict[str, str] = {}
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as cwd:
            k = Kernel(cwd)
            for code in [*SETUP, *cells(slow, edited, 0)]:
                k.run(code)
            for name, tag in (("first run", None), ("after edit", 1)):
                if tag is not None:
                    k.run(cells(slow, edited, tag)[-1])
                elapsed, summaries[name] = k.timed_run()
                rows.setdefault(name, []).append(elapsed)
            k.stop()
            k = Kernel(cwd)
            for code in [*SETUP, *cells(slow, edited, 1)]:
                k.run(code)
            elapsed, summaries["after restart"] = k.timed_run()
            rows.setdefault("after restart", []).append(elapsed)
            k.run(cells(slow, edited, 2)[-1])
            elapsed, summaries["after restart + edit"] = k.timed_run()
            rows.setdefault("after restart + edit", []).append(elapsed)
            k.stop()
            # the baseline: the first %flow run of a new kernel, cache off, with
            # cells that cost nothing (imports, the live view, the run itself)
            k = Kernel(cwd, cache="off")
            for code in [*SETUP, *cells(0.0, 0.0, 1)]:
                k.run(code)
            elapsed, summaries["baseline"] = k.timed_run()
            rows.setdefault("baseline", []).append(elapsed)
            k.stop()
        print(f"repeat {r + 1}/{repeats} done", file=sys.stderr)
    print(f"\n20 cells, c0 costs {slow} s, the edited leaf c19 {edited} s; "
          f"median of {repeats}, seconds (wall, in the kernel, around %flow run)\n")
    print("| run | time | own cells | overhead | target | cache says |")
    print("| --- | --- | --- | --- | --- | --- |")
    own = {"first run": slow + edited, "after edit": edited, "after restart": 0.0,
           "after restart + edit": edited, "baseline": 0.0}
    for name, values in rows.items():
        t = statistics.median(values)
        target = "-" if name in ("first run", "baseline") else "<= 0.1 s"
        print(f"| {name} | {t:.3f} | {own[name]:.2f} | {t - own[name]:.3f} | {target} "
              f"| {summaries[name][:70]} |")


def bench_hashing(sizes_mb: list[int]) -> None:
    import numpy as np

    from nbflow.notebook import _cache_store, cell_keys
    from nbflow.notebook.runtime import CellResult

    cell_keys._token(np.zeros(3))  # import dask outside the timings
    print("\n| input | compute | hash (key) | store | read back |")
    print("| --- | --- | --- | --- | --- |")
    for mb in sizes_mb:
        n = mb * 2**20 // 8
        start = time.perf_counter()
        value = np.random.default_rng(0).random(n)
        compute = time.perf_counter() - start
        start = time.perf_counter()
        cell_keys._token(value)
        hashing = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as location:
            start = time.perf_counter()
            _cache_store.write_result(location, 4 * 2**30, "t", "k", {}, CellResult({"v": value}), None)
            store = time.perf_counter() - start
            start = time.perf_counter()
            back = _cache_store.read_result(_cache_store.open_store(location, 4 * 2**30), "k")
            assert back is not None
            back[0].value("v")
            read = time.perf_counter() - start
        del value, back
        print(f"| {mb} MB float64 array | {compute:.2f} s | {hashing:.3f} s "
              f"({hashing / compute:.0%}) | {store:.2f} s | {read:.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("kernel", "hashing"))
    parser.add_argument("--slow", type=float, default=3.0)
    parser.add_argument("--edited", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.only in (None, "kernel"):
        bench_kernel(args.slow, args.edited, args.repeats)
    if args.only in (None, "hashing"):
        bench_hashing([100, 1024])


if __name__ == "__main__":
    main()
