"""Interrupting a run's thread from another thread, as Ctrl-C would.

:class:`Interrupter` raises a KeyboardInterrupt in the thread inside its
:meth:`~Interrupter.guard`, at that thread's next Python line, and makes sure
an interrupt sent but not yet raised never escapes the guard.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["Interrupter", "RunInterrupted"]


class RunInterrupted(KeyboardInterrupt):
    """The KeyboardInterrupt :meth:`FlowRun.cancel` raises in the run's thread."""


class Interrupter:
    """Send a :class:`RunInterrupted` to the thread inside :meth:`guard`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: int | None = None
        self._sent = False

    def interrupt(self) -> None:
        """Raise RunInterrupted in the guarded thread, if another one is there."""
        with self._lock:
            ident = self._ident
            if ident is not None and ident != threading.get_ident():
                _async_raise(ident, RunInterrupted)
                self._sent = True

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Let :meth:`interrupt` reach this thread while inside."""
        with self._lock:
            self._ident = threading.get_ident()
            self._sent = False
        delivered = False
        try:
            yield
        except RunInterrupted:
            delivered = True
            raise
        finally:
            with self._lock:
                self._ident = None
                pending = self._sent and not delivered
            if pending:
                _absorb_interrupt()


def _async_raise(ident: int, exc: type[BaseException]) -> None:
    """Raise ``exc`` in thread ``ident`` at its next Python line."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))


def _absorb_interrupt() -> None:
    """Let an interrupt sent to this thread but not raised yet land here.

    Never clear it with ``PyThreadState_SetAsyncExc(ident, NULL)``: on CPython
    3.11 that leaves the eval loop's "pending async exception" flag set for
    good, and every later line of the process runs through the slow path (and
    profilers hang).
    """
    try:
        for _ in range(10_000):
            pass
    except RunInterrupted:
        pass
