"""The notebook layer's own cost: ``%%flowtask`` + ``%flow run`` vs plain cells.

Not part of the test suite. Run it with the project's interpreter::

    python benchmarks/bench_notebook.py            # 200 cells, 5 repeats
    python benchmarks/bench_notebook.py --cells 500 --repeats 3

In one IPython ``InteractiveShell`` (no kernel, no frontend), with ``N`` trivial
cells ``v{i} = v{i-1} + 1`` (a chain, so every cell reads the one above):

* ``plain``: ``shell.run_cell`` of each cell, as a person running them would;
* ``register``: ``%%flowtask`` of each cell (parse, analyse, rebind the flow);
* ``flow run``: one ``%flow run`` on LocalExecutor (checks, the run with the
  text progress listener, writing every name back);
* ``register + run``: the two together, against ``plain``.

Times are medians of the repeats; printed per cell and as ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time


def cells(n: int) -> list[str]:
    return ["v0 = 0"] + [f"v{i} = v{i - 1} + 1" for i in range(1, n)]


def measure(shell, sources: list[str]) -> dict[str, float]:
    from nbflow.notebook import current_flow, reset_flow

    reset_flow()
    current_flow().executor = None
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        for source in sources:
            shell.run_cell(source, store_history=False)
        plain = time.perf_counter() - start
        for i in range(len(sources)):
            shell.user_ns.pop(f"v{i}", None)

        start = time.perf_counter()
        for i, source in enumerate(sources):
            shell.run_cell_magic("flowtask", f"c{i}", source)
        register = time.perf_counter() - start

        start = time.perf_counter()
        shell.run_line_magic("flow", "run")
        run = time.perf_counter() - start
    assert shell.user_ns[f"v{len(sources) - 1}"] == len(sources) - 1
    return {"plain": plain, "register": register, "flow run": run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbflow")
    sources = cells(args.cells)
    measure(shell, sources[:20])  # warm up imports
    runs = [measure(shell, sources) for _ in range(args.repeats)]
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    median["register + run"] = median["register"] + median["flow run"]
    n = args.cells
    print(f"{n} trivial cells, LocalExecutor, median of {args.repeats} runs")
    print(f"{'':16}{'total s':>10}{'per cell ms':>14}{'x plain':>10}")
    for key, value in median.items():
        ratio = value / median["plain"]
        print(f"{key:16}{value:10.3f}{1000 * value / n:14.3f}{ratio:10.2f}")


if __name__ == "__main__":
    main()
