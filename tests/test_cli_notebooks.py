"""``nbflow run NOTEBOOK.ipynb`` and ``nbflow export``: the real command line.

Each test writes a small notebook with ``nbformat`` and runs ``python -m nbflow``
as a subprocess, with no Jupyter server and no kernel.
"""

from __future__ import annotations

import re
import runpy
import subprocess
from pathlib import Path

import pytest
from _cli import assert_usage_error, run

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("IPython")
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook  # noqa: E402

#: The cells of the pipeline notebook; ``EXECUTOR`` is replaced per test.
PIPELINE = [
    "# A pipeline",  # markdown: cell 1
    "%load_ext nbflow\nimport os\nn = 4\nscale = 10\nmain_pid = os.getpid()\nEXECUTOR",
    "def helper(x):\n    return x * scale\n\n%flow show",
    "%%flowtask load\nxs = list(range(1, n + 1))",
    "%%flowtask square --map xs\nsq = helper(xs) ** 2\nelsewhere = os.getpid() != main_pid",
    '%%flowtask stats --retries 1 --retry-delay 0.01\ntotal = sum(sq)\nmean = total / len(sq)\nprint(f"total={total}")',
    '%%flowtask report --after square\nreport = f"{total}/{mean:.1f}"',
    "%%flowtask where\nremote = all(elsewhere)",
    "if n < 0:\n    %flow run\nlast = 1\n%flow run\nprint('after the run', report)",
    "print('not run either', report)",
]

FAILING = [
    "n = 3",
    "%%flowtask load\nxs = list(range(n))",
    '%%flowtask boom\ny = sum(xs)\nraise ValueError(f"bad value {y}")',
    "%%flowtask after\nz = y + 1",
]


def write_notebook(path: Path, cells: list[str], executor: str = "") -> Path:
    nb = new_notebook(
        cells=[
            new_markdown_cell(c)
            if c.startswith("# ")
            else new_code_cell(c.replace("EXECUTOR", executor))
            for c in cells
        ]
    )
    nbformat.write(nb, str(path))
    return path






KINDS = ("Success|Failed|TriggerFailed|Mapped|Cancelled|Retrying|Pending|Running"
         "|Skipped|TimedOut|Cached|Paused|Looped")


def summary(out: str) -> dict[str, str]:
    """``{task: 'State  detail'}`` from the final summary's lines."""
    found = {}
    for line in out[: out.rindex("\nFlow '")].splitlines():
        m = re.match(rf"^  (\S+)\s+({KINDS})\b\s*(.*)$", line)
        if m:
            found[m.group(1)] = f"{m.group(2)} {m.group(3)}".strip()
    return found


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "pipeline.ipynb", PIPELINE)


def assert_pipeline_ran(result: subprocess.CompletedProcess[str], remote: bool) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("Running flow 'pipeline' on ") == 1
    assert "tasks finished" not in out  # no `%flow run` ran during setup
    assert "Left out: the code after the first `%flow run` (cells 9, 10)." in out
    assert "after the run" not in out and "not run either" not in out
    assert "0 tasks" not in out  # nor `%flow show`, before the cells are registered
    assert "[stats] total=3000" in out
    states = summary(out)
    assert states["load"] == "Success -> xs=[1, 2, 3, 4]"
    flag = "True" if remote else "False"
    assert states["square"] == (
        f"Mapped 4 children -> sq=[100, 400, 900, 1600], elsewhere=[{flag}, "
        f"{flag}, {flag}, {flag}]"
    )
    assert states["stats"] == "Success -> total=3000, mean=750.0"
    assert states["report"] == "Success -> report='3000/750.0'"
    assert states["where"] == f"Success -> remote={flag}"
    assert out.rstrip().splitlines()[-1].startswith("Flow 'pipeline': Success in ")


# -- running on each executor ---------------------------------------------------------


def test_run_notebook_on_local_executor_by_default(pipeline):
    result = run("run", pipeline)
    assert "on LocalExecutor()" in result.stdout
    assert_pipeline_ran(result, remote=False)


