"""``%%flowtask`` and ``%flow`` in a real IPython InteractiveShell."""

from __future__ import annotations

import os
import re

import pytest

IPython = pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from nbflow.notebook import CellFailed, CellTask, current_flow, reset_flow  # noqa: E402


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbflow")
    reset_flow()
    current_flow().executor = None
    yield shell
    reset_flow()
    current_flow().executor = None
    shell.run_line_magic("unload_ext", "nbflow")


def test_load_ext_registers_and_unload_removes(ip):
    magics = ip.magics_manager.magics
    assert "flowtask" in magics["cell"] and "flow" in magics["line"]
    ip.run_line_magic("unload_ext", "nbflow")
    assert "flowtask" not in magics["cell"] and "flow" not in magics["line"]
    ip.run_line_magic("load_ext", "nbflow")
    assert "flowtask" in magics["cell"]


def test_flowtask_registers_without_running_and_prints_one_line(ip, capsys):
    ip.run_cell("import math\ndef helper(v):\n    return v * 2")
    ip.run_cell_magic("flowtask", "load", "xs = [1, 4, 9]\nprint('loading')")
    ip.run_cell_magic("flowtask", "", "roots = [helper(math.sqrt(x)) for x in xs]")
    out = capsys.readouterr().out
    assert "loading" not in out
    assert out.splitlines() == [
        "Task 'load': reads nothing from other tasks; provides xs.",
        "Task 'roots': reads xs (from load) from other tasks; provides roots.",
    ]
    assert "roots" not in ip.user_ns
    assert all(isinstance(t, CellTask) for t in current_flow().ordered_tasks())


def test_flow_run_writes_back_and_shows_output(ip, capsys):
    ip.run_cell("import math\ndef helper(v):\n    return v * 2")
    ip.run_cell_magic("flowtask", "load", "xs = [1, 4, 9]\nprint('loading')")
    ip.run_cell_magic("flowtask", "", "roots = [helper(math.sqrt(x)) for x in xs]")
    ip.run_cell_magic("flowtask", "", "roots += [0]")
    ip.run_cell_magic("flowtask", "--map xs --retries 1 --retry-delay 0", "half = xs / 2")
    capsys.readouterr()
    ip.run_line_magic("flow", "run")
    out = capsys.readouterr().out
    assert ip.user_ns["roots"] == [2.0, 4.0, 6.0, 0]
    assert ip.user_ns["half"] == [0.5, 2.0, 4.5]
    assert "[load] loading" in out
    assert "3/3 done" in out  # the text progress of the run ...
    assert "Flow 'notebook': Success in " in out  # ... and how it ended
    # The next ordinary cell sees the results.
    ip.run_cell("check = sum(roots)")
    assert ip.user_ns["check"] == 12.0


def test_flowtask_same_name_replaces(ip):
    ip.run_cell_magic("flowtask", "a", "x = 1")
    ip.run_cell_magic("flowtask", "b", "y = x + 1")
    ip.run_cell_magic("flowtask", "a", "x = 10")
    assert [t.name for t in current_flow().ordered_tasks()] == ["a", "b"]
    ip.run_line_magic("flow", "run")
    assert ip.user_ns["y"] == 11


def test_flow_run_failure_shows_cell_line_and_keeps_successes(ip, capsys):
    ip.run_cell_magic("flowtask", "good", "g = 1")
    ip.run_cell_magic("flowtask", "bad", "h = g + 1\nraise ValueError('no ' + str(h))")
    with pytest.raises(CellFailed) as info:
        ip.run_line_magic("flow", "run")
    assert ip.user_ns["g"] == 1 and "h" not in ip.user_ns
    assert isinstance(info.value.__cause__, ValueError)
    capsys.readouterr()
    result = ip.run_cell("%flow run")
    assert isinstance(result.error_in_exec, CellFailed)
    out = capsys.readouterr().out
    assert 'File "<flowtask bad>", line 2' in out
    assert "raise ValueError('no ' + str(h))" in out
    assert "ValueError: no 2" in out


