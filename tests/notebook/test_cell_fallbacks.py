"""Names a cell may take from outside or not, as in Jupyter: a builtin's name,
a name after ``import *``, a name bound only in a branch that may not run, a
``global`` a function in the cell changes.
"""

from __future__ import annotations

import pytest

from nbflow import Flow
from nbflow.executors import LocalDaskExecutor
from nbflow.notebook import register_cell, run_notebook_flow
from nbflow.notebook.cells import analyze_cell


@pytest.fixture
def flow():
    return Flow("fallbacks")


def test_analysis_builtin_names_branches_and_star_are_fallbacks():
    a = analyze_cell("total = sum(list)\nprint(total)")
    assert (a.reads, a.fallbacks) == ((), ("sum", "list", "print"))
    a = analyze_cell("if flag:\n    x = 1\ny = x")
    assert (a.reads, a.fallbacks, a.provides) == (("flag",), ("x",), ("x", "y"))
    a = analyze_cell("if flag:\n    x = 1\nelse:\n    x = 2\ny = x")
    assert (a.reads, a.fallbacks) == (("flag",), ())
    a = analyze_cell("for i in items:\n    last = i\nprint(last)")
    assert a.reads == ("items",) and "last" in a.fallbacks
    a = analyze_cell("try:\n    import lzma\nexcept ImportError:\n    lzma = None\nz = lzma")
    assert (a.reads, a.fallbacks) == ((), ("ImportError",))
    a = analyze_cell("from math import *\nroot = sqrt(n)")
    assert (a.reads, a.fallbacks) == ((), ("sqrt", "n"))


def test_analysis_function_changing_a_global_reads_it():
    a = analyze_cell("def bump():\n    global counter\n    counter += 1\nbump()")
    assert a.reads == ("counter",)
    assert a.provides == ("counter", "bump")


def test_builtin_named_variables_come_from_the_namespace_and_other_cells(flow):
    register_cell("total = sum(list)", "uses_list", flow=flow)
    register_cell("sum = 99", "mysum", flow=flow)
    register_cell("got = sum\nn = len(input)", "reads_sum", flow=flow)
    namespace = {"list": [3, 1, 2], "input": "abc"}
    run_notebook_flow(namespace, flow=flow)
    assert namespace["total"] == 6  # the namespace's list, the builtin sum
    assert namespace["got"] == 99  # sum from the cell above
    assert namespace["n"] == 3


def test_star_import_cell_runs(flow):
    register_cell("from math import *\nroot = sqrt(16)", "star", flow=flow)
    namespace: dict = {}
    run_notebook_flow(namespace, flow=flow)
    assert namespace["root"] == 4.0


def test_name_bound_only_in_an_untaken_branch_comes_from_the_namespace(flow):
    register_cell("if flag:\n    x = 'branch'\ny = x", "branch", flow=flow)
    namespace = {"flag": False, "x": "namespace"}
    run_notebook_flow(namespace, flow=flow)
    assert namespace["y"] == "namespace"
    namespace["flag"] = True
    run_notebook_flow(namespace, flow=flow)
    assert namespace["y"] == namespace["x"] == "branch"


@pytest.mark.parametrize("executor", [None, "threads"])
def test_function_changing_a_global_reads_and_writes_the_namespace(flow, executor):
    register_cell(
        "def bump():\n    global counter\n    counter += 1\nbump()\nbump()", "bump",
        flow=flow,
    )
    namespace = {"counter": 10}
    run_notebook_flow(
        namespace, flow=flow,
        executor=LocalDaskExecutor("threads") if executor else None,
    )
    assert namespace["counter"] == 12
