"""Dask's performance report around a run, with the user's code in it.

Dask's report shows, under "Calling Code", the source of the frame that left
the ``performance_report`` block, counted by a fixed ``stacklevel``. Entered
by nbflow's executor, that frame is nbflow's own; here the report is left
with the source of the first frame outside nbflow, dask, IPython and the
standard library's plumbing: the cell or script that called ``flow.run``.
"""

from __future__ import annotations

import contextlib
import html
import inspect
import logging
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["calling_code", "quiet_report"]

log = logging.getLogger("nbflow.executors.dask")

#: Modules whose frames are plumbing between the user's code and the report.
_SKIP = (
    "nbflow", "distributed", "dask", "contextlib", "threading", "concurrent",
    "asyncio", "tornado", "IPython", "ipykernel", "runpy", "importlib",
)


def calling_code(frame: FrameType | None = None) -> str | None:
    """The source of the first frame up the stack outside :data:`_SKIP`, or
    None (a run in a background thread has no caller on its stack).
    """
    frame = frame if frame is not None else sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.partition(".")[0] not in _SKIP and frame.f_code.co_name != "<listcomp>":
            try:
                return inspect.getsource(frame)
            except (OSError, TypeError):
                return None
        frame = frame.f_back
    return None


@contextlib.contextmanager
def quiet_report(report: Any, code: str | None = None) -> Iterator[None]:
    """Enter Dask's performance report; a failure to write it is logged, not
    raised, so it never hides the run's own outcome. ``code`` is shown under
    "Calling Code" (default: :func:`calling_code`).
    """
    report.__enter__()
    try:
        yield
    finally:
        try:
            from distributed import get_client

            code = code or calling_code() or "<Code not available>"
            # Dask puts the code into the report's HTML as it is.
            get_client().sync(report.__aexit__, None, None, None,
                              code=html.escape(code, quote=False))
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            log.warning("Dask performance report not written: %s", exc)
