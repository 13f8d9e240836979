"""The store of cell results: diskcache, bounded, safe against kills.

Notebook layer, private to :mod:`nbflow.notebook.cache`. The store is
:mod:`diskcache` (SQLite plus one file per result). A result is one entry: a
header with each value's length and checksum, then the values, written as a
file before its row is added, so a process killed mid-write leaves nothing that
is read back; a value that fails its checksum is :class:`Unreadable`. Beside the
results, untagged, each task's record (what its last key was made of). Past the
size bound the least recently used results go, one at a time.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import struct
import sys
import threading
import time
import zlib
from typing import Any

from nbflow.engine.run_state import format_bytes
from nbflow.errors import StoredResultError
from nbflow.notebook import runtime
from nbflow.notebook.runtime import CellResult

# A failing cell's traceback starts at the cell, not at the wrapper that stores it.
runtime.RUNTIME_FILES.append(__file__)

__all__ = [
    "Store",
    "StoredResult",
    "StoredResultError",
    "StoringCell",
    "Unreadable",
    "format_bytes",
    "open_store",
    "read_result",
    "warn",
    "write_result",
]


class Unreadable(Exception):
    """An entry that exists but cannot be read back as written."""


#: The first bytes of a stored result (then the header's length, the header,
#: the values one after another).
_MAGIC = b"nbflow-result-1\n"


class Store:
    """The results (bounded, least recently used out) and, beside them, each
    task's latest record (small; what its key was made of, to say why it runs).
    """

    def __init__(self, location: str, size_limit: int) -> None:
        import sqlite3

        import diskcache  # type: ignore[import-untyped]

        parent = os.path.dirname(location)
        if os.path.basename(parent) == ".nbflow":
            os.makedirs(parent, exist_ok=True)
            ignore = os.path.join(parent, ".gitignore")
            if not os.path.exists(ignore):
                with open(ignore, "w") as f:
                    f.write("# nbflow's cache of cell results; never committed.\n*\n")
        self.size_limit = size_limit
        settings = {
            "size_limit": size_limit, "eviction_policy": "least-recently-used",
            # cull_limit=0: evict in evict(), one result at a time, after a
            # write (diskcache's own culling drops ten entries at once, the new
            # one too).
            "cull_limit": 0,
            # No fsync (it was most of the time a restarted kernel took to open
            # the store): SQLite's write-ahead log keeps the index whole when
            # a process is killed, fsync or not; what only an OS crash
            # could damage is caught by each value's checksum, or, for the
            # index itself, by starting a new one below.
            "sqlite_synchronous": 0,
        }
        try:
            self.results = diskcache.Cache(location, **settings)
        except sqlite3.DatabaseError as exc:
            warn(f"the index of the cache in {location!r} is damaged ({exc}); "
                 "starting an empty one.")
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(location, diskcache.core.DBNAME + suffix))
            self.results = diskcache.Cache(location, **settings)

    # Task records: ("task", name) -> dict, untagged, so never evicted (results
    # are tagged with their task's name).

    def record(self, name: str) -> dict[str, Any] | None:
        """The record of the last result ``name`` stored, if any."""
        record = self.results.get(("task", name))
        return record if isinstance(record, dict) else None

    def set_record(self, name: str, record: dict[str, Any]) -> None:
        self.results.set(("task", name), record)

    def record_names(self) -> list[str]:
        return [k[1] for k in self.results.iterkeys()
                if isinstance(k, tuple) and k[0] == "task"]

    def clear(self, name: str | None) -> int:
        """Remove every result and record, or those of task ``name``."""
        if name is None:
            return int(self.results.clear())
        self.results.delete(("task", name))
        return int(self.results.evict(name))

    def evict(self) -> None:
        """Drop least recently used results until the store is within its bound."""
        results = self.results
        while results.volume() > self.size_limit:
            # diskcache has no public "evict one": its own LRU query, one row.
            row = results._sql(
                "SELECT key, raw FROM Cache WHERE tag IS NOT NULL "
                "ORDER BY access_time LIMIT 1"
            ).fetchone()
            if row is None:
                return
            results.delete(results._disk.get(*row))


_stores: dict[tuple[int, str, int], Store] = {}
_stores_lock = threading.Lock()


def open_store(location: str, size_limit: int) -> Store:
    """The store at ``location``, one per process."""
    key = (os.getpid(), location, size_limit)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(location, size_limit)
        return store


def warn(message: str) -> None:
    """One line on stderr: what the cache did instead, never a failure."""
    print(f"nbflow cache: {message}", file=sys.stderr)


def _blobs_of(result: CellResult) -> dict[str, bytes]:
    """Each provided value serialised (as already done when it crossed processes)."""
    import cloudpickle

    blobs = dict(result._blobs)
    for name, value in result._values.items():
        if name not in blobs:
            blobs[name] = cloudpickle.dumps(value, protocol=5)
    return blobs


class _Chain:
    """A file-like reader of several byte strings one after another (so a
    result is written to its file without joining them in memory first).
    """

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.index = 0
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        while self.index < len(self.parts):
            part = self.parts[self.index]
            if self.offset < len(part):
                end = len(part) if size < 0 else self.offset + size
                chunk = part[self.offset:end]
                self.offset += len(chunk)
                return chunk
            self.index += 1
            self.offset = 0
        return b""


def write_result(
    location: str,
    size_limit: int,
    task: str,
    key: str,
    parts: dict[str, Any],
    result: CellResult,
    expire: float | None,
) -> None:
    """Store ``result`` under ``key`` as one entry, then the task's record."""
    store = open_store(location, size_limit)
    blobs = _blobs_of(result)
    size = sum(len(b) for b in blobs.values())
    if size > size_limit:
        warn(f"the outputs of {task!r} ({format_bytes(size)}) are larger than the cache "
              f"({format_bytes(size_limit)}), so they are not stored.")
        return
    now = time.time()
    header = pickle.dumps({
        "task": task, "stdout": result.stdout, "created": now,
        "values": [(n, len(b), zlib.crc32(b)) for n, b in blobs.items()],
    })
    chain = _Chain([_MAGIC, struct.pack("<Q", len(header)), header, *blobs.values()])
    # diskcache writes the file first and adds its row after: a process killed
    # mid-write leaves a file no row points to, never a row with half a value.
    store.results.set(("result", key), chain, expire=expire, read=True, tag=task)
    store.set_record(task, {"key": key, "parts": parts, "created": now, "size": size,
                            "names": list(blobs),
                            "writer": f"{socket.gethostname()} pid {os.getpid()}"})
    store.evict()


