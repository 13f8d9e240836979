"""The run timeline shows all the work: children past the first CHILD_SPANS are
merged into busy intervals per place, so busy threads do not look idle; both
plots share one time axis."""

from __future__ import annotations

import time

from nbflow import Flow, task
from nbflow.engine.run_state import CHILD_SPANS
from nbflow.executors import LocalDaskExecutor
from nbflow.widgets import RunState
from nbflow.widgets.report import timeline_html


def _work(x):
    time.sleep(0.002)
    return x


def test_every_child_of_a_big_map_is_on_the_timeline():
    work = task(name="work")(_work)
    with Flow("big") as flow:
        work.map(list(range(1000)))
    run_state = RunState()
    executor = LocalDaskExecutor(scheduler="threads", num_workers=2)
    assert flow.run(executor=executor, listeners=[run_state]).is_successful()
    (mapped,) = run_state.snapshot().tasks
    assert len(mapped.spans) == CHILD_SPANS
    merged = sum(count for _, _, _, count in mapped.busy)
    assert len(mapped.spans) + merged == 1000  # all the work, none dropped
    places = {where for where, *_ in mapped.busy}
    assert places and places <= {span[4] for span in mapped.spans}
    # each place stays busy to near the end, as it did
    for place in places:
        last = max(end for where, _, end, _ in mapped.busy if where == place)
        assert mapped.end - last < 0.25 * (mapped.end - mapped.start), place
    assert len(mapped.busy) < 800  # merged: fewer bars than children
    page = timeline_html(run_state.snapshot())
    assert page.count('"min_border_left":220') == 2, "one time axis for both plots"
    assert "children, merged" in page
