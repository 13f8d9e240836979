"""Incremental runs in real kernels: edit a cell, re-run only what changed,
restart the kernel and reuse everything; a broken store is a miss.

Each cell appends its name to a log file when it runs, so what ran is checked
by side effects (and by the states the run's events carried), never by timing.
The kernels are real ``python3`` kernels started through ``jupyter_client`` in
a temporary folder, so the store is that folder's ``.nbflow/cache``.
"""

from __future__ import annotations

import ast
import os
import signal
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TIMEOUT = 240

SETUP = [
    "%load_ext nbflow",
    "import os\nLOG = os.path.abspath('runs.log')",
    # every state the runs' events carried, by task: the last run's are checked
    "from nbflow.engine.events import TaskStateChanged, subscribe\n"
    "STATES = {}\n"
    "_off = subscribe(lambda batch: STATES.update(\n"
    "    (e.task.name, e.new.name) for e in batch\n"
    "    if isinstance(e, TaskStateChanged) and e.map_index is None))",
    "def log_run(name):\n    with open(LOG, 'a') as f:\n        f.write(name + '\\n')",
    "def scale(v):\n    return v * 2",
]


def cell(name: str, body: str, options: str = "") -> str:
    """A ``%%flowtask`` cell that logs its name when it runs."""
    return f"%%flowtask {name} {options}\nlog_run({name!r})\n{body}"


CELLS = {
    "load": "import time\ntime.sleep(2)  # the slow upstream\nraw = list(range(100))",
    "clean": "cleaned = [x for x in raw if x % 2 == 0]",
    "feat_a": "a = sum(cleaned)",
    "feat_b": "b = scale(len(cleaned))",
    "feat_c": "c = max(cleaned)",
    "combo": "combo = a + b",
    "report1": "r1 = combo * 2",
    "report2": "r2 = c + 1",
    "leaf_x": "x = r1 + r2",
    "leaf_y": "y = b * 3",
    "summary": "s = (a, c)",
}


