"""What runs a cell as a task, wherever the task runs; standard library only.

A :class:`CellFunction` carries the cell's source, not compiled code: in each
process it runs in (the kernel, a process pool worker, a Dask worker) it
registers the source in :mod:`linecache` under the cell's filename and compiles
it once, so a traceback shows the cell's own lines there too. It runs the code
in a fresh globals dict seeded with the cell's inputs and the namespace values
it reads, and returns a :class:`CellResult`: the names it provides and what it
printed. Printing is captured per thread, so cells running side by side on a
thread pool do not mix their output.
"""

from __future__ import annotations

import builtins
import io
import linecache
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from nbflow.errors import UnserialisableResultError

__all__ = [
    "RUNTIME_FILES",
    "CellFunction",
    "CellResult",
    "Pick",
    "UnserialisableResultError",
    "capturing_stdout",
    "install_stdout",
    "register_source",
    "strip_runtime_frames",
    "uninstall_stdout",
]

_compiled: dict[tuple[str, str], Any] = {}
#: Files whose frames :func:`strip_runtime_frames` drops: this one, and the
#: wrappers that run a cell (the cache's, which adds itself).
RUNTIME_FILES = [__file__]
_install_lock = threading.Lock()


def register_source(filename: str, source: str) -> None:
    """Put ``source`` into :mod:`linecache` as ``filename`` (as IPython does)."""
    entry = linecache.cache.get(filename)
    lines = source.splitlines(True)
    if entry is None or len(entry) != 4 or entry[2] != lines:
        # mtime None: linecache.checkcache never evicts the entry.
        linecache.cache[filename] = (len(source), None, lines, filename)


def _code(filename: str, source: str) -> Any:
    code = _compiled.get((filename, source))
    if code is None:
        code = _compiled[(filename, source)] = compile(source, filename, "exec")
    return code


class CellResult:
    """The names a cell run provided, and what it printed.

    When the run crosses processes, the values are kept serialised, one by
    one: each is serialised once, where the cell ran, and deserialised only
    where a name is used.
    """

    __slots__ = ("_values", "_blobs", "stdout")

    def __init__(
        self,
        values: dict[str, Any],
        stdout: str = "",
        blobs: dict[str, bytes] | None = None,
    ) -> None:
        self._values = values
        self._blobs = blobs or {}
        self.stdout = stdout

    @property
    def values(self) -> dict[str, Any]:
        """Every provided name and its value."""
        for name in list(self._blobs):
            self.value(name)
        return self._values

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._blobs

    def value(self, name: str) -> Any:
        """The value of one provided name (KeyError if the cell did not set it)."""
        if name not in self._values and name in self._blobs:
            import cloudpickle

            self._values[name] = cloudpickle.loads(self._blobs.pop(name))
        return self._values[name]

    def __getstate__(self) -> tuple[Any, ...]:
        return self._values, self._blobs, self.stdout

    def __sizeof__(self) -> int:
        # What a Dask worker reports as this result's size (nbytes), which the
        # notebook's memory budget reads before fetching anything.
        sizeof = getattr(sys.modules.get("dask.sizeof"), "sizeof", sys.getsizeof)
        return object.__sizeof__(self) + int(sizeof(self._values)) + int(
            sizeof(self._blobs)) + len(self.stdout)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._values, self._blobs, self.stdout = state

    def __repr__(self) -> str:
        return f"CellResult({sorted([*self._values, *self._blobs])!r})"


