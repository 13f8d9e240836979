"""The live run view: RunState from real runs, the widget's traits, background
runs cancelled through the Cancel button, and the static snapshot a saved
notebook keeps."""

from __future__ import annotations

import base64
import re
import threading
import time

import pytest

from nbflow import Flow, task
from nbflow.engine.run_state import CHILD_SPANS
from nbflow.engine.runner import FlowRun, RunStartedError
from nbflow.engine.state import Cancelled, Failed, Success
from nbflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from nbflow.notebook import NotebookRun
from nbflow.widgets import RunState, RunView, run_with_view

TIMEOUT = 60
RELEASE = threading.Event()  # lets a `slow` task left running in a pool end


# Plain functions, wrapped below: pickled by reference, they reach an
# in-process Dask worker without RELEASE (a lock) being pickled by value.
def _inc(x):
    return x + 1


def _boom(x):
    raise ValueError(f"boom {x}")


def _add(x, y):
    return x + y


def _check(x):
    if x == 2:
        raise ValueError("two is bad")
    return x


def _slow(x):
    deadline = time.monotonic() + TIMEOUT
    while not RELEASE.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)  # a Python loop: a cancel lands between sleeps
    return x


inc, boom, add, check, slow = (
    task(name=f.__name__[1:])(f) for f in (_inc, _boom, _add, _check, _slow)
)


def mixed_flow():
    with Flow("mixed") as flow:
        a = inc(1)
        b = boom(a)
        c = inc(a)
        d = add(b, c)
        m = check.map([1, 2, 3])
    return flow, dict(a=a, b=b, c=c, d=d, m=m)


def slow_flow():
    with Flow("slow") as flow:
        first = inc(1)
        middle = slow(first)
        after = inc(middle)
    return flow, first, middle, after


@pytest.fixture(params=["local", "threads"])
def executor(request):
    if request.param == "local":
        return LocalExecutor()
    return LocalDaskExecutor(scheduler="threads", num_workers=2)


def by_name(snapshot):
    return {t.name: t for t in snapshot.tasks}


def wait_for(view, predicate, timeout=TIMEOUT):
    """Wait until ``predicate(snapshot)`` holds; return the snapshot."""
    end = time.monotonic() + timeout
    while True:
        snapshot = view.run_state.snapshot()
        if predicate(snapshot):
            return snapshot
        left = end - time.monotonic()
        assert left > 0, f"gave up waiting; last: {snapshot}"
        view.run_state.wait(snapshot.version, timeout=left)


def test_run_state_follows_a_real_run(executor):
    flow, t = mixed_flow()
    run_state = RunState()
    state = flow.run(executor=executor, listeners=[run_state])
    snap = run_state.snapshot()
    assert isinstance(state, Failed)
    tasks = by_name(snap)
    assert [n for n in tasks] == [x.name for x in snap.tasks]
    assert {n: s.state for n, s in tasks.items()} == {
        "inc": "Success",
        "inc-2": "Success",
        "boom": "Failed",
        "check": "Failed",
        "add": "TriggerFailed",
    }
    assert "ValueError: boom 2" in tasks["boom"].traceback
    assert tasks["boom"].duration is not None and tasks["boom"].duration >= 0
    mapped = tasks["check"]
    assert (mapped.size, mapped.done, mapped.failed) == (3, 3, 1)
    assert mapped.children == {"Success": 2, "Failed": 1}
    assert "two is bad" in mapped.traceback  # the first failed child's
    assert mapped.failed_index == 1  # check(2) failed
    # Units of work: a task is one, each child one; failed work is not done.
    assert snap.units == (4, 2, 0, 7)  # add did not run: neither done nor failed
    assert snap.is_finished and snap.state == "Failed" and snap.progress == 4 / 7
    assert snap.flow_name == "mixed" and snap.elapsed >= 0


