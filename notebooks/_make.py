"""Write the user notebooks of ``notebooks/`` from the cells below.

The notebooks are documentation that CI executes (``tests/notebooks/``); they
are kept here as Python so that a change is one reviewable diff, and written
without outputs (clean on GitHub and Binder) and with stable cell ids::

    python notebooks/_make.py          # rewrite every notebook
    python notebooks/_make.py --check  # exit 1 if a notebook is out of date

Cells tagged ``raises-exception`` fail on purpose (nbclient goes on past
them); the other tags name cells the tests look at.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
Cell = tuple[str, str, tuple[str, ...]]


def md(text: str) -> Cell:
    """A markdown cell."""
    return ("markdown", text.strip("\n"), ())


def code(text: str, *tags: str) -> Cell:
    """A code cell, with optional tags."""
    return ("code", text.strip("\n"), tags)


QUICKSTART = [
    md("""
# nbflow quickstart

nbflow turns notebook cells into a **flow** of tasks and runs it on the
executor you choose: one thread, a pool of threads or processes, or a Dask
cluster. You keep writing ordinary cells; the ones that form your pipeline get
a `%%flowtask` line on top.

This notebook builds the flow of `examples/quickstart.py` from cells: load the
numbers 1 to `n`, square each one (in parallel, when the executor allows), and
add the squares up. Run the cells in order (or *Run All*).
"""),
    code("%load_ext nbflow"),
    md("""
Ordinary cells run as usual. The names they define (imports, helper functions,
constants) are there for the flow's cells when the flow runs.
"""),
    code("n = 10"),
    md("""
## Cells become tasks

`%%flowtask NAME` makes a cell a task of the notebook's flow. Registering a
cell does **not** run it: nbflow reads the code and tells you which names the
cell reads from other tasks and which names it provides.
"""),
    code("""
%%flowtask load_numbers
numbers = list(range(1, n + 1))
""", "load"),
    md("""
`--map numbers` runs the cell once for each element of `numbers`, with
`numbers` bound to that one element. Each name the cell provides becomes the
list of the per-element values, in order. The runs are independent, so a
parallel executor runs them at the same time.
"""),
    code("""
%%flowtask square --map numbers
squares = numbers * numbers  # here, `numbers` is one number
""", "square"),
    md("""
This cell reads `squares`, which the cell above provides, so nbflow draws an
edge from `square` to `total`: `total` runs once every square is done.
"""),
    code("""
%%flowtask total
total = sum(squares)
print(f"{len(squares)} squares added up")
"""),
    md("`%flow show` lists the tasks, what each one reads and provides, and the edges."),
    code("%flow show", "show"),
    md("""
## Run the flow

`%flow run` runs the flow on its executor (here the default, `LocalExecutor`:
one task after the other, in this kernel), shows the run live, and then puts
every name the tasks provided back into the notebook, as if the cells had run.
What a task printed appears under the run, marked with the task's name.
"""),
    code("%flow run", "run"),
    code("""
print(f"Sum of the squares of 1..{n}: {total}")
squares
""", "result"),
    md("""
## Change an input, run again

The flow reads `n` from the notebook each time it runs, so change it in an
ordinary cell and run again.
"""),
    code("""
n = 100
%flow run
print(f"Sum of the squares of 1..{n}: {total}")
""", "rerun"),
    md("""
## It is a normal `Flow`

`current_flow()` is the notebook's flow, an ordinary `nbflow.Flow`. Choose
where it runs by setting its executor in code, or in a panel with
`%flow panel`: the next notebook, `02-executors.ipynb`, is all about that.
"""),
    code("""
from nbflow.notebook import current_flow

flow = current_flow()
print(flow, "runs on", flow.executor or "LocalExecutor() (the default)")
""", "flow"),
    md("""
## The same flow in plain Python

`examples/quickstart.py` builds the same flow with `@task` functions, for
scripts (`nbflow run -p examples/quickstart.py` in a terminal). It runs here
just as well. Calling a task inside `with Flow(...)` does not run it: it adds
it to the flow, with an edge from every task among its arguments.
"""),
    code("""
from nbflow import Flow, Parameter, task


@task
def load_numbers(n):
    return list(range(1, n + 1))


@task
def square(x):
    return x * x


@task
def add_up(values):
    return sum(values)


