"""Progress counts units of work (a task one, each mapped child one); failed and
cancelled work is not done; rate and time left as tqdm shows them."""

from __future__ import annotations

import re
import threading
import time

import pytest

from nbflow import Flow, task
from nbflow.widgets import RunView, run_with_view
from nbflow.widgets.run_html import progress_text

TIMEOUT = 60
REACHED = threading.Event()
RELEASE = threading.Event()


def _child(x):
    if x == 280:  # the 281st child holds the run at a known point
        REACHED.set()
        RELEASE.wait(TIMEOUT)
    return x


child = task(name="child")(_child)


def test_a_1000_child_map_shows_its_share_done_rate_and_time_left_then_cancelled():
    REACHED.clear()
    RELEASE.clear()
    with Flow("big") as flow:
        child.map(list(range(1000)))
    view = RunView(flow, interval=0.05)
    run = run_with_view(flow, background=True, display=False, view=view)
    try:
        assert REACHED.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while view.run_state.snapshot().units[0] < 280:
            assert time.monotonic() < deadline
            view.run_state.wait(view.run_state.version, timeout=1)
        snapshot = view.run_state.snapshot()
        text = progress_text(snapshot)
        # tqdm: percent, n/total, [elapsed<left, rate]
        assert re.fullmatch(r"28% 280/1,000 \[\d\d:\d\d<\d\d:\d\d, [\d,.]+ it/s\]", text), text
        assert snapshot.remaining is not None and snapshot.rate is not None
        assert snapshot.remaining == pytest.approx(720 / snapshot.rate, rel=0.5)
        run.cancel()
    finally:
        RELEASE.set()
    state = run.join(TIMEOUT)
    assert state is not None and state.is_cancelled()
    final = view.run_state.snapshot()
    done, failed, cancelled, total = final.units
    assert total == 1000 and failed == 0 and done + cancelled == 1000
    assert 280 <= done < 1000  # not "1,000/1,000" nor 100%
    assert final.progress == done / 1000
    text = progress_text(final)
    assert re.fullmatch(rf"\d+% {done}/1,000 \[\d\d:\d\d, [\d,.]+ it/s\] · "
                        rf"{cancelled:,} cancelled", text), text
    assert f"{done}/1,000, {cancelled} cancelled" in view.table.value
    assert view.progress.value == done / 1000


def test_the_live_view_shows_the_progress_text_once_the_saved_one_in_its_header():
    REACHED.clear()
    RELEASE.clear()
    with Flow("held") as flow:
        child.map(list(range(1000)))
    view = RunView(flow, interval=0.05)
    run = run_with_view(flow, background=True, display=False, view=view)
    try:
        assert REACHED.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while "/1,000 [" not in view.progress_label.value:  # drawn mid-run
            assert time.monotonic() < deadline
            view.run_state.wait(view.run_state.version, timeout=1)
        # the bar line has it (next to the bar, as tqdm), the header does not
        shown = view.header.value + view.progress_label.value
        assert shown.count("/1,000 [") == 1, shown
        assert "/1,000 [" in view.progress_label.value
    finally:
        RELEASE.set()
    assert run.join(TIMEOUT) is not None
    # the saved snapshot has no bar line: its header carries the text, once
    saved = view.html()
    assert saved.count("1,000/1,000 [") == 1, saved