def test_run_state_keeps_counts_not_children_for_a_large_map():
    with Flow("big") as flow:
        inc.map(range(10_000))
    run_state = RunState()
    assert flow.run(listeners=[run_state]).is_successful()
    (mapped,) = run_state.snapshot().tasks
    assert mapped.state == "Mapped" and mapped.children == {"Success": 10_000}
    assert mapped.done == 10_000 and len(mapped.spans) <= CHILD_SPANS


def test_the_bus_hands_over_batches_while_records_keep_coming():
    """A queue that never empties (a big map on the driver's thread) still
    reaches the view in several batches, so it is live."""
    from nbflow.core.task import Task
    from nbflow.engine.events import EventBus

    batches = []
    bus = EventBus([batches.append], [Task(name="t")], interval=0.0)
    for i in range(3000):
        bus.put((0, i, "Success", 1.0, None, None, None))
    bus.close()
    assert [len(b) for b in batches] == [1000, 1000, 1000]


def test_run_view_shows_states_graph_and_errors(executor):
    flow, _ = mixed_flow()
    view = RunView(flow)
    assert "nbflow-run-view" in view._dom_classes
    flow.run(executor=executor, listeners=[view])
    table = view.table.value
    assert 'class="nbflow-task nbflow-state-failed" data-task="boom"' in table
    assert 'nbflow-state-trigger-failed" data-task="add"' in table
    assert '<span class="nbflow-task-state">TriggerFailed</span>' in table
    assert 'data-done="2" data-failed="1" data-total="3"' in table  # succeeded
    assert "check[1] failed: ValueError: two is bad" in table  # which child
    svg = view.graph.value
    assert svg.startswith('<svg class="nbflow-graph"')
    assert '<g class="nbflow-node nbflow-state-failed" data-task="boom"' in svg
    assert '<g class="nbflow-node nbflow-state-success" data-task="inc-2"' in svg
    assert svg.count('class="nbflow-edge"') == 4
    panes = {
        title.split(":")[0]: (title, pane.value)
        for title, pane in zip(view.errors.titles, view.errors.children)
    }
    assert set(panes) == {"boom", "check[1] failed"}  # add did not run: no traceback
    assert panes["boom"][0].startswith("boom: Task 'boom' failed")
    assert "ValueError: boom 2" in panes["boom"][1]
    assert "two is bad" in panes["check[1] failed"][1]
    # 4 of 7 units of work succeeded: the bar does not say 100% for a failed run.
    assert view.progress.value == 4 / 7 and view.progress.bar_style == "danger"
    assert view.progress_label.value.endswith(" · 2 failed · 1 not run</span>")
    assert ">57% 4/7 [00:0" in view.progress_label.value
    assert "nbflow-state-failed" in view.header.value
    assert view.cancel_button.disabled


def test_run_view_throttles_redraws_but_draws_the_final_state():
    @task
    def nap(x):
        time.sleep(0.002)
        return x

    with Flow("throttled") as flow:
        nap.map(range(300))
    view = RunView(flow, interval=3600)  # one throttled draw at most in the run
    before = view.draws
    assert flow.run(listeners=[view]).is_successful()
    assert view.draws - before <= 2
    assert 'data-done="300" data-failed="0" data-total="300"' in view.table.value
    assert 'nbflow-state-mapped" data-task="nap"' in view.table.value