with Flow("quickstart") as quickstart:
    count = Parameter("n", default=10)
    result = add_up(square.map(load_numbers(count)))

state = quickstart.run()
print(f"{state}: the sum is {state.result[result].result}")
""", "plain"),
    md("""
**Next:** `02-executors.ipynb`, where your tasks can run and how to choose.
"""),
]


EXECUTORS = [
    md("""
# Executors: where the tasks run

An **executor** decides where a flow's tasks run. nbflow has Prefect 1's
three, with the same options:

| executor | runs tasks on | pick it when your tasks... |
| --- | --- | --- |
| `LocalExecutor()` | this kernel's thread, one after the other | are quick, or you are debugging |
| `LocalDaskExecutor(scheduler="threads")` | a pool of threads in this kernel | wait on I/O, or run numeric code that releases the GIL (numpy, pandas) |
| `LocalDaskExecutor(scheduler="processes")` | a pool of processes on this machine | are pure-Python and CPU-bound |
| `DaskExecutor(...)` | a Dask cluster: a temporary one, or one that is already running | need more than one machine, or Dask's dashboard and performance report |

Each choice below is made twice: once in the **executor panel** (a widget; it
shows the Python code of what you chose, to paste into a script) and once in
**code**. Then the same small flow runs on it.
"""),
    code("""
%load_ext nbflow
import os
import threading
import time

from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from nbflow.notebook import current_flow

flow = current_flow()
""", "setup"),
    md("""
The flow: eight pieces of work that each take a moment (a stand-in for reading
a file) and note the process and thread they ran in; then a summary.
"""),
    code("""
%%flowtask pieces
pieces = list(range(8))
"""),
    code("""
%%flowtask work --map pieces --no-cache
# --no-cache: `where` depends on the executor, which no cell key covers
time.sleep(0.1)
where = (os.getpid(), threading.get_ident())
"""),
    code("""
%%flowtask summary
summary = (f"{len(pieces)} pieces ran in {len({pid for pid, _ in where})} process(es), "
           f"on {len(set(where))} thread(s)")
"""),
    md("""
## LocalExecutor

The default. Every task runs in the kernel's own thread, one after the other:
no parallelism, nothing to set up, and `print`, `breakpoint()` and tracebacks
work exactly as in any cell. Start here; move on when your flow is slow.

**In the panel:** `%flow panel` opens the panel on the notebook's flow; click
**Local**. Every valid change you make becomes the flow's executor at once, and
the panel shows the Python code of your choice, to paste into a script. This
notebook must also run unattended, so each time it makes the same choice with
`panel.set(...)`, which sets the controls as your clicks would.
"""),
    code("""
panel = %flow panel
panel.set(kind="local")
panel
""", "panel-local"),
    md("**In code:**"),
    code("""
flow.executor = LocalExecutor()
%flow run
print(flow.executor, "->", summary)
""", "run-local"),
    md("""
## LocalDaskExecutor with threads

A pool of `num_workers` threads in this kernel (default: one per core). Threads
share the kernel's memory, so nothing is copied. Python runs one thread at a
time (the GIL), but waiting on I/O and most numpy, pandas or compression code
let other threads run meanwhile, so such tasks do run in parallel.

**In the panel:** click **LocalDask**, then **threads**, and type 4 in
`num_workers`.
"""),
    code("""
panel = %flow panel
panel.set(kind="local-dask", scheduler="threads", num_workers=4)
panel
""", "panel-threads"),
    md("**In code:**"),
    code("""
flow.executor = LocalDaskExecutor(scheduler="threads", num_workers=4)
%flow run
print(flow.executor, "->", summary)
""", "run-threads"),
    md("""
## LocalDaskExecutor with processes

A pool of `num_workers` processes on this machine. Each task runs in another
Python process, so pure-Python, CPU-bound code scales with the cores. The cost:
a task's inputs, results and the notebook values it reads are pickled and sent
across. nbflow checks that they can be before anything runs, and names the
cell and the value that cannot.

**In the panel:** **LocalDask**, **processes**, `num_workers` 2.
"""),
    code("""
panel = %flow panel
panel.set(kind="local-dask", scheduler="processes", num_workers=2)
panel
""", "panel-processes"),
    md("**In code:**"),
    code("""
