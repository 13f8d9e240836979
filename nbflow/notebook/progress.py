"""A plain-text progress listener for runs of the notebook flow.

Notebook layer: no IPython. :class:`TextProgress` is an events listener (see
:mod:`nbflow.engine.events`) that redraws one status line with a carriage return (which
Jupyter front ends honour) and ends with a summary line. The live widget view
replaces it in the magics.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from nbflow.engine.events import Event, FlowFinished, FlowStarted, TaskStateChanged

__all__ = ["TextProgress"]


class TextProgress:
    """Show ``k/n tasks finished`` while a flow runs, then a summary.

    Parameters
    ----------
    stream : text stream, optional
        Default ``sys.stdout`` at the time of each write.

    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.total = 0
        self.finished: dict[object, str] = {}
        self.started = time.time()
        self._last = ""

    def __call__(self, events: Sequence[Event]) -> None:
        """Take a batch of events; redraw the status line once."""
        for event in events:
            if isinstance(event, FlowStarted):
                shown = [t for t in event.tasks if t.helper_of is None]
                self.total, self.started = len(shown), event.time
            elif (isinstance(event, TaskStateChanged) and event.map_index is None
                  and event.task.helper_of is None):
                if event.new.is_finished():
                    self.finished[event.task] = event.new.name
                else:
                    self.finished.pop(event.task, None)
            elif isinstance(event, FlowFinished):
                self._write(self._status() + "\n", final=event)
                return
        status = self._status()
        if status != self._last:
            self._write(status)

    def _status(self) -> str:
        failed = sum(1 for name in self.finished.values() if "Failed" in name)
        extra = f", {failed} failed" if failed else ""
        return f"\r{len(self.finished)}/{self.total} tasks finished{extra}"

    def _write(self, text: str, final: FlowFinished | None = None) -> None:
        self._last = text
        if final is not None:
            seconds = final.time - self.started
            text = text.rstrip("\n") + f"; flow {final.state.name} in {seconds:.2f} s\n"
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(text)
        stream.flush()