def read_result(
    store: Store, key: str, *, values: bool = True
) -> tuple[CellResult, float] | None:
    """The stored result of ``key`` and when it was stored; None if absent;
    :class:`Unreadable` if broken. With ``values=False``, only its header is
    read: the result is a :class:`StoredResult` that reads its values (and
    checks them) where it is first used.
    """
    try:
        handle = store.results.get(("result", key), read=True)
    except Exception as exc:  # noqa: BLE001 - any broken entry is a miss
        raise Unreadable(f"{type(exc).__name__}: {exc}") from None
    if handle is None:
        return None
    with handle:
        try:
            if handle.read(len(_MAGIC)) != _MAGIC:
                raise Unreadable("it is not a result nbflow wrote")
            (length,) = struct.unpack("<Q", handle.read(8))
            header = pickle.loads(handle.read(length))
            if not values:
                names = tuple(n for n, _, _ in header["values"])
                result: CellResult = StoredResult(
                    store.results.directory, store.size_limit, key, header["task"],
                    header["stdout"], names,
                )
                return result, float(header["created"])
            blobs = read_values(handle, header)
        except Unreadable:
            raise
        except Exception as exc:  # noqa: BLE001 - any broken entry is a miss
            raise Unreadable(f"{type(exc).__name__}: {exc}") from None
    return CellResult({}, header["stdout"], blobs), float(header["created"])


def read_values(handle: Any, header: dict[str, Any]) -> dict[str, bytes]:
    """Read the values that follow the header, checking each one's checksum."""
    blobs = {}
    for name, size, crc in header["values"]:
        blob = handle.read(size)
        if len(blob) != size or zlib.crc32(blob) != crc:
            raise Unreadable(f"the value of {name!r} does not match its checksum")
        blobs[name] = blob
    return blobs