flow.executor = LocalDaskExecutor(scheduler="processes", num_workers=2)
%flow run
print(flow.executor, "->", summary)
""", "run-processes"),
    md("""
## DaskExecutor with a temporary cluster

`DaskExecutor()` starts a `distributed.LocalCluster` for the run and shuts it
down when the run ends, also when it fails or is cancelled. `cluster_kwargs`
are the cluster's own keywords: `n_workers`, `threads_per_worker`,
`processes`, `memory_limit`, ... A Dask cluster brings the Dask dashboard
(the run view links to it while the flow runs) and the performance report
(`04-performance-report.ipynb`).

**In the panel:** **Dask**, **temporary**, `n_workers` 2, `threads_per_worker` 2.
"""),
    code("""
panel = %flow panel
panel.set(kind="dask", cluster="temporary", n_workers=2, threads_per_worker=2)
panel
""", "panel-temporary"),
    md("**In code:**"),
    code("""
flow.executor = DaskExecutor(cluster_kwargs={"n_workers": 2, "threads_per_worker": 2})
%flow run
print(flow.executor, "->", summary)
""", "run-temporary"),
    md("""
## DaskExecutor with a `cluster_class`

Any Dask cluster manager makes the temporary cluster: give its import path (or
the class) as `cluster_class` and its keywords as `cluster_kwargs`, for example
`"dask_jobqueue.SLURMCluster"` with `{"cores": 8, "memory": "16GB"}`, or
`"dask_kubernetes.operator.KubeCluster"`. Those need their packages and an HPC
queue or a Kubernetes cluster, so here the class is `LocalCluster` itself,
with `processes=False` (its workers are threads in the kernel: quick to start).

**In the panel:** **Dask**, **temporary**, `cluster_class`
`distributed.LocalCluster`, `n_workers` 1, and `{"processes": false}` in
`cluster_kwargs` (JSON).
"""),
    code("""
panel = %flow panel
panel.set(kind="dask", cluster="temporary", cluster_class="distributed.LocalCluster",
          n_workers=1, threads_per_worker=2, cluster_kwargs={"processes": False})
panel
""", "panel-cluster-class"),
    md("**In code:**"),
    code("""
flow.executor = DaskExecutor(
    cluster_class="distributed.LocalCluster",
    cluster_kwargs={"n_workers": 1, "threads_per_worker": 2, "processes": False},
)
%flow run
print(flow.executor, "->", summary)
""", "run-cluster-class"),
    md("""
## Adaptive scaling

With `adapt_kwargs` the temporary cluster grows when tasks queue up and shrinks
when workers sit idle, between `minimum` and `maximum` workers. It pays with
cluster managers that rent machines; locally it keeps idle memory low.

**In the panel:** **Dask**, **adaptive**, `minimum` 1, `maximum` 2.
"""),
    code("""
panel = %flow panel
panel.set(kind="dask", cluster="adaptive", minimum=1, maximum=2, cluster_class=None,
          n_workers=None, threads_per_worker=None, cluster_kwargs={"processes": False})
panel
""", "panel-adaptive"),
    md("**In code:**"),
    code("""
flow.executor = DaskExecutor(cluster_kwargs={"processes": False},
                             adapt_kwargs={"minimum": 1, "maximum": 2})
%flow run
print(flow.executor, "->", summary)
""", "run-adaptive"),
    md("""
## Connecting to an existing cluster

A cluster that is already running, shared by a team or started with
`dask scheduler` on one machine and `dask worker tcp://SCHEDULER:8786` on
others: give its scheduler's address. nbflow connects for the run and leaves
the cluster running afterwards.

Here a `LocalCluster` started in this kernel stands for it (`processes=False`
to be quick; its scheduler listens on TCP like a real one).
"""),
    code("""
from distributed import LocalCluster

cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                       protocol="tcp", host="127.0.0.1", dashboard_address="127.0.0.1:0")
cluster.scheduler_address
""", "cluster"),
    md("""
**In the panel:** **Dask**, **existing**, paste the address, and click
**Test connection**: it shows the cluster's workers, threads and memory (or
why it could not connect).
"""),
    code("""
panel = %flow panel
panel.set(kind="dask", cluster="existing", address=cluster.scheduler_address)
display(panel)
panel.test_connection().result(timeout=60).describe()  # what the button does
""", "panel-existing"),
    md("**In code:**"),
    code("""
