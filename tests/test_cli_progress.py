"""The text progress view: the same model and task labels as the widget view."""

from __future__ import annotations

import io

from nbflow import Flow, task
from nbflow.cli.progress import TextProgress
from nbflow.engine.run_state import RunState


@task
def one() -> int:
    return 1


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def spread(n: int) -> list[int]:
    return [n] * 3


@task
def double(x: int) -> int:
    return 2 * x


def _flow() -> Flow:
    with Flow("labels") as flow:
        a = one()
        b = one()  # the same name twice
        total = add(a, b)
        double.map(spread(total))
    return flow


def test_text_progress_labels_tasks_as_the_run_model():
    flow = _flow()
    out = io.StringIO()
    model = RunState()
    state = flow.run(listeners=[TextProgress(out, color=False), model])
    assert state.is_successful()
    text = out.getvalue()
    labels = [t.name for t in model.snapshot().tasks]
    assert "one-2" in labels
    for label in labels:
        assert f"  {label} " in text, (label, text)
    assert "one (2)" not in text
    assert "3/3 done" in text


def test_text_progress_summary_ends_with_the_flows_state():
    out = io.StringIO()
    state = _flow().run(listeners=[TextProgress(out, color=False, summary=True)])
    assert state.is_successful()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("Flow 'labels': Success in "), last


def test_a_cancelled_maps_count_says_which_children_never_ran():
    import threading

    from nbflow.engine.runner import FlowRun
    from nbflow.executors import LocalDaskExecutor

    started, release = threading.Semaphore(0), threading.Event()

    @task
    def slow(x: int) -> int:
        started.release()
        release.wait(60)
        return x

    with Flow("cancelled") as flow:
        slow.map(list(range(10)))
    out = io.StringIO()
    run = FlowRun(flow, executor=LocalDaskExecutor("threads", num_workers=2),
                  listeners=[TextProgress(out, color=False)])
    run.start()
    assert started.acquire(timeout=60)
    run.cancel()
    release.set()
    state = run.join(timeout=60)
    assert state is not None and state.is_cancelled(), state
    text = out.getvalue()
    counts = [line for line in text.splitlines() if "/10 done" in line]
    assert counts and "10/10 done" not in text, text
    last = counts[-1].split("  slow  ")[-1]
    done, cancelled = int(last.split("/")[0]), int(last.split(", ")[-1].split()[0])
    # Which children ran before the cancel is dask's order to choose; the
    # count says how many ran and that the others never did.
    assert done <= 2 and cancelled >= 8 and done + cancelled == 10, last
    assert last.endswith(" cancelled"), last