def test_run_notebook_on_the_executor_the_notebook_chose(tmp_path):
    chosen = (
        "from nbflow.executors import LocalDaskExecutor\n"
        "from nbflow.notebook import current_flow\n"
        "current_flow().executor = LocalDaskExecutor(num_workers=2)"
    )
    path = write_notebook(tmp_path / "pipeline.ipynb", PIPELINE, chosen)
    result = run("run", "-p", path)
    assert "on LocalDaskExecutor(scheduler='threads', num_workers=2)" in result.stdout
    assert_pipeline_ran(result, remote=False)
    # The command line's choice wins over the notebook's.
    local = run("run", path, "--executor", "local")
    assert "on LocalExecutor()" in local.stdout
    assert_pipeline_ran(local, remote=False)


def test_run_notebook_on_local_dask_threads(pipeline):
    result = run("run", pipeline, "--executor", "local-dask", "--num-workers", "3")
    assert "on LocalDaskExecutor(scheduler='threads', num_workers=3)" in result.stdout
    assert_pipeline_ran(result, remote=False)


@pytest.mark.slow
def test_run_notebook_on_local_dask_processes(pipeline):
    result = run("run", pipeline, "--scheduler", "processes", "--num-workers", "2")
    assert "on LocalDaskExecutor(scheduler='processes', num_workers=2)" in result.stdout
    assert_pipeline_ran(result, remote=True)


@pytest.mark.slow
def test_run_notebook_on_a_temporary_dask_cluster(pipeline, tmp_path):
    report = tmp_path / "report.html"
    result = run(
        "run", pipeline, "--executor", "dask", "--num-workers", "1", "--report", report
    )
    assert "on DaskExecutor(" in result.stdout
    assert "Dask dashboard: http://127.0.0.1:" in result.stdout
    assert_pipeline_ran(result, remote=True)
    assert "bokeh" in report.read_text(encoding="utf-8")


# -- failures and parameters ----------------------------------------------------------


def test_run_notebook_failed_cell_exits_1_with_its_traceback(tmp_path):
    result = run("run", write_notebook(tmp_path / "failing.ipynb", FAILING))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    states = summary(out)
    assert states["load"] == "Success -> xs=[0, 1, 2]"
    assert states["boom"] == "Failed Task 'boom' failed: ValueError: bad value 3"
    assert states["after"].startswith("TriggerFailed Task 'after' did not run")
    assert out.count("Traceback (most recent call last)") == 1
    assert 'File "<flowtask boom>", line 2, in <module>' in out
    assert out.count('raise ValueError(f"bad value {y}")') == 1
    assert "runtime.py" not in out  # nbflow's own frame is left out
    assert "Flow 'failing': Failed" in out


def test_run_notebook_params_set_namespace_variables(pipeline):
    result = run("run", pipeline, "-P", "n=2", "-P", "scale=1")
    assert result.returncode == 0, result.stdout + result.stderr
    states = summary(result.stdout)
    assert states["load"] == "Success -> xs=[1, 2]"
    assert states["stats"] == "Success -> total=5, mean=2.5"  # helper saw scale=1


# -- export ---------------------------------------------------------------------------


def test_export_runs_with_the_same_results(pipeline, tmp_path):
    target = tmp_path / "flow.py"
    result = run("export", pipeline, "-o", target)
    assert result.returncode == 0, result.stderr
    assert f"Wrote {target}" in result.stdout
    code = target.read_text(encoding="utf-8")
    for part in [
        "# IPython only: %load_ext nbflow",
        "pass  # IPython only: %flow run",
        '@task(name="square")',
        '@task(name="stats", max_retries=1, retry_delay=0.01)',
        "def square_task(xs, main_pid):",
        'n = Parameter("n", default=n)',
        "square_task.map(xs=xs, main_pid=unmapped(main_pid))",
        'pick.map(square_run, unmapped("sq"), task_args={"name": "square.sq"})',
        "upstream_tasks=[square_run]",
        'return {"total": total, "mean": mean}',
    ]:
        assert part in code, part
    assert "after the run" not in code and "not run either" not in code
    compile(code, str(target), "exec")

    # The same final states and values from the command line...
    notebook = summary(run("run", pipeline).stdout)
    exported = run("run", "-p", target)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "total=3000" in exported.stdout  # what the cell printed
    states = summary(exported.stdout)
    for name in ("load", "square", "stats", "report"):
        assert states[name].split()[0] == notebook[name].split()[0]
    assert states["load"] == "Success -> [1, 2, 3, 4]"
    assert states["report"] == "Success -> '3000/750.0'"
    # ... and a parameter of the notebook is one of the exported flow.
    fewer = run("run", "-p", target, "-P", "n=2")
    assert "report" in summary(fewer.stdout)
    assert summary(fewer.stdout)["report"] == "Success -> '500/250.0'"


