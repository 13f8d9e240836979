"""Prefect 1's states (Skipped, Cached, TimedOut, Paused, Retrying, Looped) are
coloured and counted in the live run view, the saved snapshot and the CLI text
progress."""

from __future__ import annotations

import io
import re
import time

from nbflow import Flow, task
from nbflow.cli.progress import TextProgress
from nbflow.engine import signals
from nbflow.engine.run_state import RunState, state_class
from nbflow.engine.state import Cached, Paused, Skipped, TimedOut
from nbflow.triggers import manual_only
from nbflow.widgets import RunView, run_with_view
from nbflow.widgets.run_html import STYLE

TIMEOUT = 60


@task(name="skipper")
def skipper(x):
    if x % 2:
        raise signals.SKIP("odd")
    return x


@task(name="cached", cache_for=600)
def cached():
    return 1


@task(name="slow", timeout=0.3)
def slow():
    time.sleep(30)


@task(name="waits", trigger=manual_only)
def waits():
    return 1


@task(name="flaky", max_retries=1, retry_delay=0)
def flaky(attempts):
    attempts.append(1)
    if len(attempts) == 1:
        raise ValueError("first attempt")
    return len(attempts)


@task(name="loops")
def loops():
    from nbflow import context

    count = context.get("task_loop_count", 1)
    if count < 3:
        raise signals.LOOP(result=count)
    return count


def _flow(attempts: list[int]) -> Flow:
    with Flow("prefect-states") as flow:
        skipper.map([1, 2, 3, 4])
        skipper(1)
        cached()
        slow()
        waits()
        flaky(attempts)
        loops()
    return flow


def test_new_states_are_coloured_and_counted_in_the_live_view_and_the_snapshot():
    cached_flow = Flow("warm")
    cached_flow.add_task(cached)
    assert cached_flow.run().is_successful()  # the next run finds it Cached

    view = RunView(_flow([]), interval=0.05)
    run = run_with_view(view.flow, background=False, display=False, view=view)
    state = run.join(TIMEOUT)
    assert state is not None
    by_name = {t.name: s for t, s in state.result.items()}
    assert isinstance(by_name["cached"], Cached)
    assert isinstance(by_name["slow"], TimedOut)
    assert isinstance(by_name["waits"], Paused)
    snapshot = view.run_state.snapshot()
    counts = snapshot.counts
    assert counts["Skipped"] == 3 and counts["Cached"] == 1, counts
    assert counts["TimedOut"] == 1 and counts["Paused"] == 1, counts
    tasks = {t.name: t for t in snapshot.tasks}
    assert tasks["flaky"].retries == 1 and tasks["loops"].state == "Success"
    saved = view.html()
    for html in (view.header.value + view.progress_label.value + view.table.value, saved):
        for name, cls in [("skipper-2", Skipped), ("cached", Cached), ("slow", TimedOut),
                          ("waits", Paused)]:
            row = re.search(rf'<tr class="nbflow-task ([^"]+)" data-task="{name}">.*?</tr>',
                            html, re.S)
            assert row is not None, (name, html)
            assert row.group(1) == state_class(cls.__name__)
            dot = f".{state_class(cls.__name__)}>td>.nbflow-dot{{background:{cls.color}}}"
            assert dot in STYLE, name
        assert "3 skipped" in html and "1 cached" in html and "1 timed out" in html
        assert "1 paused" in html
        bar = re.search(r'<div class="nbflow-map-progress"[^>]*>(.*?)</div>', html, re.S)
        assert bar is not None and "4/4, 2 skipped" in bar.group(1), html
        assert f"width:50.0%;background:{Skipped.color}" in bar.group(1)
        assert "&#x27;slow&#x27; failed" in html or "'slow' failed" in html
    assert "nbflow-state-timed-out" in saved and "nbflow-state-skipped" in saved


def test_cli_text_progress_colours_and_explains_the_new_states():
    out = io.StringIO()
    model = RunState()
    _flow([]).run(listeners=[TextProgress(out, color=True), model])
    text = out.getvalue()
    assert "\x1b[37;2mSkipped\x1b[0m  odd" in text, text
    assert "\x1b[31;1mTimedOut\x1b[0m" in text
    assert "\x1b[34mPaused\x1b[0m" in text
    assert "\x1b[33mRetrying\x1b[0m" in text
    assert "\x1b[37;2m2 skipped\x1b[0m" in text  # the mapped task's count line