flow.executor = DaskExecutor(address=cluster.scheduler_address)
%flow run
print(flow.executor, "->", summary)
print("The cluster is still up:", cluster.status.name)
""", "run-existing"),
    code("cluster.close()"),
    md("""
## Moving to a real cluster

On a real cluster the workers run on other machines, in other folders, with
their own Python packages. What nbflow does about it:

- **Your own code travels.** Modules that are part of your work rather than
  installed packages (a `helpers.py` next to the notebook, a package in the
  project folder) are sent to the scheduler and every worker before the first
  task, also to workers that join later. Edit one and the next run uses the new
  code.
- **Packages are checked, not sent.** Before anything runs, nbflow asks the
  workers (one round trip) for the versions of the packages your cells and
  tasks use. A missing one, another major.minor version or another Python
  stops the run with one line naming the package, the versions, the workers
  and the cell, e.g. `'pandas' (2.2.3 here) is missing on tcp://10.0.0.7:40123,
  used by cell 'clean'`. `DaskExecutor(check_environment=False)` (or
  `nbflow run --no-check-environment`) runs anyway. **Test connection** in the
  panel shows the same check.
- **Data files do not travel.** `open("data.csv")` on a worker reads the
  worker's folder. Put data where every worker can read it (a shared folder,
  `s3://...`) or read it in the notebook and pass it on; a task that fails on a
  relative path that exists here says so.

Here a module of your own, next to the notebook, and a cell that imports it:
"""),
    code("""
from pathlib import Path

Path("helpers.py").write_text(
    "def label(n):\\n    return f'{n} pieces, labelled by helpers.py'\\n")
""", "helpers"),
    code("""
%%flowtask labelled
import helpers
labelled = helpers.label(len(pieces))
"""),
    md("""
A `cluster_class` can be a function: it runs in this kernel, so it can build
the workers from this environment, as Prefect 1's factories did from
`prefect.context.image`. `client_environment()` gives this Python and the
installed distributions; `requirements([...])` gives `pip install` pins. A real
factory passes them on (`KubeCluster(env={"EXTRA_PIP_PACKAGES": " ".join(pins)})`,
or builds its image from them); this one prints them and starts a
`LocalCluster` as the stand-in.
"""),
    code("""
from distributed import LocalCluster

from nbflow.executors.dask import client_environment


def team_cluster(**kwargs):
    env = client_environment()
    pins = env.requirements(["dask", "distributed", "jupyter-nbflow"])
    print(f"Workers to build: Python {env.python}, pip install {' '.join(pins)}")
    return LocalCluster(processes=False, dashboard_address="127.0.0.1:0", **kwargs)


flow.executor = DaskExecutor(cluster_class=team_cluster, cluster_kwargs={"n_workers": 1})
%flow run
print(labelled)
""", "factory"),
    md("""
## Which one should I pick?

- **Debugging, or quick tasks:** `LocalExecutor`. Parallelism has a cost
  (threads, processes, messages); tiny tasks do not repay it.
- **I/O-bound** (reading files, databases, web APIs): threads,
  `LocalDaskExecutor(scheduler="threads", num_workers=...)`. Waiting does not
  hold the GIL, so use more threads than cores.
- **Numeric code that releases the GIL** (numpy, pandas, scikit-learn's
  compiled parts, compression): threads as well; no copying of big arrays.
- **Pure-Python, CPU-bound** (loops, parsing, string work):
  `LocalDaskExecutor(scheduler="processes")`, or a Dask cluster; threads would
  take turns on the GIL.
- **Beyond one machine, or more memory than it has:** a Dask cluster, a
  temporary one from a `cluster_class` (HPC, Kubernetes, a cloud) or an
  existing one by `address`.
- **Want to see what happened:** `DaskExecutor`: the dashboard while it runs,
  and the performance report afterwards.

**Next:** `03-parallel-workload.ipynb` measures the difference on a real workload.
"""),
]


WORKLOAD = [
    md("""
# A workload where parallelism pays

Many sensor logs, each parsed and checked for anomalies by pure-Python code:
the typical *pure-Python, CPU-bound* case. One mapped cell handles every file;
we time the flow on `LocalExecutor` (one file after the other) and on a
`LocalDaskExecutor` with processes (several files at once), and compare.