class Kernel:
    """A real kernel in ``cwd``, with the notebook cache on."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        env = {**os.environ, "NBFLOW_CACHE": "on"}
        env.pop("NBFLOW_CACHE_DIR", None)
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd),
                                            env=env, startup_timeout=TIMEOUT)

    def run(self, code: str, *, allow_errors: bool = False) -> str:
        """Execute ``code``; return what it printed (stdout and stderr)."""
        out: list[str] = []

        def hook(msg: dict) -> None:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(content["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(content["traceback"]))

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=TIMEOUT)
        text = "".join(out)
        if reply["content"]["status"] != "ok" and not allow_errors:
            raise AssertionError(f"cell failed:\n{code}\n{text}")
        return text

    def value(self, expression: str) -> str:
        return self.run(f"print(repr({expression}))").strip()

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernels(tmp_path):
    started: list[Kernel] = []

    def start() -> Kernel:
        k = Kernel(tmp_path)
        started.append(k)
        return k

    yield start
    for k in started:
        k.kc.stop_channels()
        if k.km.is_alive():
            k.km.shutdown_kernel(now=True)


def run_notebook(k: Kernel, cells: dict[str, str] = CELLS) -> str:
    for code in SETUP:
        k.run(code)
    for name, body in cells.items():
        k.run(cell(name, body))
    return flow_run(k)


def flow_run(k: Kernel, line: str = "") -> str:
    k.run("STATES.clear()")
    return k.run(f"%flow run {line}")


def ran(log: Path, before: list[str]) -> list[str]:
    """The cells that ran since ``before`` was read from the log."""
    lines = log.read_text().splitlines() if log.exists() else []
    return lines[len(before):]


def states(k: Kernel) -> dict[str, str]:
    result: dict[str, str] = ast.literal_eval(k.value("STATES"))
    return result


def test_edit_comment_helper_restart_and_fresh(kernels, tmp_path):
    log = tmp_path / "runs.log"
    k = kernels()
    out = run_notebook(k)
    assert sorted(ran(log, [])) == sorted(CELLS)
    assert "Cache: reused 0 of 11 tasks; ran load (first run)" in out
    assert set(states(k).values()) == {"Success"}
    x = k.value("x")

    # edit one leaf: it alone runs, everything else is Cached
    before = ran(log, [])
    k.run(cell("leaf_x", "x = r1 + r2 + 1000"))
    out = flow_run(k)
    assert ran(log, before) == ["leaf_x"]
    got = states(k)
    assert got.pop("leaf_x") == "Success"
    assert set(got.values()) == {"Cached"}
    assert "ran leaf_x (code changed)" in out
    assert k.value("x") == str(int(x) + 1000)

    # a comment and blank lines only: nothing runs
    before = ran(log, [])
    k.run(cell("clean", "# keep the even ones\n\ncleaned = [x for x in raw  if x % 2 == 0]"))
    out = flow_run(k)
    assert ran(log, before) == []
    assert set(states(k).values()) == {"Cached"}
    assert "Cache: reused 11 of 11 tasks." in out

    # a helper changed in an ordinary cell: its callers and their downstream run
    before = ran(log, [])
    k.run("def scale(v):\n    return v * 3")
    out = flow_run(k)
    assert sorted(ran(log, before)) == sorted(["feat_b", "combo", "report1", "leaf_x",
                                               "leaf_y"])
    assert "feat_b (helper 'scale' changed)" in out
    assert "combo (upstream 'feat_b' changed)" in out
    values = {n: k.value(n) for n in ("x", "y", "s", "b")}

    # a new kernel, the notebook as it now is, run all: everything is reused
    k.stop()
    k = kernels()
    before = ran(log, [])
    edited = {**CELLS, "leaf_x": "x = r1 + r2 + 1000",
              "clean": "# keep the even ones\n\ncleaned = [x for x in raw  if x % 2 == 0]"}
    for code in SETUP:
        k.run(code)
    k.run("def scale(v):\n    return v * 3")
    for name, body in edited.items():
        k.run(cell(name, body))
    out = flow_run(k)
    assert ran(log, before) == []
    assert set(states(k).values()) == {"Cached"}
    assert {n: k.value(n) for n in values} == values

    # --fresh TASK: it and its downstream run; --fresh: all
    before = ran(log, [])
    out = flow_run(k, "--fresh feat_c")
    assert sorted(ran(log, before)) == ["feat_c", "leaf_x", "report2", "summary"]
    assert "feat_c (--fresh)" in out
    before = ran(log, [])
    flow_run(k, "--fresh")
    assert sorted(ran(log, before)) == sorted(CELLS)
    # and %flow cache lists what is stored
    listing = k.run("%flow cache")
    assert "Cache at " in listing and "load:" in listing and "stored" in listing


def _value_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.val")] if root.exists() else []


SMALL = {
    "big": "import numpy as np\nbig = np.arange(200_000)",
    "total": "total = int(big.sum())",
}


def test_corrupt_entry_is_a_miss_with_one_warning(kernels, tmp_path):
    log = tmp_path / "runs.log"
    k = kernels()
    run_notebook(k, SMALL)
    # the largest file is big's result (total's is a few bytes)
    stored = max(_value_files(tmp_path / ".nbflow" / "cache"),
                 key=lambda p: p.stat().st_size)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same length
    stored.write_bytes(bytes(data))
    k.stop()

    k = kernels()
    before = ran(log, [])
    for code in SETUP:
        k.run(code)
    for name, body in SMALL.items():
        k.run(cell(name, body))
    out = flow_run(k)
    warnings = [line for line in out.splitlines() if line.startswith("nbflow cache:")]
    assert len(warnings) == 1 and "'big'" in warnings[0] and "unreadable" in warnings[0]
    assert ran(log, before) == ["big"]  # total's key did not change: reused
    assert "big (its stored result was unreadable)" in out
    assert k.value("total") == str(sum(range(200_000)))
    # it was stored again, readable: the next kernel reuses it
    k.stop()
    k = kernels()
    for code in SETUP:
        k.run(code)
    for name, body in SMALL.items():
        k.run(cell(name, body))
    before = ran(log, [])
    assert "reused 2 of 2" in flow_run(k)
    assert ran(log, before) == []


def test_size_bound_evicts_least_recently_used(kernels, tmp_path):
    log = tmp_path / "runs.log"
    blobs = {f"part{i}": f"part{i} = os.urandom(300_000)" for i in range(5)}
    setup = "from nbflow.notebook.cache import configure_cache\n" \
            "configure_cache(size_limit=1_000_000)"
    k = kernels()
    k.run(setup)
    run_notebook(k, blobs)
    k.stop()

    k = kernels()
    k.run(setup)
    before = ran(log, [])
    out = run_notebook(k, blobs)
    again = ran(log, before)
    # the first stored went first; the last ones are still there
    assert again and again == [f"part{i}" for i in range(len(again))]
    assert "part4" not in again
    assert "(its stored result expired or was evicted)" in out
    import diskcache

    with diskcache.Cache(str(tmp_path / ".nbflow" / "cache")) as store:
        assert store.volume() <= 1_000_000


def test_kernel_killed_while_writing_leaves_no_wrong_value(kernels, tmp_path):
    cache = tmp_path / ".nbflow" / "cache"
    n = 80_000_000  # 640 MB: written in chunks, so there is time to kill mid-write
    cells = {"big": f"import numpy as np\nbig = np.arange({n}, dtype=np.int64)"}
    k = kernels()
    for code in SETUP:
        k.run(code)
    k.run(cell("big", cells["big"]))
    pid = k.km.provisioner.process.pid
    msg_id = k.kc.execute("%flow run")
    # wait until the value file is being written, then SIGKILL the kernel
    deadline = time.monotonic() + TIMEOUT
    partial = None
    while partial is None and time.monotonic() < deadline:
        for path in _value_files(cache):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if 0 < size < n * 8:
                partial = path
                break
    assert partial is not None, "never saw the value being written"
    os.kill(pid, signal.SIGKILL)
    assert msg_id
    deadline = time.monotonic() + TIMEOUT
    while k.km.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not k.km.is_alive()
    assert partial.stat().st_size < n * 8  # the kill did cut the write short

    k2 = kernels()
    for code in SETUP:
        k2.run(code)
    k2.run(cell("big", cells["big"]))
    out = flow_run(k2)
    assert "ran big (first run)" in out
    assert states(k2) == {"big": "Success"}
    assert k2.value("(len(big), int(big[-1]), int(big[12345]))") == \
        f"({n}, {n - 1}, 12345)"


def test_existing_cluster_with_no_location_caches_in_its_memory(kernels, tmp_path,
                                                               existing_cluster):
    tests = Path(__file__).parent.parent
    k = kernels()
    for code in SETUP:
        k.run(code)
    k.run(f"import sys\nsys.path.insert(0, {str(tests)!r})\n"
          "import numpy as np\nfrom executors._data import MB, Payload, arrivals\n"
          "ARRIVALS = os.path.abspath('arrivals')\n"
          "from nbflow.executors import DaskExecutor\n"
          "from nbflow.notebook import current_flow\n"
          f"current_flow().executor = DaskExecutor(address={existing_cluster!r})")
    k.run(cell("load", "big = Payload(np.ones(50 * MB // 8), ARRIVALS)"))
    k.run(cell("size", "n = len(big.array)"))
    log = tmp_path / "runs.log"
    out = flow_run(k, "--memory-budget 1MB")
    line = (f"Cached in memory on the Dask cluster at {existing_cluster} for this "
            "session only; to keep results across sessions, set a cache location")
    assert out.count(line) == 1, out
    assert ran(log, []) == ["load", "size"]
    # the next run in this kernel reuses both where they are
    before = ran(log, [])
    out = flow_run(k, "--memory-budget 1MB")
    assert "Cache: reused 2 of 2 tasks." in out and out.count(line) == 1, out
    assert states(k) == {"load": "Cached", "size": "Cached"}
    assert ran(log, before) == []
    assert k.value("type(big).__name__") == "'ClusterValue'"
    assert k.value("n") == str(50 * 2**20 // 8)
    # the 50 MB never reached the kernel
    k.run("from pathlib import Path")
    assert k.value("os.getpid() in arrivals(Path(ARRIVALS))") == "False"


CHILDREN = ("CHILDREN = {}\n"
            "_off_children = subscribe(lambda batch: CHILDREN.update(\n"
            "    ((e.task.name, e.map_index), e.new.name) for e in batch\n"
            "    if isinstance(e, TaskStateChanged) and e.map_index is not None))")


def test_mapped_cell_reuses_each_element(kernels, tmp_path):
    log = tmp_path / "runs.log"
    mapped = {"items": "items = [1, 2, 3]",
              "square": "sq = items * items",  # --map items: one child per element
              "total": "total = sum(sq)"}

    def register(k: Kernel, cells: dict[str, str]) -> None:
        for name, body in cells.items():
            k.run(cell(name, body, "--map items" if name == "square" else ""))

    def children(k: Kernel) -> list[str]:
        k.run("CHILDREN.clear()")
        flow_run(k)
        got = ast.literal_eval(k.value("sorted(CHILDREN.items())"))
        return [state for _, state in got]

    k = kernels()
    for code in [*SETUP, CHILDREN]:
        k.run(code)
    register(k, mapped)
    assert children(k) == ["Success"] * 3
    assert ran(log, []) == ["items", "square", "square", "square", "total"]

    # unchanged: no child runs, each is Cached, the summary counts the cell reused
    before = ran(log, [])
    k.run("CHILDREN.clear()")
    out = flow_run(k)
    assert ran(log, before) == []
    assert set(ast.literal_eval(k.value("CHILDREN")).values()) == {"Cached"}
    assert "Cache: reused 3 of 3 tasks." in out

    # one more element: that child alone runs (and what reads the whole list)
    before = ran(log, [])
    k.run(cell("items", "items = [1, 2, 3, 4]"))
    assert children(k) == ["Cached"] * 3 + ["Success"]
    assert ran(log, before) == ["items", "square", "total"]
    assert k.value("(sq, total)") == "([1, 4, 9, 16], 30)"

    # the mapped cell edited: every child runs
    before = ran(log, [])
    k.run(cell("square", "sq = items * items + 1", "--map items"))
    assert children(k) == ["Success"] * 4
    assert ran(log, before) == ["square"] * 4 + ["total"]

    # a new kernel: every child is read back from the store
    k.stop()
    k = kernels()
    for code in [*SETUP, CHILDREN]:
        k.run(code)
    register(k, {**mapped, "items": "items = [1, 2, 3, 4]",
                 "square": "sq = items * items + 1"})
    before = ran(log, [])
    assert children(k) == ["Cached"] * 4
    assert ran(log, before) == []
    assert k.value("(sq, total)") == "([2, 5, 10, 17], 34)"


def test_import_star_cell_is_cached_and_its_module_counts(kernels, tmp_path):
    log = tmp_path / "runs.log"
    (tmp_path / "starmod.py").write_text("def f():\n    return 1\n")
    star = {"use": "from starmod import *\nv = f()", "double": "w = v * 2"}
    k = kernels()
    run_notebook(k, star)
    assert ran(log, []) == ["use", "double"]

    before = ran(log, [])
    out = flow_run(k)
    assert ran(log, before) == []
    assert states(k) == {"use": "Cached", "double": "Cached"}
    assert "Cache: reused 2 of 2 tasks." in out

    before = ran(log, [])
    k.run(cell("use", "from starmod import *\nv = f() + 1"))
    out = flow_run(k)
    assert ran(log, before) == ["use", "double"]
    assert "use (code changed)" in out
    k.stop()

    # the module it imports * from changed (seen by a new kernel): it runs
    (tmp_path / "starmod.py").write_text("def f():\n    return 1000\n")
    k = kernels()
    before = ran(log, [])
    out = run_notebook(k, {**star, "use": "from starmod import *\nv = f() + 1"})
    assert ran(log, before) == ["use", "double"]
    assert "use (module 'starmod' changed)" in out
    assert k.value("w") == "2002"