class StoredResult(CellResult):
    """A stored cell result that reads its values from the store where it is
    first used: on a Dask worker, from the shared location, so the values do
    not travel through the kernel. It pickles as its address in the store.
    """

    __slots__ = ("_where", "_names")

    def __init__(
        self,
        location: str,
        size_limit: int,
        key: str,
        task: str,
        stdout: str,
        names: tuple[str, ...],
    ) -> None:
        super().__init__({}, stdout)
        self._where: tuple[str, int, str, str] | None = (location, size_limit, key, task)
        self._names = names

    def _load(self) -> None:
        if self._where is None:
            return
        location, size_limit, key, task = self._where
        try:
            found = read_result(open_store(location, size_limit), key)
        except Unreadable as exc:
            found = None
            why = str(exc)
        else:
            why = "it is gone (evicted or cleared)"
        if found is None:
            raise StoredResultError(
                f"The stored result of {task!r} could not be read where it was needed "
                f"({why}); run it again with `%flow run --fresh {task}`."
            )
        self._blobs = found[0]._blobs
        self._where = None

    @property
    def values(self) -> dict[str, Any]:
        """Every provided name and its value (read from the store once)."""
        self._load()
        return super().values

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def value(self, name: str) -> Any:
        """The value of one provided name (read from the store once)."""
        self._load()
        return super().value(name)

    def __getstate__(self) -> tuple[Any, ...]:
        return (*super().__getstate__(), self._where, self._names)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        super().__setstate__(state[:3])
        self._where, self._names = state[3:]

    def __repr__(self) -> str:
        return f"StoredResult({sorted(self._names)!r})"


class StoringCell:
    """A cell's function that also stores what the cell provided, where it ran.

    Picklable: on a process pool or a Dask worker it opens the store there, so
    the values do not travel through the kernel to be stored. A value that
    cannot be stored (no space, not serialisable) is a warning, never a failure
    of the cell.

    For a child of a cell that maps (``map_var``), ``key`` is the cell's
    ``child_base``: the child's own key adds its element, and the child first
    looks that key up (unless ``lookup`` is False, for ``--fresh``); a stored
    result ends it ``Cached`` without running the cell.
    """

    __slots__ = ("fn", "location", "size_limit", "task", "key", "parts", "expire",
                 "map_var", "lookup")

    def __init__(
        self,
        fn: Any,
        location: str,
        size_limit: int,
        task: str,
        key: str,
        parts: dict[str, Any],
        expire: float | None,
        *,
        map_var: str | None = None,
        lookup: bool = True,
    ) -> None:
        self.fn = fn
        self.location = location
        self.size_limit = size_limit
        self.task = task
        self.key = key
        self.parts = parts
        self.expire = expire
        self.map_var = map_var
        self.lookup = lookup

    @property
    def __name__(self) -> str:  # noqa: PLW3201 - read by executors for key names
        return self.task

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in StoringCell.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for slot, value in zip(StoringCell.__slots__, state):
            setattr(self, slot, value)

    def __repr__(self) -> str:
        return f"<StoringCell {self.task!r}>"

    def _child_key(self, element: Any) -> str | None:
        from nbflow.notebook.cell_keys import child_key

        if isinstance(element, CellResult):  # a mapped upstream's child
            try:
                element = element.value(self.map_var or "")
            except KeyError:  # it did not provide it: the cell says so, unstored
                return None
        return child_key(self.key, element)

    def _reuse(self, key: str) -> None:
        """End this child ``Cached`` with its stored result, if there is one."""
        from nbflow.engine.signals import SUCCESS
        from nbflow.engine.state import Cached

        store = open_store(self.location, self.size_limit)
        try:
            found = read_result(store, key)
        except Unreadable as exc:
            warn(f"a stored result of {self.task!r} is unreadable ({exc}); running "
                  "that element again.")
            store.results.delete(("result", key))
            return
        if found is None:
            return
        result, created = found
        if self.expire is not None and time.time() - created > self.expire:
            return
        signal = SUCCESS()
        signal.state = Cached("Reused: unchanged.", result, cached_inputs={"key": key})
        raise signal

    def __call__(self, **inputs: Any) -> Any:
        """Run the cell, then store its result."""
        key = self.key
        if self.map_var is not None:
            child = self._child_key(inputs.get(self.map_var))
            if child is None:
                return self.fn(**inputs)  # its element cannot be hashed
            if self.lookup:
                self._reuse(child)
            key = child
        result = self.fn(**inputs)
        try:
            write_result(self.location, self.size_limit, self.task, key, self.parts,
                   result, self.expire)
        except Exception as exc:  # noqa: BLE001 - the cell succeeded; say why not stored
            warn(f"the outputs of {self.task!r} were not stored "
                  f"({type(exc).__name__}: {exc}); the cell will run again next time.")
        return result