**What to expect.** The work is about seven seconds of one core's time, in 32
tasks of a fifth of a second each: long enough that starting the worker
processes (about a second of CPU in all) does not eat the gain. On two idle
cores, two processes finish it about 1.7x faster than one thread; on four
cores, four processes about 3x; the gain keeps growing with the cores while
each gets several files. On one core there is nothing to gain, and a busy
machine (other programs, a shared Binder) takes part of it: the comparison
below says when the machine was busy.
"""),
    code("""
%load_ext nbflow
import atexit
import os
import random
import shutil
import tempfile
import time
from collections import deque
from pathlib import Path

from nbflow.executors import LocalDaskExecutor, LocalExecutor
from nbflow.notebook import current_flow

flow = current_flow()
cores = os.cpu_count() or 1
workers = min(4, cores)
print(f"This machine has {cores} cores; the process pool gets {workers}.")


def busy():
    # How many programs want a core (the load average of the last minute),
    # or None where the system does not say.
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None
"""),
    md("""
First, the data: 32 CSV files of sensor readings in a temporary folder (an
ordinary cell: it runs now, not as part of the flow).
"""),
    code("""
folder = Path(tempfile.mkdtemp(prefix="nbflow-sensors-"))
# removed when the kernel (or `nbflow run`) exits, even if the last cell never runs
atexit.register(shutil.rmtree, folder, ignore_errors=True)
rng = random.Random(42)
for day in range(32):
    lines = ["time,sensor,temperature,humidity"]
    for second in range(12_000):
        sensor = rng.choice("ABCD")
        lines.append(f"{second},{sensor},{rng.gauss(20, 5):.3f},{rng.uniform(20, 90):.2f}")
    (folder / f"day-{day:02d}.csv").write_text("\\n".join(lines) + "\\n")

files = sorted(str(path) for path in folder.glob("*.csv"))
print(f"{len(files)} files, {sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB in {folder}")
"""),
    md("""
A helper that reads one file in plain Python and returns, per sensor, the
number of readings, their mean, and how many readings were anomalies: more than
three standard deviations away from that sensor's previous 300 readings.
Helpers from ordinary cells travel with the tasks, to other processes too.
"""),
    code("""
def summarise(path, window=300):
    recent, count, total, anomalies = {}, {}, {}, {}
    with open(path) as f:
        next(f)  # the header
        for line in f:
            _, sensor, temperature, _ = line.split(",")
            value = float(temperature)
            past = recent.setdefault(sensor, deque(maxlen=window))
            if len(past) == window:
                mean = sum(past) / window
                std = (sum((x - mean) ** 2 for x in past) / window) ** 0.5
                if abs(value - mean) > 3 * std:
                    anomalies[sensor] = anomalies.get(sensor, 0) + 1
            past.append(value)
            count[sensor] = count.get(sensor, 0) + 1
            total[sensor] = total.get(sensor, 0.0) + value
    return {s: (count[s], total[s] / count[s], anomalies.get(s, 0)) for s in sorted(count)}
"""),
    md("The flow: one task per file, then one that combines the per-file summaries."),
    code("""
%%flowtask check --map files --no-cache
# --no-cache: the runs below are timed, and the cell reads files
summary = summarise(files)  # `files` is one path here
"""),
    code("""
%%flowtask combine
readings = sum(n for day in summary for n, _, _ in day.values())
anomalies = sum(a for day in summary for _, _, a in day.values())
report = f"{readings:,} readings in {len(summary)} files, {anomalies} anomalies"
"""),
    md("## One file after the other: `LocalExecutor`"),
    code("""
flow.executor = LocalExecutor()
load = [busy()]
start = time.perf_counter()
%flow run
one_thread = time.perf_counter() - start
first_report = report
print(f"LocalExecutor: {one_thread:.1f} s")
""", "run-local"),
    md("""
## Several files at once: `LocalDaskExecutor` with processes

Pure-Python code holds the GIL, so threads would take turns; processes run
truly in parallel, one file per core.
"""),
    code("""
flow.executor = LocalDaskExecutor(scheduler="processes", num_workers=workers)
load.append(busy())
start = time.perf_counter()
%flow run
in_processes = time.perf_counter() - start
print(f"LocalDaskExecutor(processes, {workers} workers): {in_processes:.1f} s")
""", "run-processes"),
    md("## Side by side"),
    code("""