def test_export_flow_in_process_gives_the_notebooks_values(pipeline, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    from nbflow.cli.run_notebook import run_setup
    from nbflow.core.flow import Flow
    from nbflow.notebook import run_notebook_flow
    from nbflow.notebook.export import export_notebook
    from nbflow.notebook.ipynb import read_notebook, register_cells

    parts = read_notebook(str(pipeline))
    existing = InteractiveShell.initialized()
    try:
        namespace, _ = run_setup(parts)
    finally:
        if not existing:  # leave no setup shell behind for other tests
            InteractiveShell.clear_instance()
    flow = Flow("in-process")
    register_cells(parts, flow)
    assert run_notebook_flow(namespace, flow=flow).is_successful()

    target = tmp_path / "flow.py"
    target.write_text(export_notebook(parts), encoding="utf-8")
    exported = runpy.run_path(str(target), run_name="__nbflow__")["flow"]
    state = exported.run()
    assert state.is_successful()
    by_name = {t.name: s.result for t, s in state.result.items()}
    assert by_name["load"] == namespace["xs"] == [1, 2, 3, 4]
    assert [child["sq"] for child in by_name["square"]] == namespace["sq"]
    assert by_name["stats"] == {"total": namespace["total"], "mean": namespace["mean"]}
    assert by_name["report"] == namespace["report"] == "3000/750.0"


def test_export_mapped_cell_providing_several_names_picks_each(tmp_path):
    cells = [
        "words = ['a', 'bb', 'ccc']",
        "%%flowtask split --map words\nsize = len(words)\nupper = words.upper()",
        "%%flowtask join --map upper\nshout = upper + '!'",
        "%%flowtask total\ntotal = sum(size)",
    ]
    path = write_notebook(tmp_path / "words.ipynb", cells)
    target = tmp_path / "words.py"
    assert run("export", path, "-o", target).returncode == 0
    code = target.read_text(encoding="utf-8")
    assert 'pick.map(split_run, unmapped("upper")' in code
    flow = runpy.run_path(str(target), run_name="__nbflow__")["flow"]
    by_name = {t.name: s.result for t, s in flow.run().result.items()}
    assert by_name["join"] == ["A!", "BB!", "CCC!"]
    assert by_name["total"] == 6


def test_export_mapped_cell_after_another_only_waits_for_it(tmp_path):
    """`--map xs --after setup` exports `upstream_tasks=[unmapped(...)]`: a
    mapped task's plain upstream_tasks would be mapped over (Prefect)."""
    cells = [
        "%%flowtask setup\nmarker = 'ready'",
        "xs = [1, 2, 3]",
        "%%flowtask each --map xs --after setup\nys = xs * 10",
    ]
    path = write_notebook(tmp_path / "after.ipynb", cells)
    target = tmp_path / "after.py"
    assert run("export", path, "-o", target).returncode == 0
    code = target.read_text(encoding="utf-8")
    assert "upstream_tasks=[unmapped(" in code
    flow = runpy.run_path(str(target), run_name="__nbflow__")["flow"]
    by_name = {t.name: s.result for t, s in flow.run().result.items()}
    assert by_name["each"] == [10, 20, 30]


def test_export_writes_triggers_skips_and_timeouts_as_task_keywords(tmp_path):
    cells = [
        "%%flowtask fetch\nfrom nbflow.engine.signals import SKIP\n"
        "data = 1\nraise SKIP('no new data')",
        "%%flowtask clean\nrows = data",
        "%%flowtask count --no-skip-on-upstream-skip\nn = 0",
        "%%flowtask slow --timeout 0.5\nimport time\ntime.sleep(30)",
        "%%flowtask alarm --trigger any_failed --after slow\nalarm = 'slow failed'",
        "%%flowtask report --trigger 'some_failed( at_least = 1 )' --after slow\n"
        "report = 'done'",
    ]
    path = write_notebook(tmp_path / "semantics.ipynb", cells)
    target = tmp_path / "semantics.py"
    assert run("export", path, "-o", target).returncode == 0
    code = target.read_text(encoding="utf-8")
    for part in [
        "from nbflow import Flow, task, triggers",
        '@task(name="count", skip_on_upstream_skip=False)',
        '@task(name="slow", timeout=0.5)',
        '@task(name="alarm", trigger=triggers.any_failed)',
        '@task(name="report", trigger=triggers.some_failed(at_least=1))',
    ]:
        assert part in code, part
    flow = runpy.run_path(str(target), run_name="__nbflow__")["flow"]
    by_name = {t.name: s for t, s in flow.run().result.items()}
    assert [type(by_name[n]).__name__ for n in
            ("fetch", "clean", "count", "slow", "alarm", "report")] == [
        "Skipped", "Skipped", "Success", "TimedOut", "Success", "Success"]
    assert by_name["alarm"].result == "slow failed"
    # `nbflow run NOTEBOOK` reads the same options.
    notebook = summary(run("run", path).stdout)
    assert [notebook[n].split()[0] for n in
            ("fetch", "clean", "count", "slow", "alarm", "report")] == [
        "Skipped", "Skipped", "Success", "TimedOut", "Success", "Success"]


# -- bad input ------------------------------------------------------------------------

NOT_NOTEBOOKS = {
    "bad-json": ("{not json", "is not a Jupyter notebook"),
    "not-nbformat": ('{"cells": 3}', "is not a Jupyter notebook"),
}


@pytest.mark.parametrize("command", ["run", "export"])
@pytest.mark.parametrize("kind", ["missing", *NOT_NOTEBOOKS, "no-flowtask"])
def test_bad_notebook_is_one_line_and_exit_2(tmp_path, command, kind):
    path = tmp_path / "nb.ipynb"
    message = "does not exist"
    if kind in NOT_NOTEBOOKS:
        text, message = NOT_NOTEBOOKS[kind]
        path.write_text(text)
    elif kind == "no-flowtask":
        write_notebook(path, ["x = 1", "print(x)"])
        message = "has no %%flowtask cell"
    assert_usage_error(run(command, path), message)


BAD_CELLS = {
    "setup-raises": (
        ["n = 1", "def f():\n    return 1 / 0\n\nx = f()", "%%flowtask a\ny = n"],
        "Setup cell 2 ('def f():') raised ZeroDivisionError: division by zero "
        "on line 4",
    ),
    "setup-syntax": (
        ["n = (", "%%flowtask a\ny = n"],
        "Setup cell 1 ('n = (') raised SyntaxError",
    ),
    "flowtask-syntax": (
        ["n = 1", "%%flowtask bad\ny = (n"],
        "Cell 2 ('%%flowtask bad'): Cell 'bad' has a syntax error on line 1",
    ),
    "flowtask-option": (
        ["%%flowtask a --bogus\ny = 1"],
        "Cell 1 ('%%flowtask a --bogus'): Bad %%flowtask options: unrecognized "
        "arguments: --bogus",
    ),
    "flowtask-after": (
        ["%%flowtask a --after nope\ny = 1"],
        "runs --after 'nope', which is not a task of the flow",
    ),
    "undefined-name": (
        ["%%flowtask a\ny = missing + 1"],
        "Cell 'a' reads 'missing', which no task above it provides",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_CELLS))
def test_bad_cell_is_one_line_and_exit_2(tmp_path, kind):
    cells, message = BAD_CELLS[kind]
    assert_usage_error(
        run("run", write_notebook(tmp_path / "nb.ipynb", cells)), message
    )


BAD_OPTIONS = {
    "unknown-option": (["--bogus"], "unrecognized arguments: --bogus; see `nbflow run"),
    "unknown-param": (["-P", "nope=1"], "Unknown parameter 'nope'; the parameters of"),
    "name": (["--name", "x"], "--name selects a flow of a Python file"),
    "executor": (["--executor", "bogus"], "Unknown executor kind 'bogus'"),
}


@pytest.mark.parametrize("kind", list(BAD_OPTIONS))
def test_bad_option_is_one_line_and_exit_2(pipeline, kind):
    args, message = BAD_OPTIONS[kind]
    assert_usage_error(run("run", pipeline, *args), message)


def test_export_bad_output_is_one_line_and_exit_2(pipeline, tmp_path):
    assert_usage_error(
        run("export", pipeline, "-o", tmp_path / "x.txt"), "ending in .py"
    )
    assert_usage_error(run("export", pipeline, "--bogus"), "unrecognized arguments")


@pytest.mark.slow
def test_export_runs_on_local_dask_processes(pipeline, tmp_path):
    target = tmp_path / "flow.py"
    assert run("export", pipeline, "-o", target).returncode == 0
    # The tasks and the setup's helper (and the global it reads) travel by value.
    result = run("run", "-p", target, "--scheduler", "processes", "--num-workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    states = summary(result.stdout)
    assert states["square.elsewhere"] == "Mapped 4 children"
    assert states["where"] == "Success -> True"
    assert states["report"] == "Success -> '3000/750.0'"


def test_run_notebook_with_a_cell_calling_sys_exit_fails_that_task(tmp_path):
    notebook = write_notebook(tmp_path / "exits.ipynb", [
        "%load_ext nbflow\nimport sys",
        "%%flowtask first\nx = 1",
        "%%flowtask bye\nsys.exit(2)\ny = 2",
        "%%flowtask after\nz = x + 1",
    ])
    result = run("run", notebook)
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary(result.stdout) == {
        "first": "Success -> x=1",
        "bye": "Failed Task 'bye' failed: it called sys.exit(2), which ends this "
        "task, not the run.",
        "after": "Success -> z=2",
    }
    assert "Flow 'exits': Failed" in result.stdout


NAMES_NBFLOW_USES = [
    "%load_ext nbflow\nflow = 3\ntask = 'T'\nFlow = 1\nParameter = 2\nlist = [3, 1, 2]",
    "%%flowtask first\nx = flow + 1\nname = task",
    "%%flowtask second\nz = x * Flow + Parameter",
    "%%flowtask mysum\nsum = 99",
    "%%flowtask uses\ntotal = len(list) + sum",
]


def test_export_of_names_the_exported_file_uses_itself_runs(tmp_path):
    notebook = write_notebook(tmp_path / "names.ipynb", NAMES_NBFLOW_USES)
    target = tmp_path / "names.py"
    result = run("export", notebook, "-o", target)
    assert result.returncode == 0, result.stderr
    code = target.read_text(encoding="utf-8")
    assert "from nbflow import Flow as Flow_2, Parameter as Parameter_2, task as task_2" in code
    exported = run("run", "-p", target)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    in_notebook = run("run", notebook)
    assert in_notebook.returncode == 0, in_notebook.stdout + in_notebook.stderr
    states = summary(exported.stdout)
    assert states["second"] == "Success -> 6"
    assert states["uses"] == "Success -> 102"  # the notebook's list, mysum's sum
    assert summary(in_notebook.stdout)["uses"] == "Success -> total=102"


SEVERAL_FLOWS = [
    "%load_ext nbflow\nfrom nbflow.notebook import current_flow",
    "%%flowtask first\nx = 1",
    "%flow run\nprint('first gave', x)",
    "%flow reset\nbase = 10",
    "%%flowtask second\ny = base + 1",
    "%flow run\nprint('second gave', y, [t.name for t in current_flow().tasks])",
    "raise RuntimeError('stop here')",
    "print('never printed')",
]


def test_a_notebook_of_several_flows_runs_top_to_bottom(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "several.ipynb", SEVERAL_FLOWS)
    result = run("run", path)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "top to bottom" in out.splitlines()[0]
    assert "first gave 1" in out
    assert "second gave 11 ['second']" in out  # `base` set between the flows
    assert out.splitlines()[-1] == (
        "Cell 7 (\"raise RuntimeError('stop here')\") raised RuntimeError: stop "
        "here; the notebook stops there, as Jupyter's Run All does.")
    assert "never printed" not in out
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[6].metadata["tags"] = ["raises-exception"]
    nbformat.write(nb, str(path))
    result = run("run", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "as it is meant to: it is tagged raises-exception" in result.stdout
    assert "never printed" in result.stdout
    assert_usage_error(run("run", path, "-P", "base=3"), "has no parameters; leave out")