@pytest.mark.parametrize(
    ("line", "cell", "match"),
    [
        ("--bogus", "x = 1", "unrecognized arguments"),
        ("--retries many", "x = 1", "invalid int"),
        ("", "x = (1 +", "syntax error on line 1"),
        ("b --after nowhere", "x = 1", "'nowhere'"),
    ],
    ids=["unknown-option", "bad-int", "syntax", "unknown-after"],
)
def test_flowtask_bad_input_is_one_line_usage_error(ip, line, cell, match):
    with pytest.raises(UsageError, match=match) as info:
        ip.run_cell_magic("flowtask", line, cell)
    assert "\n" not in str(info.value)
    assert len(current_flow()) == 0


def test_flow_run_bad_input_is_usage_error_before_running(ip):
    ip.user_ns["n"] = 3
    ip.run_cell_magic("flowtask", "first", "marker = 1")
    ip.run_cell_magic("flowtask", "m", "y = n")
    ip.run_cell_magic("flowtask", "u", "z = not_defined_anywhere")
    with pytest.raises(UsageError, match="'u' reads 'not_defined_anywhere'"):
        ip.run_line_magic("flow", "run")
    ip.run_line_magic("flow", "remove u")
    ip.run_cell_magic("flowtask", "m --map n", "y = n")
    with pytest.raises(UsageError, match="maps over 'n'"):
        ip.run_line_magic("flow", "run")
    assert "marker" not in ip.user_ns


def test_flowtask_after_cycle_is_usage_error(ip):
    ip.run_cell_magic("flowtask", "a", "x = 1")
    ip.run_cell_magic("flowtask", "b", "y = x")
    with pytest.raises(UsageError, match="cycle: 'a' -> 'b' -> 'a'|cycle: 'b' -> 'a' -> 'b'"):
        ip.run_cell_magic("flowtask", "a --after b", "x = 1")


def test_flow_show_remove_reset(ip, capsys):
    ip.run_cell_magic("flowtask", "a", "x = 1")
    ip.run_cell_magic("flowtask", "b --after a", "y = x + k")
    capsys.readouterr()
    ip.run_line_magic("flow", "show")
    out = capsys.readouterr().out
    assert "inputs: x <- a" in out and "from namespace: k" in out and "a -> b" in out
    with pytest.raises(UsageError, match="run --after it"):
        ip.run_line_magic("flow", "remove a")
    ip.run_line_magic("flow", "remove b")
    assert [t.name for t in current_flow().ordered_tasks()] == ["a"]
    with pytest.raises(UsageError, match="needs the name"):
        ip.run_line_magic("flow", "remove")
    with pytest.raises(UsageError):
        ip.run_line_magic("flow", "explode")
    with pytest.raises(UsageError, match="takes no name"):
        ip.run_line_magic("flow", "show a")
    ip.run_line_magic("flow", "reset")
    assert len(current_flow()) == 0


def test_flow_run_uses_current_flow_executor(ip):
    from nbflow.executors import LocalDaskExecutor

    current_flow().executor = LocalDaskExecutor(num_workers=2)
    ip.user_ns["lock"] = __import__("threading").Lock()
    ip.run_cell_magic("flowtask", "t", "import threading\nwho = threading.current_thread().name"
                      "\nfree = not lock.locked()")
    ip.run_line_magic("flow", "run")
    assert ip.user_ns["who"].startswith("nbflow-dask")
    current_flow().executor = LocalDaskExecutor("processes", num_workers=1)
    with pytest.raises(UsageError, match="'t' reads 'lock'"):
        ip.run_line_magic("flow", "run")


def test_flow_panel_shows_executor_panel(ip):
    panel_module = pytest.importorskip("nbflow.widgets.panel")
    panel = ip.run_line_magic("flow", "panel")
    assert isinstance(panel, panel_module.ExecutorPanel)


def test_second_background_run_while_one_runs_is_refused(ip):
    import threading

    gate, started = threading.Event(), threading.Event()
    ip.user_ns.update(gate=gate, started=started)
    ip.run_cell_magic("flowtask", "slow", "started.set()\nopened = gate.wait(60)")
    first = ip.run_line_magic("flow", "run --background")
    try:
        assert started.wait(60), "the background run never started its task"
        for line in ("run --background", "run"):
            with pytest.raises(UsageError) as info:
                ip.run_line_magic("flow", line)
            assert str(info.value) == (
                "A background run of the notebook flow is still going; wait for it "
                "(run.join()) or cancel it (run.cancel()), then run again."
            )
    finally:
        gate.set()
        state = first.join(60)
    assert state is not None and state.is_successful(), state
    assert ip.user_ns["opened"] is True
    second = ip.run_line_magic("flow", "run --background")  # once it ended: fine
    assert second.join(60).is_successful()