assert report == first_report, "both executors must compute the same result"
print(report)
print(f"{'LocalExecutor':<42}{one_thread:6.1f} s")
print(f"{f'LocalDaskExecutor(processes, {workers} workers)':<42}{in_processes:6.1f} s")
print(f"Speedup: {one_thread / in_processes:.1f}x with {workers} processes "
      f"on {cores} cores")
if None not in load:
    # Before the second run, the load counts the first one too (one core).
    others = max(load[0], load[1] - 1)
    if others > cores - 0.5:
        print(f"The machine was busy: other programs wanted {others:.1f} of its "
              f"{cores} cores (load average), so the processes shared them and "
              "gained less than they would on idle cores.")
""", "speedup"),
    md("""
The time in processes includes starting them (about a second: each imports
Python afresh) and sending each task's inputs and results across. So the
speedup approaches the number of cores only when the tasks are long enough to
repay that; many tiny tasks, or tasks with big inputs, gain less (shrink
`window` to 30 above and see). On a busy machine (Binder shares its cores) it
also varies from run to run.

Try `LocalDaskExecutor(scheduler="threads")` too: for this workload it is
hardly faster than `LocalExecutor`, because of the GIL. For numpy-heavy tasks
threads are the better choice: no processes to start, nothing to copy.
"""),
    code("""
shutil.rmtree(folder)  # now; it would go when the kernel exits anyway
"""),
    md("**Next:** `04-performance-report.ipynb`: what happened on a Dask cluster, in detail."),
]


REPORT = [
    md("""
# The Dask performance report

A `DaskExecutor` with `performance_report_path` records Dask's **performance
report** of the run: the task stream (what ran where and when), worker
profiles, bandwidth, and the scheduler's view. nbflow writes it to that file,
links to it under the run, and `render_report` shows it inline. It is
self-contained HTML (its scripts are inlined), so it draws without internet
access, on Binder too. (About 2 MB: the saved run keeps only the link.)
"""),
    code("""
%load_ext nbflow
import numpy as np

from nbflow.executors import DaskExecutor
from nbflow.notebook import current_flow

flow = current_flow()
flow.executor = DaskExecutor(
    cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": False},
    performance_report_path="dask-report.html",
)
flow.executor
"""),
    md("""
A **terminal state handler** is called when a run has finished, after the
cluster has shut down: a good place to read the report and, say, archive it
or send it somewhere. It receives the flow, the flow's state and the states
of the reference tasks; returning a state would replace the flow's.
"""),
    code("""
def keep_report(flow, state, reference_task_states):
    html = flow.executor.performance_report
    print(f"Terminal state handler: the flow ended {state.name}; "
          f"the performance report is {len(html):,} characters of HTML.")
    return None


flow.terminal_state_handler = keep_report
""", "handler"),
    md("""
A little numeric work to look at: solve 16 random linear systems of a few
sizes, and check how close each solution is.
"""),
    code("""