class CellFunction:
    """Run one cell's code with its inputs; picklable, it carries its source.

    Parameters
    ----------
    task_name : str
        The task's name, for messages.
    source : str
        The cell's code.
    filename : str
        The name tracebacks show, e.g. ``"<flowtask clean>"``.
    provides : tuple of str
        The names returned in the :class:`CellResult`.
    map_var : str, optional
        For a mapped cell, the name bound to each element.
    namespace : dict, optional
        Values read from the user namespace, captured when a run starts.
    portable : bool
        Serialise the provided values where the cell runs, so one that cannot
        travel fails this cell with a clear error (for processes and clusters).

    """

    __slots__ = ("task_name", "source", "filename", "provides", "map_var",
                 "namespace", "portable")

    def __init__(
        self,
        task_name: str,
        source: str,
        filename: str,
        provides: tuple[str, ...],
        map_var: str | None = None,
        namespace: dict[str, Any] | None = None,
        *,
        portable: bool = False,
    ) -> None:
        self.task_name = task_name
        self.source = source
        self.filename = filename
        self.provides = provides
        self.map_var = map_var
        self.namespace = namespace or {}
        self.portable = portable

    @property
    def __name__(self) -> str:  # noqa: PLW3201 - read by executors for key names
        return self.task_name

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in CellFunction.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for slot, value in zip(CellFunction.__slots__, state):
            setattr(self, slot, value)

    def with_namespace(self, namespace: dict[str, Any], *, portable: bool = False
                       ) -> CellFunction:
        """A copy that runs with these namespace values."""
        return CellFunction(self.task_name, self.source, self.filename, self.provides,
                            self.map_var, namespace, portable=portable)

    def __repr__(self) -> str:
        return f"<CellFunction {self.task_name!r}>"

    def __call__(self, **inputs: Any) -> CellResult:
        """Run the cell; ``inputs`` are upstream results keyed by the name read."""
        register_source(self.filename, self.source)
        code = _code(self.filename, self.source)
        env: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        env.update(self.namespace)
        for name, value in inputs.items():
            env[name] = self._value(name, value)
        with capturing_stdout() as out:
            try:
                exec(code, env)  # noqa: S102 - running the user's cell is the point
            except BaseException as exc:
                # Exceptions pickle their __dict__: the output travels with it.
                exc._nbflow_stdout = out.getvalue()  # type: ignore[attr-defined]
                raise
        values = {n: env[n] for n in self.provides if n in env}
        if self.portable:
            return CellResult({}, out.getvalue(), self._serialised(values))
        return CellResult(values, out.getvalue())

    def _serialised(self, values: dict[str, Any]) -> dict[str, bytes]:
        import cloudpickle

        blobs = {}
        for name, value in values.items():
            try:
                blobs[name] = cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - any pickling failure is reported
                raise UnserialisableResultError(
                    f"Cell {self.task_name!r} provides {name!r} "
                    f"({type(value).__name__}), which cannot be serialised to pass "
                    f"it on from this process ({type(exc).__name__}: {exc}); create "
                    "it in the cells that use it, `del` it at the end of the cell, "
                    "or run on LocalExecutor or threads."
                ) from None
        return blobs

    def _value(self, name: str, value: Any) -> Any:
        if isinstance(value, CellResult):
            return _lookup(value, name)
        if name == self.map_var:  # one element of what the cell maps over
            return value
        if not isinstance(value, list):
            # A skipped upstream (--no-skip-on-upstream-skip): its result is
            # the SKIP signal, as in Prefect; the cell reads None.
            return None
        # A mapped upstream's children; a skipped child provides None.
        return [_lookup(v, name) if isinstance(v, CellResult) else None for v in value]


def _lookup(result: CellResult, name: str) -> Any:
    try:
        return result.value(name)
    except KeyError:
        raise NameError(
            f"name {name!r} is not defined: the task that provides it did not set it."
        ) from None


class Pick:
    """Take one provided name out of a :class:`CellResult` (to map over it)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def __name__(self) -> str:  # noqa: PLW3201 - read by executors for key names
        return f"pick_{self.name}"

    def __getstate__(self) -> str:
        return self.name

    def __setstate__(self, state: str) -> None:
        self.name = state

    def __call__(self, result: CellResult) -> Any:
        """Return the value of ``name`` in ``result``."""
        return _lookup(result, self.name)


class _ThreadStdout(io.TextIOBase):
    """``sys.stdout`` that writes to a per-thread buffer while one is set."""

    def __init__(self, original: TextIO) -> None:
        self.original = original
        self.local = threading.local()

    def write(self, text: str) -> int:
        buffer = getattr(self.local, "buffer", None)
        return (buffer if buffer is not None else self.original).write(text)

    def flush(self) -> None:
        if getattr(self.local, "buffer", None) is None:
            self.original.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def install_stdout() -> _ThreadStdout:
    """Make ``sys.stdout`` capture per thread, if it does not yet; return it."""
    with _install_lock:
        current = sys.stdout
        if not isinstance(current, _ThreadStdout):
            current = sys.stdout = _ThreadStdout(current)
        return current


def uninstall_stdout(installed: _ThreadStdout) -> None:
    """Put back the stream ``installed`` wrapped, if it is still in place."""
    with _install_lock:
        if sys.stdout is installed:
            sys.stdout = installed.original


@contextmanager
def capturing_stdout() -> Iterator[io.StringIO]:
    """Capture what this thread prints, into the yielded buffer."""
    stream = install_stdout()
    previous = getattr(stream.local, "buffer", None)
    buffer = stream.local.buffer = io.StringIO()
    try:
        yield buffer
    finally:
        stream.local.buffer = previous


def strip_runtime_frames(text: str) -> str:
    """Drop the frames of this module (the cell runner) from a traceback text,
    so a cell's traceback starts at the cell.
    """
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line.startswith('  File "'):
            skipping = any(line.startswith(f'  File "{f}"') for f in RUNTIME_FILES)
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            out.append(line)
    return "".join(out)