def test_background_run_is_a_handle_and_leaves_the_registered_flow_alone(ip):
    import threading

    from nbflow.notebook import NotebookRun

    gate, started = threading.Event(), threading.Event()
    ip.user_ns.update(gate=gate, started=started, xs=[1, 2])
    ip.run_cell_magic("flowtask", "twice --map xs", "ys = xs * 2")
    ip.run_cell_magic("flowtask", "slow", "started.set()\nopened = gate.wait(60)")
    flow = current_flow()

    def seen():
        return [(t, t.fn, dict(flow.binding(t).arguments)) for t in flow.ordered_tasks()]

    before = seen()
    run = ip.run_line_magic("flow", "run --background")
    try:
        assert isinstance(run, NotebookRun)
        assert started.wait(60), "the background run never started its task"
        assert seen() == before  # from this thread, while the run goes
    finally:
        gate.set()
        state = run.join(60)
    assert state is not None and state.is_successful(), state
    assert run.outputs == {"ys": [2, 4], "opened": True} and ip.user_ns["ys"] == [2, 4]
    assert seen() == before


@pytest.mark.parametrize("line", ["--help", "-h"])
def test_flow_help_lists_every_command_in_one_line(ip, capsys, line):
    assert ip.run_line_magic("flow", line) is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "usage: %flow COMMAND [--help]"
    for usage in ("run [options]", "show", "reset", "remove NAME", "panel"):
        listed = [entry for entry in lines if entry.split("  ")[1:2] == [usage]]
        assert len(listed) == 1, (usage, lines)
        assert len(listed[0].split(usage, 1)[1].strip()) > 10  # what it does


def test_flow_run_help_shows_every_option_and_runs_nothing(ip, capsys):
    ip.user_ns.pop("help_ran_it", None)
    ip.run_cell_magic("flowtask", "a", "help_ran_it = 1")
    capsys.readouterr()
    assert ip.run_line_magic("flow", "run --help") is None
    out = capsys.readouterr().out
    assert out.startswith("usage: %flow run [--background]")
    assert re.search(r"\n  --background +Run without blocking the kernel", out), out
    options = [a.option_strings[-1]
               for a in ip.magics_manager.magics["line"]["flow"].parser._actions
               if a.option_strings]
    assert options and all(f"  {option}" in out for option in options), out
    assert "help_ran_it" not in ip.user_ns
    ip.run_line_magic("flow", "remove --help")
    assert capsys.readouterr().out.startswith("usage: %flow remove NAME\n\nRemove ")


def test_flowtask_magic_and_nbflow_run_share_one_grammar(ip):
    from nbflow.errors import FlowtaskOptionsError
    from nbflow.notebook.magics import FlowMagics
    from nbflow.notebook.options import parse_flowtask_line

    line = "square --map xs --bogus"
    with pytest.raises(UsageError) as magic:
        ip.run_cell_magic("flowtask", line, "y = xs")
    with pytest.raises(FlowtaskOptionsError) as parsed:
        parse_flowtask_line(line)  # what `nbflow run NOTEBOOK` reads the line with
    assert str(magic.value) == str(parsed.value)
    help_text = FlowMagics.flowtask.__doc__
    assert "--retry-delay SECONDS" in help_text and "Seconds between retries." in help_text