def residual_of(n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal(n)
    return float(np.linalg.norm(a @ np.linalg.solve(a, b) - b))
"""),
    code("""
%%flowtask sizes
sizes = [100, 200, 300, 400] * 4
"""),
    code("""
%%flowtask solve --map sizes
residual = residual_of(sizes)  # `sizes` is one size here
"""),
    code("""
%%flowtask worst
worst = max(residual)
"""),
    md("""
Run it. Once the cluster has closed, the run's view links to the report's file
and the handler's line is printed.
"""),
    code("%flow run", "run"),
    code("""
print(f"The largest residual: {worst:.2e}")
"""),
    md("""
The report is a file next to this notebook, to open in a new browser tab or
share. `render_report` shows it inline, from the executor (or from the HTML):
scroll inside it; the *Task Stream* tab shows each task as a bar on its worker.
"""),
    code("""
from nbflow.widgets import render_report

render_report(flow.executor)
""", "render"),
    md("""
In a script, pass the handler to the flow itself, as in Prefect:

```python
with Flow("solve", executor=DaskExecutor(performance_report_path="report.html"),
          terminal_state_handler=keep_report) as flow:
    ...
```

Runs on the other executors have no Dask report; every run view keeps a small
*run timeline* (which task ran when), and `render_timeline` draws a detailed one
with Bokeh, also offline.

**Next:** `05-failures-retries-cancel.ipynb`.
"""),
]


FAILURES = [
    md("""
# Failures, retries and cancelling a run

Things go wrong: a bad value, a flaky server, a run that takes too long. This
notebook shows what nbflow does in each case.
"""),
    code("""
%load_ext nbflow
import time
from collections import Counter

from nbflow.executors import LocalDaskExecutor
from nbflow.notebook import current_flow, run_notebook_flow

flow = current_flow()
"""),
    md("""
## A failing cell

One reading is not a number, so `average` fails. `report`, which needs
`average`, then cannot run: it ends **TriggerFailed** (its upstream task
failed), not Failed, so you can tell the cause from the consequence.
"""),
    code("""
%%flowtask readings
readings = [12.5, 13.1, "n/a", 12.9]
"""),
    code("""
%%flowtask average
average = sum(readings) / len(readings)
"""),
    code("""
%%flowtask report
report = f"The average reading is {average:.1f}"
"""),
    md("""
`%flow run` shows the traceback of the failing cell, with the cell's own line,
wherever it ran (a thread, another process or a Dask worker). This cell fails
on purpose.
"""),
    code("%flow run", "raises-exception", "fail"),
    md("""
What succeeded is still written back into the notebook, so you can look at
the inputs of the failing cell right away:
"""),
    code("""
print("readings:", readings)
"""),
    md("""
`run_notebook_flow` is what `%flow run` calls; it returns the flow's state,
with one state per task, without raising:
"""),
    code("""
state = run_notebook_flow(get_ipython().user_ns)
print(state)
for task, task_state in state.result.items():
    print(f"  {task.name:<10}{task_state.name:<15}{task_state.message or ''}")
""", "states"),
    md("""
## Retries

`--retries N` runs a failing cell up to N more times, `--retry-delay SECONDS`
apart, before it counts as failed. The cell below stands for a call to a busy
server that succeeds on the third attempt. `%flow reset` empties the flow
first.
"""),
    code("""
%flow reset
attempts = []
"""),
    code("""
%%flowtask fetch --retries 3 --retry-delay 0.5
attempts.append(time.time())
if len(attempts) < 3:
    raise ConnectionError(f"the server is busy (attempt {len(attempts)})")
data = [1, 2, 3]
"""),
    code("""
%flow run
print(f"fetched {data} after {len(attempts)} attempts")
""", "retries"),
    md("""
## Cancelling a run

`%flow run --background` starts the run and returns at once: the kernel is
free while the run view keeps updating. Its **Cancel** button stops the run
as Ctrl-C would: tasks that have not finished end **Cancelled**, a temporary
cluster is shut down, and what finished is written back.

Twenty slow steps on two threads would take about ten seconds:
"""),
    code("""
%flow reset
flow.executor = LocalDaskExecutor(scheduler="threads", num_workers=2)
steps = list(range(20))
"""),
    code("""
%%flowtask step --map steps --no-cache
# --no-cache: this cell is here to be cancelled, not reused
time.sleep(1)
done = steps
"""),
    code("""
run = %flow run --background
""", "background"),
    md("""
Click **Cancel** in the run view above. A notebook run unattended cannot
click, so this cell does it from code after a moment: `run.cancel()` is what
the button calls. `run.join()` waits for the run to end.
"""),
    code("""
time.sleep(2)
run.cancel()
final = run.join(timeout=60)
step_state = next(s for t, s in final.result.items() if t.name == "step")
counts = Counter(child.name for child in step_state.map_states)
print(f"The flow ended {final.name}: steps {dict(counts)}")
""", "cancel"),
]

def incremental() -> list[Cell]:
    """``06-incremental.ipynb``: edit one cell, re-run only what changed."""
    return [
        md("""
# Incremental runs: edit one cell, re-run only what changed

Notebook work is a loop: change a cell, run again. `%flow run` reuses the
stored result of every cell whose code and inputs did not change, so a slow
load is paid once, not for every small edit downstream, and not again after a
kernel restart. Each run ends with one line: what was reused, and why every
other cell ran.
"""),
        code("%load_ext nbflow"),
        md("""
The cache is on by default, in `.nbflow/cache` next to the notebook. This
notebook keeps its own store and empties it first, so it shows the same thing
every time you run it.
"""),
        code("""
from nbflow.notebook.cache import clear_cache, configure_cache

configure_cache(".nbflow/06-incremental", enabled=True)
clear_cache()
"""),
        md("An ordinary cell defines a helper the flow's cells call."),
        code("""
import time


def normalise(values):
    top = max(values)
    return [v / top for v in values]
"""),
        md("""
Four cells: a slow load (two seconds stand for a big download or a query), a
cleaning step that calls the helper, a statistic, and a report.
"""),
        code("""
%%flowtask load
time.sleep(2)  # the expensive part
readings = [3, 1, 4, 1, 5, 9, 2, 6]
"""),
        code("""
%%flowtask clean
cleaned = normalise(readings)
"""),
        code("""
%%flowtask stats
mean = sum(cleaned) / len(cleaned)
"""),
        code("""
%%flowtask report
report = f"mean {mean:.3f} of {len(cleaned)} readings"
print(report)
"""),
        md("The first run runs everything (and stores each cell's outputs):"),
        code("%flow run", "first"),
        md("""
## Edit one cell

Change the report's wording and register the cell again (in Jupyter you would
edit the cell above and run it). Only `report` runs; the other three are
`Cached`: the load's two seconds are not paid again.
"""),
        code("""
