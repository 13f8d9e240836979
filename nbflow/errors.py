"""Every deliberate nbflow error; standard library only.

Each error derives from :class:`NbflowError` and from the matching built-in
(``ValueError``, ``TypeError``, ``RuntimeError``), so generic handlers still work.
Messages are one sentence: what happened, the offending value, the fix.
"""

from __future__ import annotations

__all__ = [
    "ClusterConnectionError",
    "CommandLineError",
    "ExecutorNotStartedError",
    "FlowContextError",
    "FlowValidationError",
    "NbflowError",
    "NbflowWarning",
    "NotebookFileError",
    "RunCancelled",
    "TaskFailed",
]


class NbflowError(Exception):
    """Base class of every error nbflow raises on purpose."""


class NbflowWarning(UserWarning):
    """Something nbflow did not do, or did differently, without failing."""


class FlowValidationError(NbflowError, ValueError):
    """A flow cannot run as built: a cycle, a missing parameter, a bad mapping."""


class FlowContextError(NbflowError, ValueError):
    """A task was used in a way that needs a ``with Flow(...)`` block."""


class ExecutorNotStartedError(NbflowError, RuntimeError):
    """An executor was asked to run work outside ``with executor.start():``."""

    def __init__(self, executor: object) -> None:
        name = type(executor).__name__
        super().__init__(
            f"{name} is not started; call submit() inside "
            "`with executor.start():` or run it through `flow.run()`."
        )


class ClusterConnectionError(NbflowError, OSError):
    """A Dask scheduler could not be reached or was lost."""


class CommandLineError(NbflowError, ValueError):
    """``nbflow``'s options ask for something that cannot be done; exit status 2."""


class NotebookFileError(NbflowError, ValueError):
    """An ``.ipynb`` file cannot be read, run or exported as a flow."""


class RunCancelled(NbflowError, RuntimeError):
    """Waiting stopped because the run was cancelled."""

    def __init__(self, message: str = "The run was cancelled.") -> None:
        super().__init__(message)


class TaskFailed(NbflowError, RuntimeError):
    """A task failed; raised ``from`` the task's own exception."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message or f"Task {name!r} failed.")