def test_the_saved_output_carries_the_final_state_as_html():
    flow, _ = mixed_flow()
    view = RunView(flow)
    live = view._repr_mimebundle_()
    assert live["application/vnd.jupyter.widget-view+json"]["model_id"] == view.model_id
    flow.run(listeners=[view])
    # Ended: the output is the HTML alone, so a reopened notebook shows no
    # "model not found" (Lab and Notebook 7 prefer the widget's mime type).
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    page = bundle["text/html"]
    assert "Executor: <code>LocalExecutor()</code>" in page
    assert '<details class="nbflow-timeline-static"><summary>Run timeline' in page
    assert page.startswith('<div class="nbflow-run-view nbflow-static">')
    assert '<details class="nbflow-error"><summary>' in page and "ValueError" in page
    assert "<script" not in page and "<svg" not in page  # pictures are images
    # the graph and the timeline: images of SVG data, the graph in words as alt
    graph, timeline = _images(page)
    assert graph.count("<rect x=") == 5 and timeline.count("<rect x=") == 5
    assert '<g class="nbflow-node nbflow-state-failed" data-task="boom"' in graph
    assert ('alt="Graph of 5 tasks: inc (Success) → boom, inc-2; check (Failed 2/3); '
            'boom (Failed) → add; inc-2 (Success) → add; add (TriggerFailed)"') in page
    # each state also as a mark and a word (for pages without our stylesheet)
    assert ('<span class="nbflow-mark">⊘ </span><span class="nbflow-task-state">'
            "TriggerFailed</span>") in page
    assert '">✗</span> <span class="nbflow-flow-state nbflow-state-failed">' in page


def _images(page):
    """The SVG documents of a snapshot's data: images, in order."""
    found = re.findall(r'<img class="[^"]+" src="data:image/svg\+xml;base64,([^"]+)"', page)
    return [base64.b64decode(data).decode() for data in found]


def test_run_with_view_in_the_foreground_calls_on_finish():
    flow, t = mixed_flow()
    finished = []
    run = run_with_view(flow, display=False, on_finish=finished.append)
    assert isinstance(run, NotebookRun)  # the handle `%flow run` gives too
    assert finished == [run] and isinstance(run.state, Failed)
    assert run.view.run_state.snapshot().state == "Failed"
    assert run.view.report_area.children[0].description == "Show run timeline"
    run.view.show_timeline()
    assert "nbflow-timeline" in run.view.report_area.children[0].value


def test_flow_run_start_join_and_errors():
    flow, *_ = slow_flow()
    RELEASE.set()
    try:
        run = FlowRun(flow).start()
        assert isinstance(run.join(TIMEOUT), Success)
        with pytest.raises(RunStartedError, match="already started"):
            run.start()
    finally:
        RELEASE.clear()

    class Broken(LocalExecutor):
        def start(self):
            raise OSError("no cluster today")

    run = FlowRun(flow, executor=Broken()).start()
    with pytest.raises(OSError, match="no cluster today"):
        run.join(TIMEOUT)
    run = run_with_view(flow, executor=Broken(), background=True, display=False)
    with pytest.raises(OSError):
        run.join(TIMEOUT)
    assert "The run raised OSError: no cluster today" in run.view.header.value
    assert run.view.cancel_button.disabled


def cancel_through_the_button(executor, *, release_on_cancel=False):
    flow, first, middle, after = slow_flow()
    finished = threading.Event()
    try:
        run = run_with_view(
            flow,
            executor=executor,
            background=True,
            display=False,
            on_finish=lambda r: finished.set(),
        )
        view = run.view
        assert not view.cancel_button.disabled
        drawn = threading.Event()
        view.graph.observe(  # the graph is drawn after the table
            lambda change: (
                'nbflow-state-running" data-task="slow"' in change["new"]
                and drawn.set()
            ),
            "value",
        )
        wait_for(
            view,
            lambda s: "slow" in by_name(s) and by_name(s)["slow"].state == "Running",
        )
        assert drawn.wait(TIMEOUT), "the graph never showed `slow` running"
        assert 'nbflow-state-running" data-task="slow"' in view.table.value
        assert run.is_running
        view.cancel_button.click()
        if release_on_cancel:
            RELEASE.set()
        state = run.join(TIMEOUT)
        assert state is not None, "the run did not end after Cancel"
    finally:
        RELEASE.set()  # a pool thread may still run `slow`
    assert finished.is_set()
    assert isinstance(state, Cancelled), state
    assert isinstance(state.result[first], Success)
    assert isinstance(state.result[middle], Cancelled)
    assert isinstance(state.result[after], Cancelled)
    snap = view.run_state.snapshot()
    assert snap.state == "Cancelled"
    assert [t.state for t in snap.tasks] == ["Success", "Cancelled", "Cancelled"]
    assert 'nbflow-state-cancelled" data-task="slow"' in view.table.value
    assert view.cancel_button.disabled
    return run