def test_flowtask_takes_prefect_triggers_skips_signals_and_timeouts(ip, capsys):
    ip.run_cell_magic("flowtask", "fetch", "from nbflow.engine.signals import SKIP\n"
                      "data = None\nraise SKIP('no new data')")
    ip.run_cell_magic("flowtask", "clean", "rows = data")
    ip.run_cell_magic("flowtask", "count --no-skip-on-upstream-skip", "n = data or 0")
    ip.run_cell_magic("flowtask", "slow --timeout 0.5", "import time\ntime.sleep(30)")
    ip.run_cell_magic("flowtask", "alarm --trigger any_failed --after slow",
                      "alarm = 'slow failed'")
    ip.run_cell_magic("flowtask", "report --trigger all_finished --after slow",
                      "report = 'done'")
    out = capsys.readouterr().out
    assert "Task 'count' (runs after a skipped upstream)" in out
    assert "Task 'slow' (timeout 0.5 s)" in out
    assert "Task 'alarm' (after slow; trigger any_failed)" in out
    with pytest.raises(CellFailed, match="'slow' timed out"):
        ip.run_line_magic("flow", "run")
    out = capsys.readouterr().out
    assert re.search(r"fetch\s+Skipped", out), out
    assert re.search(r"clean\s+Skipped", out) and re.search(r"slow\s+TimedOut", out)
    assert ip.user_ns["n"] == 0 and "rows" not in ip.user_ns
    assert ip.user_ns["alarm"] == "slow failed" and ip.user_ns["report"] == "done"
    with pytest.raises(UsageError, match="--trigger 'every_other'"):
        ip.run_cell_magic("flowtask", "x --trigger every_other", "x = 1")


@pytest.mark.slow
def test_flow_run_on_a_cluster_leaves_values_over_the_budget_there(
    ip, capsys, existing_cluster
):
    from nbflow.executors import DaskExecutor
    from nbflow.notebook import ClusterValue

    current_flow().executor = DaskExecutor(address=existing_cluster)
    ip.run_cell("import numpy")
    ip.run_cell_magic("flowtask", "big",
                      "import numpy as np\nfrom os import path\n"
                      "big = np.ones(2**21)\nprint('made big')")
    ip.run_cell_magic("flowtask", "medium", "medium = bytes(2**20)")
    ip.run_cell_magic("flowtask", "small", "small = len(big) + len(medium)")
    capsys.readouterr()
    ip.run_line_magic("flow", "run --memory-budget 3MB")
    out = capsys.readouterr().out
    # 16 MB of numpy stays on the cluster; the 1 MB and the int come home.
    assert ip.user_ns["small"] == 2**21 + 2**20
    assert ip.user_ns["medium"] == bytes(2**20)
    handle = ip.user_ns["big"]
    assert isinstance(handle, ClusterValue)
    # The cell's imports are made again here, not left as values there.
    assert ip.user_ns["np"] is ip.user_ns["numpy"] and ip.user_ns["path"] is os.path
    assert handle.size is not None and handle.size >= 16 * 2**20
    lines = [line for line in out.splitlines() if line.startswith("Left on")]
    assert lines == [
        "Left on the cluster, over the memory budget of 3.0 MB: big (16.8 MB); "
        "bring one home with big.result(), or raise the budget "
        "(%flow run --memory-budget 8GB)."
    ]
    assert "[big] made big" not in out  # its output stayed with its values
    ip.run_cell("total = big.result().sum()")
    assert ip.user_ns["total"] == 2**21

    # With the default budget (a quarter of the free memory) all come home.
    ip.run_line_magic("flow", "run")
    assert ip.user_ns["big"].sum() == 2**21
    assert "Left on" not in capsys.readouterr().out
    current_flow().executor = None


def test_flow_run_memory_budget_must_be_a_size(ip):
    ip.run_cell_magic("flowtask", "t", "x = 1")
    with pytest.raises(UsageError, match="Memory budget 'lots' is not a size"):
        ip.run_line_magic("flow", "run --memory-budget lots")


def test_memory_budget_sizes_read_as_dask_reads_them():
    from nbflow.errors import MemoryBudgetError
    from nbflow.notebook import parse_bytes

    assert [parse_bytes(t) for t in ("2GB", "500 MiB", ".5GB", " 3 MB", "1000", 7)] == [
        2 * 10**9, 500 * 2**20, 5 * 10**8, 3 * 10**6, 1000, 7]
    for bad in ("", "MB", "lots", "-1GB"):
        with pytest.raises(MemoryBudgetError, match=f"Memory budget {bad!r} is not a size"):
            parse_bytes(bad)
