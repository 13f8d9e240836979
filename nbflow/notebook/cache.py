"""Incremental runs: which cells a run reuses, and the store of cell results.

Notebook layer: no IPython. Before a run, :func:`plan_run` computes the key of
every ``%%flowtask`` cell (:mod:`nbflow.notebook.cell_keys`: its code, helpers,
modules, inputs and options, with no data moved). A cell whose key is in the
store does not run: it is given a ``Cached`` state holding its stored outputs;
the others start from a ``Pending`` state saying why they run. A cell that runs
stores its outputs where it runs, once it succeeded (:class:`StoringCell`).

The store (:mod:`nbflow.notebook._cache_store`, diskcache) is in
``.nbflow/cache`` next to the notebook by default; an unreadable entry is a
miss and one warning line, never an error. A run on an existing Dask cluster
with no location set caches in the cluster's memory instead, for this
process's session only: the results stay where they were made (the kernel
holds their futures), and a reused cell reads its value worker to worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from nbflow.engine.state import Cached, DeferredResult, Pending, State
from nbflow.errors import CacheSettingsError, NbflowError
from nbflow.notebook._cache_store import (
    Store,
    StoredResult,
    StoredResultError,
    StoringCell,
    Unreadable,
    format_bytes,
    open_store,
    read_result,
    warn,
)
from nbflow.notebook.cell_keys import CellKey, cell_keys
from nbflow.notebook.flow import CellTask
from nbflow.notebook.runtime import CellResult

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.core.task import Task

__all__ = [
    "CacheEntry",
    "CacheSettingsError",
    "CellKey",
    "RunPlan",
    "StoredResult",
    "StoredResultError",
    "StoringCell",
    "cache_entries",
    "cache_location",
    "cache_settings",
    "cell_keys",
    "chosen_cache_location",
    "clear_cache",
    "configure_cache",
    "describe_cache",
    "last_plan",
    "parse_duration",
    "plan_run",
    "remember",
    "use_cache_location",
]

DEFAULT_SIZE_LIMIT = 2**30  # 1 GiB
_OFF = frozenset({"0", "off", "false", "no"})


# -- settings -------------------------------------------------------------------------


@dataclasses.dataclass
class _Settings:
    location: str | None = None
    size_limit: int | None = None
    enabled: bool | None = None


_settings = _Settings()


def configure_cache(
    location: str | os.PathLike[str] | None = None,
    *,
    size_limit: int | None = None,
    enabled: bool | None = None,
) -> None:
    """Set where the notebook cache lives, how big it may grow, and whether it is on.

    Parameters
    ----------
    location : str or path, optional
        A folder (created when first written). Default: ``$NBFLOW_CACHE_DIR``,
        else ``.nbflow/cache`` in the current folder (the notebook's, in Jupyter).
        A folder every worker can reach also caches runs on a ``DaskExecutor``.
    size_limit : int, optional
        Bytes; the least recently used results go first past it. Default 1 GiB.
    enabled : bool, optional
        False: every cell runs and nothing is stored. Default: on, unless
        ``$NBFLOW_CACHE`` is ``0``/``off``.

    Examples
    --------
    >>> configure_cache("/shared/nbflow-cache", size_limit=10 * 2**30)  # doctest: +SKIP

    """
    if size_limit is not None and size_limit <= 0:
        raise CacheSettingsError(
            f"The cache size limit must be a positive number of bytes, got "
            f"{size_limit!r}; pass e.g. size_limit=2**30."
        )
    if location is not None:
        from nbflow.executors._config_parts import check_cache_location

        try:  # the panel's check, with the panel's message
            check_cache_location(os.fspath(location))
        except NbflowError as exc:
            raise CacheSettingsError(str(exc)) from None
        _settings.location = os.fspath(location)
    if size_limit is not None:
        _settings.size_limit = size_limit
    if enabled is not None:
        _settings.enabled = enabled


def use_cache_location(location: str | os.PathLike[str] | None) -> None:
    """Keep the cache in ``location`` from the next run on; None: the default.

    What the executor panel's *cache location* field sets (checked there).
    """
    _settings.location = None if location is None else os.fspath(location)


def chosen_cache_location() -> str | None:
    """The location set with :func:`configure_cache` or the panel, else None."""
    return _settings.location


def cache_location() -> str:
    """The folder of the cache (see :func:`configure_cache`)."""
    if _settings.location is not None:
        return os.path.abspath(_settings.location)
    env = os.environ.get("NBFLOW_CACHE_DIR")
    if env:
        return os.path.abspath(env)
    return os.path.join(os.getcwd(), ".nbflow", "cache")


def _is_shared() -> bool:
    """Whether the user chose the location (so a cluster's workers see it)."""
    return _settings.location is not None or bool(os.environ.get("NBFLOW_CACHE_DIR"))


def cache_settings() -> tuple[bool, str, int]:
    """``(enabled, location, size_limit)`` as the next run uses them."""
    enabled = _settings.enabled
    if enabled is None:
        enabled = os.environ.get("NBFLOW_CACHE", "on").strip().lower() not in _OFF
    return enabled, cache_location(), _settings.size_limit or DEFAULT_SIZE_LIMIT


def parse_duration(text: str) -> datetime.timedelta:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` or plain seconds as a timedelta.

    Raises
    ------
    CacheSettingsError
        For anything else.

    Examples
    --------
    >>> parse_duration("2h")
    datetime.timedelta(seconds=7200)

    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:], None)
    number = value[:-1] if scale is not None else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise CacheSettingsError(
            f"Bad --cache-for duration {text!r}; give a positive number with s, m, h "
            "or d, e.g. 30m."
        )
    return datetime.timedelta(seconds=seconds)


# -- planning a run -------------------------------------------------------------------


@dataclasses.dataclass
class RunPlan:
    """What a run of the notebook flow reuses and what it runs, and why.

    ``reused`` and ``ran`` map task names to a one-line reason;
    ``task_states`` are the states the run starts from: ``Cached`` for the
    reused tasks, ``Pending`` saying why for the others (the run view shows it
    from the start).
    """

    enabled: bool
    location: str
    size_limit: int
    keys: dict[CellTask, CellKey]
    task_states: dict[Task, State] = dataclasses.field(default_factory=dict)
    reused: dict[str, str] = dataclasses.field(default_factory=dict)
    ran: dict[str, str] = dataclasses.field(default_factory=dict)
    note: str | None = None
    #: True when tasks that run store their outputs.
    storing: bool = True
    #: The address of the existing cluster whose memory holds the results
    #: (no location set), else None.
    on_cluster: str | None = None
    #: When each reused result was stored (``time.time()``), by task name.
    stored_at: dict[str, float] = dataclasses.field(default_factory=dict)
    #: The tasks ``--fresh`` runs (cells that map do not look their children up).
    forced: set[str] = dataclasses.field(default_factory=set)

    def summary(self) -> str:
        """One line for the user: what was reused, what ran and why."""
        if not self.enabled:
            return self.note or "The cache is off ($NBFLOW_CACHE or configure_cache)."
        n = len(self.reused) + len(self.ran)
        ran = "; ".join(f"{name} ({why})" for name, why in self.ran.items())
        text = f"Cache: reused {len(self.reused)} of {n} tasks"
        text += f"; ran {ran}." if ran else "."
        return f"{text} {self.note}" if self.note else text

    def wrap(self, task: CellTask) -> None:
        """Make ``task`` store its outputs after it succeeds (during the run)."""
        key = self.keys.get(task)
        if not self.storing or key is None or key.key is None or isinstance(
                self.task_states.get(task), Cached):
            return
        cache_for = getattr(task, "store_for", None)
        expire = cache_for.total_seconds() if cache_for is not None else None
        if key.child_base is not None:
            # Each child looks its own result up where it runs, by its element.
            task.fn = StoringCell(task.fn, self.location, self.size_limit, task.name,
                                  key.child_base, key.parts, expire,
                                  map_var=task.map_var,
                                  lookup=task.name not in self.forced)
            return
        task.fn = StoringCell(task.fn, self.location, self.size_limit, task.name,
                              key.key, key.parts, expire)


@dataclasses.dataclass
class _Held:
    """A cell's result kept in a cluster's memory: its key, its result (the
    reference holding the value there, or the value when it came home), since
    when. The reference, not the state: a state fetched later (the user read
    the value) would hand the next run the value from here.
    """

    key: CellKey
    result: Any
    created: float


@dataclasses.dataclass
class _OnCluster:
    """The cell results kept in the memory of one existing cluster."""

    address: str
    held: dict[str, _Held] = dataclasses.field(default_factory=dict)


_last: RunPlan | None = None
#: This session's results kept on a cluster (runs with no location set).
_on_cluster: _OnCluster | None = None
#: The results of this kernel's last run: task name -> (key, result, when it
#: was stored). A cell reused in the kernel that computed it is not read back
#: from disk.
_memory: dict[str, tuple[str, CellResult, float]] = {}


def last_plan() -> RunPlan | None:
    """The plan of the last run of the notebook flow in this process."""
    return _last


def plan_run(
    flow: Flow,
    values: Mapping[CellTask, Mapping[str, Any]],
    namespace: Mapping[str, Any],
    *,
    fresh: bool | Iterable[str] = False,
    cluster: bool = False,
    cluster_address: str | None = None,
    local_workers: bool = False,
) -> RunPlan:
    """Decide, before a run, which cell tasks are reused and why the others run.

    Parameters
    ----------
    flow : Flow
        The notebook flow.
    values : dict
        The namespace values each cell reads.
    namespace : dict
        The namespace results are written back to.
    fresh : bool or iterable of str
        True: reuse nothing. Task names: reuse neither them nor their downstream.
    cluster : bool
        The run is on a ``DaskExecutor``: cache on disk only in a location the
        user set (every worker must reach it).
    cluster_address : str, optional
        The address of the existing cluster the run is on: with no location
        set, results are kept in its memory for this session.
    local_workers : bool
        The cluster's workers run on this machine (a temporary
        ``LocalCluster``): they reach the default location too.

    Returns
    -------
    RunPlan
        Its ``task_states`` give the reused tasks their ``Cached`` state, and
        the others a ``Pending`` one saying why they run.

    """
    global _last
    enabled, location, size_limit = cache_settings()
    plan = RunPlan(enabled, location, size_limit, {})
    _last = plan
    if not enabled:
        return plan
    if cluster and not _is_shared() and not local_workers:
        if cluster_address is not None:
            return _plan_on_cluster(plan, flow, values, namespace, fresh,
                                    cluster_address)
        plan.enabled = False
        plan.note = ("Not cached: a temporary Dask cluster that is not a "
                     "LocalCluster keeps nothing after its run; set a cache "
                     "location every worker reaches (the panel, "
                     "%flow cache location PATH, configure_cache(location) or "
                     "$NBFLOW_CACHE_DIR), or run on an existing cluster.")
        return plan
    plan.keys = cell_keys(flow, values, namespace)
    forced = plan.forced = _forced(flow, fresh)
    try:
        store = open_store(location, size_limit)
    except Exception as exc:  # noqa: BLE001 - an unusable store is no cache
        warn(f"cannot open {location!r} ({type(exc).__name__}: {exc}); every "
              "cell runs and nothing is stored.")
        plan.storing = False
        store = None
    # One transaction for every lookup: a read in a least-recently-used store
    # writes its access time, which is one commit per cell otherwise.
    with store.results.transact() if store is not None else contextlib.nullcontext():
        _look_up_all(plan, store, namespace, forced, cluster=cluster)
    return _say_why(plan)


def _look_up_all(
    plan: RunPlan,
    store: Store | None,
    namespace: Mapping[str, Any],
    forced: set[str],
    *,
    cluster: bool,
) -> None:
    """Fill ``plan``'s reused and ran tasks from the store."""
    for task, key in plan.keys.items():
        if task.name in forced:
            plan.ran[task.name] = "--fresh"
            continue
        if key.key is None:
            plan.ran[task.name] = key.why_not or "not cached"
            continue
        if key.child_base is not None:
            # Its children are looked up where they run: this reason stands
            # unless some are reused (see remember()).
            why = _why_changed(store, task, key)
            plan.ran[task.name] = "its elements changed" if why in (
                "inputs changed", "its stored result expired or was evicted") else why
            continue
        result, found, created = _lookup(store, task, key.key, namespace,
                                         lazy=cluster)
        if result is None:
            plan.ran[task.name] = found or _why_changed(store, task, key)
            continue
        why = found or "unchanged"
        plan.stored_at[task.name] = created
        plan.task_states[task] = Cached(
            f"Reused: {why}.", result, cached_inputs={"key": key.key},
        )
        plan.reused[task.name] = why


def _plan_on_cluster(
    plan: RunPlan,
    flow: Flow,
    values: Mapping[CellTask, Mapping[str, Any]],
    namespace: Mapping[str, Any],
    fresh: bool | Iterable[str],
    address: str,
) -> RunPlan:
    """Reuse the results this session keeps in the memory of the cluster at
    ``address`` (those of another cluster are let go).
    """
    global _on_cluster
    if _on_cluster is None or _on_cluster.address != address:
        _on_cluster = _OnCluster(address)
    held = _on_cluster.held
    for gone in set(held) - {t.name for t in flow.ordered_tasks()}:
        del held[gone]  # a removed cell's value is let go
    plan.on_cluster, plan.storing = address, False
    plan.note = (f"Cached in memory on the Dask cluster at {address} for this "
                 "session only; to keep results across sessions, set a cache "
                 "location every worker reaches (the panel, %flow cache location "
                 "PATH or configure_cache(location)).")
    plan.keys = cell_keys(flow, values, namespace)
    forced = plan.forced = _forced(flow, fresh)
    now = time.time()
    for task, key in plan.keys.items():
        found = held.get(task.name)
        if task.name in forced or key.key is None:
            plan.ran[task.name] = "--fresh" if task.name in forced else (
                key.why_not or "not cached")
            continue
        why = None if found is None else _why_not_held(task, found, now)
        if found is None or found.key.key != key.key or why is not None:
            record = None if found is None else {"key": None, "parts": found.key.parts}
            plan.ran[task.name] = why or _why(record, key)
            continue
        age = f"kept on the cluster {_age(now - found.created)} ago"
        plan.task_states[task] = Cached(
            f"Reused: unchanged ({age}).", found.result,
            cached_inputs={"key": key.key},
        )
        plan.reused[task.name] = f"unchanged ({age})"
    return _say_why(plan)


def _why_not_held(task: CellTask, found: _Held, now: float) -> str | None:
    """Why a result kept on the cluster cannot stand in any more, or None."""
    result = found.result
    if isinstance(result, DeferredResult) and not result.is_kept():
        return "its result was lost with the cluster"
    cache_for = getattr(task, "store_for", None)
    if cache_for is not None and now - found.created > cache_for.total_seconds():
        return "its kept result expired"
    return None


def _say_why(plan: RunPlan) -> RunPlan:
    """Start each task that runs from a Pending state saying why."""
    for task in plan.keys:
        why = plan.ran.get(task.name)
        if why is not None:
            plan.task_states[task] = Pending(f"Ran: {why}.")
    return plan


def _forced(flow: Flow, fresh: bool | Iterable[str]) -> set[str]:
    if fresh is True:
        return {t.name for t in flow.ordered_tasks()}
    if not fresh:
        return set()
    names = set(fresh) if not isinstance(fresh, str) else {fresh}
    known = {t.name for t in flow.ordered_tasks()}
    for name in names:
        if name not in known:
            choices = ", ".join(repr(n) for n in sorted(known)) or "none"
            raise CacheSettingsError(
                f"--fresh {name!r} is not a task of the flow; use one of: {choices}."
            )
    forced = set(names)
    for task in flow.sorted_tasks():
        if any(t.name in forced for t in flow.upstream_tasks(task)):
            forced.add(task.name)
    return forced


def _lookup(
    store: Store | None,
    task: CellTask,
    key: str,
    namespace: Mapping[str, Any],
    *,
    lazy: bool = False,
) -> tuple[CellResult | None, str | None, float]:
    """The stored result of ``task``, why it is reused and when it was
    stored; or None and why not.
    """
    now = time.time()
    cache_for = task.store_for
    # On a cluster, a result held here would travel from the kernel to the
    # workers: they read it from the store instead.
    held = None if lazy else _memory.get(task.name)
    if held is not None and held[0] == key and all(
        namespace.get(n, _MISSING) is v for n, v in held[1]._values.items()
    ) and not held[1]._blobs:
        result, why, created = held[1], "unchanged in this kernel", held[2]
    else:
        if store is None:
            return None, "the cache cannot be opened", now
        try:
            found = read_result(store, key, values=not lazy)
        except Unreadable as exc:
            warn(f"the stored result of {task.name!r} is unreadable ({exc}); running "
                  "it again.")
            store.results.delete(("result", key))
            return None, "its stored result was unreadable", now
        if found is None:
            return None, None, now
        result, created = found
        why = f"unchanged (stored {_age(now - created)} ago)"
    # The entry expires as --cache-for said when it was stored; a shorter
    # --cache-for given since applies too (it is not part of the key).
    if cache_for is not None and now - created > cache_for.total_seconds():
        return None, "its stored result is older than --cache-for", now
    return result, why, created


_MISSING = object()


def _why_changed(store: Store | None, task: CellTask, key: CellKey) -> str:
    """Why a cell with no stored result runs: what differs from its last stored run."""
    return _why(store.record(task.name) if store is not None else None, key)


def _why(record: dict[str, Any] | None, key: CellKey) -> str:
    """What differs between ``key`` and a task's last ``record`` (its key and parts)."""
    if not record:
        return "first run"
    if record.get("key") == key.key:
        return "its stored result expired or was evicted"
    old, new = record.get("parts", {}), key.parts
    if old.get("code") != new["code"]:
        return "code changed"
    modules = [n for n, v in new["modules"].items()
               if old.get("modules", {}).get(n) != v]
    if modules:
        return f"module {modules[0]!r} changed"
    changed = [n for n in new["inputs"] if old.get("inputs", {}).get(n) != new["inputs"][n]]
    changed += [n for n in old.get("inputs", {}) if n not in new["inputs"]]
    if changed:
        kind = "helper" if changed[0] in new["helpers"] else "input"
        return f"{kind} {changed[0]!r} changed"
    ups = [v.partition(":")[0] for n, v in new["upstream"].items()
           if old.get("upstream", {}).get(n) != v]
    if ups:
        return f"upstream {ups[0]!r} changed"
    if old.get("options") != new["options"]:
        return "options changed"
    return "inputs changed"


def remember(plan: RunPlan, states: Mapping[Task, State]) -> None:
    """Keep this run's results in the kernel, to reuse without reading the disk."""
    if not plan.enabled:
        return
    now = time.time()
    for task, key in plan.keys.items():
        state = states.get(task)
        if (key.child_base is not None and state is not None and state.map_states
                and task.name not in plan.forced):
            _mapped_reasons(plan, task.name, state)
        # A value still on a cluster is not read here (that would fetch it).
        done = (key.key is not None and state is not None and state.is_successful()
                and not state.is_skipped()
                and (state.is_result_deferred() or isinstance(state._result, CellResult)))
        if plan.on_cluster is not None and _on_cluster is not None:
            old = _on_cluster.held.get(task.name)
            if done and state is not None:
                reused = isinstance(plan.task_states.get(task), Cached)
                since = old.created if old is not None and reused else now
                _on_cluster.held[task.name] = _Held(key, state._result, since)
            else:
                _on_cluster.held.pop(task.name, None)
        elif (done and state is not None and key.key is not None
              and isinstance(state._result, CellResult)):
            created = plan.stored_at.get(task.name, now)
            _memory[task.name] = (key.key, state._result, created)
        else:
            _memory.pop(task.name, None)
        if state is not None and task.name in plan.ran and state.message is None:
            state.message = f"Ran: {plan.ran[task.name]}."


def _mapped_reasons(plan: RunPlan, name: str, state: State) -> None:
    """Say what a cell that maps reused, from its children's states."""
    children = state.map_states or []
    reused = sum(isinstance(c, Cached) for c in children)
    if reused == len(children):
        plan.ran.pop(name, None)
        plan.reused[name] = f"unchanged ({len(children)} elements)"
        state.message = f"Reused: {plan.reused[name]}."
    elif reused:
        plan.ran[name] = f"{len(children) - reused} of {len(children)} elements new or " \
                         "changed"
    order = [t.name for t in plan.keys]
    plan.reused = {n: plan.reused[n] for n in order if n in plan.reused}
    plan.ran = {n: plan.ran[n] for n in order if n in plan.ran}


# -- inspecting and clearing ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """The latest stored result of one task."""

    task: str
    key: str
    size: int
    created: float
    names: tuple[str, ...]
    present: bool


def cache_entries() -> list[CacheEntry]:
    """The latest stored result of each task in the cache, oldest first."""
    _, location, size_limit = cache_settings()
    if not os.path.isdir(location):
        return []
    store = open_store(location, size_limit)
    entries = []
    for name in store.record_names():
        record = store.record(name)
        if record is None:
            continue
        entries.append(CacheEntry(name, record["key"], record["size"],
                                  record["created"], tuple(record["names"]),
                                  ("result", record["key"]) in store.results))
    return sorted(entries, key=lambda e: e.created)


def describe_cache() -> str:
    """The cache as text: where, how big, and each task's latest result and age."""
    enabled, location, size_limit = cache_settings()
    state = "" if enabled else " (off)"
    held = sorted(_on_cluster.held) if _on_cluster is not None else []
    memory = (f"\nIn memory on the Dask cluster at {_on_cluster.address} for this "
              f"session: {', '.join(held)}." if _on_cluster is not None and held else "")
    if not os.path.isdir(location):
        return f"Cache at {location}{state}: empty.{memory}"
    store = open_store(location, size_limit)
    entries = cache_entries()
    lines = [f"Cache at {location}{state}: {format_bytes(store.results.volume())} of "
             f"{format_bytes(size_limit)}, {len(entries)} tasks."]
    now = time.time()
    for e in entries:
        gone = "" if e.present else " (evicted)"
        names = ", ".join(e.names) or "-"
        lines.append(f"  {e.task}: {format_bytes(e.size)}, stored {_age(now - e.created)} "
                     f"ago{gone}; {names}")
    return "\n".join(lines) + memory


def clear_cache(name: str | None = None) -> int:
    """Remove every stored result, or those of task ``name``; return how many entries."""
    global _on_cluster
    _, location, size_limit = cache_settings()
    if name is None:
        _memory.clear()
        _on_cluster = None  # the cluster lets the values go
    else:
        _memory.pop(name, None)
        if _on_cluster is not None:
            _on_cluster.held.pop(name, None)
    if not os.path.isdir(location):
        return 0
    return open_store(location, size_limit).clear(name)


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"