@pytest.fixture
def released():
    RELEASE.clear()
    yield
    RELEASE.set()


def test_cancel_button_stops_a_background_run(executor, released):
    cancel_through_the_button(executor)


@pytest.mark.slow
def test_cancel_button_stops_a_temporary_dask_cluster(released, no_leaked_processes):
    executor = DaskExecutor(
        cluster_kwargs={"n_workers": 1, "threads_per_worker": 2, "processes": False}
    )
    # A task running in a worker thread cannot be stopped: its future is
    # cancelled, then it is let go so the cluster closes without waiting for it
    # (Dask waits up to 30 s for a worker's running threads).
    run = cancel_through_the_button(executor, release_on_cancel=True)
    assert run.executor.client is None  # the temporary cluster was shut down


NOTEBOOK_CELLS = [
    """\
from nbflow import Flow, task
from nbflow.widgets import RunView, run_with_view

@task
def inc(x):
    return x + 1

@task
def boom(x):
    raise ValueError(f"boom {x}")

with Flow("saved") as flow:
    boom(inc(1))
""",
    """\
view = RunView(flow)
display(view)
state = flow.run(listeners=[view])
""",
    "run = run_with_view(flow, background=True)",
    "print(run.join(60).name)",
]


def html_outputs(cell):
    return [
        o["data"]["text/html"]
        for o in cell.outputs
        if o.get("output_type") == "display_data" and "text/html" in o.get("data", {})
    ]


@pytest.mark.slow
def test_the_executed_notebook_keeps_the_final_states_as_html(tmp_path):
    """A real kernel runs a view in the foreground and one in the background;
    the saved outputs carry the final states as plain HTML (what GitHub shows)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS]
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    nbformat.write(nb, tmp_path / "saved.ipynb")
    saved = nbformat.read(tmp_path / "saved.ipynb", as_version=4)
    assert "".join(o.get("text", "") for o in saved.cells[3].outputs).strip() == "Failed"
    for cell in (saved.cells[1], saved.cells[2]):
        (page,) = html_outputs(cell)
        assert 'class="nbflow-task nbflow-state-failed" data-task="boom"' in page
        assert 'class="nbflow-task nbflow-state-success" data-task="inc"' in page
        assert '<g class="nbflow-node nbflow-state-failed" data-task="boom"' in _images(page)[0]
        assert "nbflow-task nbflow-state-pending" not in page  # nothing left Pending
        assert "nbflow-node nbflow-state-pending" not in _images(page)[0]
        assert "ValueError: boom 2" in page
        # no widget left to look up when the notebook is reopened
        assert all("application/vnd.jupyter.widget-view+json" not in o.get("data", {})
                   for o in cell.outputs), cell.outputs


def test_cancelled_children_are_counted_apart_from_the_ones_that_succeeded():
    from nbflow.engine.run_state import TaskSnapshot
    from nbflow.widgets.run_html import _bar

    snap = TaskSnapshot(
        name="m", state="Cancelled", color="#6c757d", start=None, end=None,
        message=None, traceback=None, size=20,
        children={"Success": 2, "Cancelled": 10, "Pending": 8},
    )
    html = _bar(snap)
    # Cancelled is not done, and children that never ran count as cancelled.
    assert 'data-done="2" data-failed="0" data-total="20" data-cancelled="18"' in html
    assert "2/20, 18 cancelled" in html
    assert snap.units == (2, 0, 18, 20) and snap.progress == 0.1
