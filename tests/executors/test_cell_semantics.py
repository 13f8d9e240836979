"""Prefect 1's triggers, skips, signals and timeouts in ``%%flowtask`` cells,
through the one options parser, on every executor.
"""

from __future__ import annotations

import pytest

from nbflow import Flow
from nbflow.engine.state import Skipped, Success, TimedOut, TriggerFailed
from nbflow.notebook import run_notebook_flow
from nbflow.notebook.options import parse_flowtask_line, register_flowtask


def _cell(flow, line, body):
    return register_flowtask(body, parse_flowtask_line(line), flow=flow)


def test_cell_options_steer_the_run_on_every_executor(executor):
    flow = Flow("cells")
    skip = _cell(flow, "a", "from nbflow.engine.signals import SKIP\n"
                            "x = 1\nraise SKIP('nothing new')")
    after_skip = _cell(flow, "b", "y = x + 1")
    runs_anyway = _cell(flow, "c --no-skip-on-upstream-skip", "z = [x, 2]")
    broken = _cell(flow, "d", "w = 1 / 0")
    cleanup = _cell(flow, "e --trigger all_finished --after d", "cleaned = True")
    on_failure = _cell(flow, "f --trigger any_failed --after d", "alarm = 'd failed'")
    on_success = _cell(flow, "g --trigger 'some_successful(at_least=1)' --after d",
                       "never = 1")
    ns: dict[str, object] = {}
    state = run_notebook_flow(ns, flow=flow, executor=executor)
    states = state.result
    assert isinstance(states[skip], Skipped) and states[skip].message == "nothing new"
    assert isinstance(states[after_skip], Skipped)
    assert isinstance(states[runs_anyway], Success)
    assert ns["z"] == [None, 2]  # a skipped cell provides None
    assert "x" not in ns and "y" not in ns
    assert states[broken].is_failed()
    assert isinstance(states[cleanup], Success) and ns["cleaned"] is True
    assert isinstance(states[on_failure], Success) and ns["alarm"] == "d failed"
    assert isinstance(states[on_success], TriggerFailed) and "never" not in ns


def test_cell_timeout_ends_timed_out_on_every_executor(executor):
    flow = Flow("cells")
    slow = _cell(flow, "slow --timeout 0.5", "import time\ntime.sleep(30)\nv = 1")
    fast = _cell(flow, "fast --timeout 60", "u = 2")
    ns: dict[str, object] = {}
    states = run_notebook_flow(ns, flow=flow, executor=executor).result
    assert isinstance(states[slow], TimedOut), states[slow]
    assert isinstance(states[fast], Success) and ns["u"] == 2 and "v" not in ns


def test_mapped_cell_children_skip_one_by_one(executor):
    flow = Flow("cells")
    _cell(flow, "load", "xs = [1, 2, 3]")
    mapped = _cell(flow, "odd --map xs",
                   "from nbflow.engine.signals import SKIP\n"
                   "if xs % 2 == 0:\n    raise SKIP('even')\nodd = xs")
    ns: dict[str, object] = {}
    states = run_notebook_flow(ns, flow=flow, executor=executor).result
    children = states[mapped].map_states
    assert [type(c) for c in children] == [Success, Skipped, Success]
    assert ns["odd"] == [1, None, 3]


@pytest.mark.parametrize("line", [
    "--trigger nope", "--trigger 'some_successful(at_least=x)'", "--trigger os.system",
    "--timeout 0", "--timeout -1", "--timeout soon",
])
def test_bad_cell_options_are_refused(line):
    from nbflow.errors import FlowtaskOptionsError

    with pytest.raises(FlowtaskOptionsError, match="--"):
        parse_flowtask_line(line)


def test_cell_loops_with_the_loop_signal_on_every_executor(executor):
    flow = Flow("cells")
    _cell(flow, "count", "from nbflow import context\n"
                         "from nbflow.engine.signals import LOOP\n"
                         "total = context.get('task_loop_result', 0) + 1\n"
                         "if total < 3:\n    raise LOOP(result=total)")
    ns: dict[str, object] = {}
    assert run_notebook_flow(ns, flow=flow, executor=executor).is_successful()
    assert ns["total"] == 3
