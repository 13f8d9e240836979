"""Every deliberate nbflow error; standard library only.

Each error derives from :class:`NbflowError` and from the matching built-in
(``ValueError``, ``TypeError``, ``RuntimeError``), so generic handlers still work.
Messages are one sentence: what happened, the offending value, the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CacheSettingsError",
    "CellFailed",
    "CellSyntaxError",
    "ClusterConnectionError",
    "ClusterEnvironmentError",
    "CommandLineError",
    "DaskExecutorError",
    "DuplicateProviderError",
    "ExecutorBusyError",
    "ExecutorConfigError",
    "ExecutorNotStartedError",
    "FlowContextError",
    "FlowValidationError",
    "FlowtaskOptionsError",
    "LocalDaskOptionsError",
    "MainGuardError",
    "MapValueError",
    "MemoryBudgetError",
    "NbflowError",
    "NbflowWarning",
    "NoReportError",
    "NotebookFileError",
    "ParseError",
    "ProcessLostError",
    "RegistrationError",
    "ResultNotKeptError",
    "RunCancelled",
    "RunStartedError",
    "StoredResultError",
    "TaskFailed",
    "UndefinedNameError",
    "UnknownSchedulerError",
    "UnserialisableResultError",
    "UnserialisableValueError",
    "WholeNumberError",
    "WorkerDiedError",
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


class CacheSettingsError(NbflowError, ValueError):
    """A cache option (a duration, a size, a location) is not valid."""


class StoredResultError(NbflowError, RuntimeError):
    """A stored result that was there when a run began cannot be read where it is used."""


class ClusterEnvironmentError(NbflowError, RuntimeError):
    """A cluster's workers lack a package the flow uses, or have other versions."""


class CommandLineError(NbflowError, ValueError):
    """``nbflow``'s options ask for something that cannot be done; exit status 2."""


class MemoryBudgetError(NbflowError, ValueError):
    """A memory budget that is not a size."""


class NotebookFileError(NbflowError, ValueError):
    """An ``.ipynb`` file cannot be read, run or exported as a flow."""


class ResultNotKeptError(NbflowError, RuntimeError):
    """A task's result stayed on a cluster that is gone (or lost it)."""


class RunCancelled(NbflowError, RuntimeError):
    """Waiting stopped because the run was cancelled."""

    def __init__(self, message: str = "The run was cancelled.") -> None:
        super().__init__(message)


class TaskFailed(NbflowError, RuntimeError):
    """A task failed; raised ``from`` the task's own exception."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message or f"Task {name!r} failed.")


# -- Running a flow ----------------------------------------------------------------------


class RunStartedError(NbflowError, RuntimeError):
    """A FlowRun (or a NotebookRun) was started twice."""

    def __init__(self, name: str, kind: str = "FlowRun") -> None:
        super().__init__(
            f"This run of flow {name!r} was already started; make a new "
            f"{kind} for another run."
        )


# -- Executors and their configuration ---------------------------------------------------


class DuplicateProviderError(NbflowError, ValueError):
    """Two cells provide one name and neither reads it from the other."""


class ExecutorConfigError(NbflowError, ValueError):
    """An executor config cannot be built, parsed or read from an executor."""


class UnknownSchedulerError(NbflowError, ValueError):
    """A scheduler name dask does not know."""

    def __init__(self, given: object, choices: Sequence[str]) -> None:
        listed = ", ".join(repr(s) for s in choices)
        super().__init__(f"Unknown scheduler {given!r}; expected one of {listed}.")


class WholeNumberError(NbflowError, ValueError):
    """A count (workers, threads) is not a whole number in range.

    :meth:`check` is the one check of every count option, wherever it is
    given (``LocalDaskExecutor``, the config and its panel, ``nbflow run``).
    """

    def __init__(self, name: str, given: object, minimum: int, default: str) -> None:
        super().__init__(
            f"{name} must be a whole number >= {minimum}, got {given!r}; "
            f"leave it out for {default}."
        )

    @classmethod
    def check(cls, name: str, value: object, *, minimum: int, default: str) -> int:
        """Return ``value`` if it is an int (not a bool) >= ``minimum``; else raise.

        Examples
        --------
        >>> WholeNumberError.check("num_workers", 2, minimum=1, default="one per core")
        2

        """
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise cls(name, value, minimum, default)
        return value


class DaskExecutorError(NbflowError, ValueError):
    """A DaskExecutor option is invalid."""


class LocalDaskOptionsError(NbflowError, TypeError):
    """A LocalDaskExecutor option its scheduler does not take."""


class ExecutorBusyError(NbflowError, RuntimeError):
    """An executor asked to run a flow while it runs another (one at a time)."""


class MainGuardError(NbflowError, RuntimeError):
    """A script starts worker processes from module-level code without the
    ``if __name__ == "__main__":`` guard they need.
    """


class ProcessLostError(NbflowError, RuntimeError):
    """A process of the pool died under the tasks it ran (killed, out of memory)."""

    def __init__(self, processes: str) -> None:
        super().__init__(
            f"the process pool's worker {processes} died before this task finished "
            "(killed, or out of memory), which broke the pool; tasks that had "
            "finished keep their results; rerun the flow."
        )


class WorkerDiedError(NbflowError, RuntimeError):
    """The workers running a task died under it (Dask's ``KilledWorker``)."""


# -- The notebook layer: %%flowtask cells and the notebook flow --------------------------


class FlowtaskOptionsError(NbflowError, ValueError):
    """A ``%%flowtask`` line has an unknown or malformed option."""


class CellSyntaxError(NbflowError, SyntaxError):
    """A ``%%flowtask`` cell does not parse."""

    def __init__(self, cell: str | None, error: SyntaxError) -> None:
        self.cell = cell
        self.line = error.lineno
        text = (error.text or "").strip()
        where = f" on line {error.lineno}" if error.lineno else ""
        shown = f" ({text!r})" if text else ""
        super().__init__(
            f"{f'Cell {cell!r}' if cell else 'The cell'} has a syntax error{where}: "
            f"{error.msg}{shown}; "
            "fix it and run the cell again."
        )


class RegistrationError(NbflowError, ValueError):
    """A ``%%flowtask`` cell cannot be registered as given."""


class UndefinedNameError(NbflowError, NameError):
    """A cell reads a name that no task above it provides and the namespace lacks."""


class MapValueError(NbflowError, TypeError):
    """A cell maps over a value that is not a sequence."""


class UnserialisableValueError(NbflowError, TypeError):
    """A value a cell needs cannot travel to another process."""


class UnserialisableResultError(NbflowError, TypeError):
    """A value a cell provides cannot travel to other tasks or the notebook."""


class CellFailed(TaskFailed):
    """A cell task failed; shows the cell's own traceback, from where it ran."""

    def __init__(self, name: str, message: str, tracebacks: Sequence[str]) -> None:
        super().__init__(name, message)
        self.tracebacks = list(tracebacks)

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the driver's traceback."""
        lines: list[str] = []
        for text in self.tracebacks:
            lines.extend(text.rstrip("\n").splitlines())
            lines.append("")
        lines.append(f"{type(self).__name__}: {self}")
        return lines


# -- Widgets -----------------------------------------------------------------------------


class NoReportError(NbflowError, ValueError):
    """There is no performance report to show."""

    def __init__(self, source: object) -> None:
        super().__init__(
            f"{source!r} has no performance report; run a flow with "
            "DaskExecutor(performance_report_path='report.html') first, or pass "
            "the report's HTML."
        )


class ParseError(NbflowError, ValueError):
    """A control holds text that is not a value of its field."""