%%flowtask report
report = f"mean {mean:.2f} over {len(cleaned)} readings"
print(report)
""", "edit-cell"),
        code("%flow run", "edit"),
        md("""
## Comments and spacing do not count

A cell's code is compared as a syntax tree: a new comment, blank lines or other
spacing change nothing, so nothing runs.
"""),
        code("""
%%flowtask stats
# the plain average
mean = sum(cleaned)  /  len(cleaned)
"""),
        code("%flow run", "comment"),
        md("""
## A helper changed

The key of a cell covers the functions it calls that ordinary cells define.
Change `normalise`, and the cells that call it (and their downstream) run
again; the load does not.
"""),
        code("""
def normalise(values):
    low, top = min(values), max(values)
    return [(v - low) / (top - low) for v in values]
"""),
        code("%flow run", "helper"),
        md("""
## What is stored, and forcing a re-run

`%flow cache` lists each task's stored result, its size and age. After a kernel
restart, *Run All* reuses every one of them. `%flow run --fresh NAME` runs a
task and everything downstream of it anyway; `%flow run --fresh` runs all.
"""),
        code("%flow cache", "listing"),
        code("%flow run --fresh stats", "fresh"),
        md("""
## What the cache cannot see

It tracks code and the values cells read from the notebook, not the outside
world: files, the network, the clock, unseeded random numbers. Mark a cell that
reads them `%%flowtask NAME --no-cache` (it and its downstream always run), or
read what changes into a variable the cell uses, e.g.
`mtime = os.path.getmtime(path)`. `--cache-for 1h` bounds a result's age. See
the README's *Incremental runs* for the whole list.
"""),
    ]


NOTEBOOKS = {
    "01-quickstart.ipynb": QUICKSTART,
    "02-executors.ipynb": EXECUTORS,
    "03-parallel-workload.ipynb": WORKLOAD,
    "04-performance-report.ipynb": REPORT,
    "05-failures-retries-cancel.ipynb": FAILURES,
    "06-incremental.ipynb": incremental(),
}


def build(name: str, cells: list[Cell]) -> nbformat.NotebookNode:
    """The notebook ``name`` of ``cells``, without outputs, with stable ids."""
    stem = name.split("-", 1)[0]
    nb = new_notebook(metadata={
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                       "name": "python3"},
        "language_info": {"name": "python"},
    })
    for i, (kind, source, tags) in enumerate(cells):
        make = new_markdown_cell if kind == "markdown" else new_code_cell
        cell = make(source, id=f"nb{stem}-{i:02d}")
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(argv: list[str]) -> int:
    """Write (or with ``--check``, compare) every notebook; return the exit status."""
    stale = []
    for name, cells in NOTEBOOKS.items():
        text = nbformat.writes(build(name, cells)) + "\n"
        path = HERE / name
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("Out of date (run python notebooks/_make.py):", ", ".join(stale))
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
