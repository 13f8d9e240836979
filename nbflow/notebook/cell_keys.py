"""What makes a notebook cell's cache key: its code, helpers, modules, inputs, options.

Notebook layer: no IPython. :func:`cell_keys` computes, in the driver and with
no data moved, the key of every ``%%flowtask`` cell of a flow: the hash of its
normalised source (its ``ast`` dump, so comments and blank lines do not count),
the modules it imports (the notebook's own by their source, installed ones by
their file), the options that change what it does, the namespace values it
reads (``dask.base.tokenize``; plain Python values without importing dask; a
function defined in the notebook by its normalised source and, transitively,
what it reads), and the keys of the cells it reads from (a Merkle tree: a
change reaches everything downstream). A cell that maps keys each child by its
element (:func:`child_key`). :mod:`nbflow.notebook.cache` looks the keys up.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.machinery
import inspect
import os
import site
import sys
import sysconfig
import textwrap
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbflow.notebook.flow import CellTask, cell_inputs

if TYPE_CHECKING:
    from nbflow.core.flow import Flow

__all__ = ["FORMAT", "CellKey", "cell_keys", "child_key"]

#: Part of every key: bump it when what a key covers or the entry format changes.
FORMAT = "nbflow-cell-cache-1"



@dataclasses.dataclass(frozen=True)
class CellKey:
    """A cell's key and what it is made of (to say why a cell runs)."""

    #: None when the cell cannot be cached (``why_not`` says why).
    key: str | None
    parts: dict[str, Any]
    why_not: str | None = None
    #: For a cell that maps (``--map``): its key but what it maps over; each
    #: child's key is this and the child's element (see :func:`child_key`).
    child_base: str | None = None


def _digest(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _normalised(source: str) -> str:
    """The source as its syntax tree: comments, blank lines and spacing do not count."""
    try:
        return ast.dump(ast.parse(textwrap.dedent(source)))
    except SyntaxError:
        return source


@functools.lru_cache(maxsize=4096)
def _source_digest(source: str) -> tuple[str, tuple[str, ...]]:
    """A cell's normalised source, hashed, and the modules it imports (absolute)."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return _digest(source), ()
    modules: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules[node.module] = None
    return _digest(ast.dump(tree)), tuple(sorted(modules))


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple[str, ...]:
    """Folders of the standard library and installed packages."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")
             if k in paths}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    roots.add(site.getusersitepackages())
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


#: Content digests of module files, by (path, size, mtime).
_file_digests: dict[tuple[str, int, int], str] = {}


def _find_spec(name: str, path: list[str] | None) -> Any:
    """Where ``name`` would be imported from, without importing it: a top-level
    name as ``import`` looks for it (editable installs have their own finders),
    a submodule in its package's folders.
    """
    finders: list[Any] = list(sys.meta_path) if path is None else []
    finders = [f for f in finders if f is not importlib.machinery.BuiltinImporter]
    for finder in finders or [importlib.machinery.PathFinder]:
        try:
            spec = finder.find_spec(name, path)
        except Exception:  # noqa: BLE001, S112 - a finder that fails finds nothing
            continue
        if spec is not None:
            return spec
    return None


def _module_token(name: str) -> str:
    """A module a cell imports, by the file it would be imported from: the
    notebook's own modules (any not installed) by their source, installed ones
    by their file's size and time (a reinstall changes them). Found without
    importing, so the token is the same before and after the import (after a
    restart, reused cells import nothing).
    """
    if name in sys.builtin_module_names:
        return _digest("builtin module", name)
    spec = None
    path: list[str] | None = None
    parts = name.split(".")
    for i, part in enumerate(parts):
        spec = _find_spec(part, path)
        if spec is None or (spec.submodule_search_locations is None
                             and i < len(parts) - 1):
            spec = None
            break
        path = list(spec.submodule_search_locations or ())
    origin = spec.origin if spec is not None else None
    try:
        stat = os.stat(origin) if origin else None
    except OSError:
        stat = None
    if origin is None or stat is None:
        return _digest("module", name, "not found")
    if os.path.realpath(origin).startswith(_installed_roots()):
        return _digest("module", name, origin, stat.st_size, stat.st_mtime_ns)
    where = (origin, stat.st_size, stat.st_mtime_ns)
    digest = _file_digests.get(where)
    if digest is None:
        with open(origin, "rb") as f:
            digest = _file_digests[where] = hashlib.sha256(f.read()).hexdigest()
    return _digest("module", name, digest)


class _Unhashable(Exception):
    """A value ``tokenize`` cannot hash the same way twice."""


def _version(module_name: str) -> str:
    top = sys.modules.get(module_name.partition(".")[0])
    return str(getattr(top, "__version__", ""))


def _token(value: Any, seen: frozenset[int] = frozenset()) -> str:
    """A deterministic token of a namespace value (see the module docstring)."""
    if isinstance(value, types.ModuleType):
        return _digest("module", value.__name__, _version(value.__name__))
    if isinstance(value, types.FunctionType):
        return _function_token(value, seen)
    if isinstance(value, type) and value.__module__ == "__main__":
        try:
            return _digest("class", _normalised(inspect.getsource(value)))
        except (OSError, TypeError):
            pass
    if isinstance(value, (types.BuiltinFunctionType, type)):
        module = getattr(value, "__module__", None) or ""
        return _digest("named", module, getattr(value, "__qualname__", ""),
                       _version(module))
    plain = _plain_token(value)
    if plain is not None:
        return plain
    import dask
    from dask.base import tokenize

    try:
        with dask.config.set({"tokenize.ensure-deterministic": True}):
            return str(tokenize(value))
    except Exception as exc:  # noqa: BLE001 - dask raises several kinds
        raise _Unhashable(f"{type(exc).__name__}: {exc}") from None


#: Plain containers with more items than this are left to dask.
_PLAIN_ITEMS = 10_000


def _plain_token(value: Any) -> str | None:
    """The token of a value made of Python's own numbers, strings and
    containers only (what most notebook cells share), without importing dask
    (0.1-0.2 s, on the first run after a restart); None for anything else.
    """
    budget = [_PLAIN_ITEMS]

    def walk(v: Any) -> Any:
        budget[0] -= 1
        kind = type(v)  # exactly: a subclass may mean more than its value
        if budget[0] < 0:
            raise _NotPlain
        if kind is int:
            return "i", hex(v)  # repr() refuses very long ints
        if kind is str:
            return "s", hashlib.sha256(v.encode("utf-8", "surrogatepass")).hexdigest()
        if kind is bytes:
            return "b", hashlib.sha256(v).hexdigest()
        if kind in (float, complex, bool) or v is None:
            return kind.__name__, repr(v)
        if kind in (list, tuple):
            return kind.__name__, tuple(walk(x) for x in v)
        if kind is dict:
            return "d", tuple((walk(k), walk(x)) for k, x in v.items())
        if kind in (set, frozenset):
            return kind.__name__, tuple(sorted(repr(walk(x)) for x in v))
        raise _NotPlain

    try:
        return _digest("plain", walk(value))
    except (_NotPlain, RecursionError):
        return None


class _NotPlain(Exception):
    """A value with something in it that is not a plain Python value."""


def _function_token(fn: types.FunctionType, seen: frozenset[int]) -> str:
    """A function by its normalised source and, for the notebook's own
    functions, the globals it reads (transitively: a helper of a helper).
    """
    if id(fn) in seen:
        return _digest("recursive", fn.__qualname__)
    seen = seen | {id(fn)}
    try:
        source = _normalised(inspect.getsource(fn))
    except (OSError, TypeError):
        source = repr(fn.__code__.co_code)
    parts: list[Any] = [fn.__module__, fn.__qualname__, source]
    if fn.__module__ != "__main__":
        return _digest("function", *parts, _version(fn.__module__))
    parts.append(_token(fn.__defaults__, seen) if fn.__defaults__ else None)
    parts.append(_token(fn.__kwdefaults__, seen) if fn.__kwdefaults__ else None)
    for cell in fn.__closure__ or ():
        try:
            parts.append(_token(cell.cell_contents, seen))
        except ValueError:  # an empty cell
            parts.append(None)
    globals_ = fn.__globals__
    for name in sorted(_global_names(fn.__code__)):
        if name in globals_:
            parts.append((name, _token(globals_[name], seen)))
    return _digest("function", *parts)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def cell_keys(
    flow: Flow,
    values: Mapping[CellTask, Mapping[str, Any]],
    namespace: Mapping[str, Any] | None = None,
) -> dict[CellTask, CellKey]:
    """The key of every cell task of ``flow``, in flow order.

    ``values`` are the namespace values each cell reads (see
    :func:`nbflow.notebook.run.namespace_reads`); ``namespace`` holds what
    cells with ``--map`` map over, when no task provides it.
    """
    keys: dict[CellTask, CellKey] = {}
    inputs = cell_inputs(flow)
    by_name = {t.name: t for t in inputs}
    memo = _Tokens()
    for task, from_tasks in inputs.items():
        keys[task] = _cell_key(task, from_tasks, values.get(task, {}), keys, by_name,
                               namespace or {}, memo)
    return keys


class _Tokens:
    """The tokens of one plan: a value several cells read is hashed once."""

    def __init__(self) -> None:
        self.modules: dict[str, str] = {}
        # id -> (value, token): the value is held so that its id stays its own.
        self.values: dict[int, tuple[Any, str]] = {}

    def module(self, name: str) -> str:
        token = self.modules.get(name)
        if token is None:
            token = self.modules[name] = _module_token(name)
        return token

    def value(self, value: Any) -> str:
        held = self.values.get(id(value))
        if held is None:
            held = self.values[id(value)] = (value, _token(value))
        return held[1]


def child_key(base: str, element: Any) -> str | None:
    """The key of one child of a mapped cell: the cell's ``child_base`` and its
    element; None if the element cannot be hashed (the child runs, unstored).
    """
    try:
        return _digest(FORMAT, "child", base, _token(element))
    except _Unhashable:
        return None


def _options_digest(task: CellTask) -> str:
    """The options that change what a cell provides, or whether it runs at all:
    ``--map``, ``--after``, ``--trigger``, ``--timeout`` and
    ``--skip-on-upstream-skip``. Not ``--retries``/``--retry-delay`` (a stored
    result is a success, however many tries it took) nor ``--cache-for``
    (checked against the stored result's age when it is looked up).
    """
    return _digest(task.map_var, tuple(task.after), task.trigger_spec, task.timeout,
                   task.skip_on_upstream_skip)


def _cell_key(
    task: CellTask,
    from_tasks: Mapping[str, CellTask],
    values: Mapping[str, Any],
    keys: Mapping[CellTask, CellKey],
    by_name: Mapping[str, CellTask],
    namespace: Mapping[str, Any],
    tokens: _Tokens,
) -> CellKey:
    code, imported = _source_digest(task.source)
    options = _options_digest(task)
    inputs: dict[str, str] = {}
    helpers: list[str] = []
    # The modules it imports: their names are not tracked (``import *``), nor
    # what a module of the notebook's folder does, so each counts by its file.
    modules: dict[str, str] = {}
    parts: dict[str, Any] = {"code": code, "options": options, "inputs": inputs,
                             "upstream": {}, "helpers": helpers, "modules": modules}
    if not getattr(task, "cache", True):
        return CellKey(None, parts, "--no-cache")
    for name in imported:
        modules[name] = tokens.module(name)
    for name, value in sorted(values.items()):
        try:
            inputs[name] = tokens.value(value)
        except _Unhashable as exc:
            return CellKey(None, parts, f"input {name!r} cannot be hashed ({exc}); "
                                        "use --no-cache")
        if isinstance(value, types.FunctionType):
            helpers.append(name)
    upstream: dict[str, str] = parts["upstream"]
    for name, provider in [*from_tasks.items(),
                           *((f"after {n}", by_name[n]) for n in task.after
                             if n in by_name)]:
        key = keys[provider].key
        if key is None:
            return CellKey(None, parts, f"upstream {provider.name!r} is not cached")
        upstream[name] = f"{provider.name}:{key}"
    if task.map_var is None:
        return CellKey(_digest(FORMAT, code, options, sorted(modules.items()),
                               sorted(inputs.items()), sorted(upstream.items())), parts)
    # A cell that maps: each child is keyed by this base and its own element
    # (an element added or changed runs that child alone); the cell's key,
    # which its downstream's keys are made of, also covers what it maps over.
    base = _digest(FORMAT, "mapped", code, options, sorted(modules.items()),
                   sorted(inputs.items()),
                   sorted((n, v) for n, v in upstream.items() if n != task.map_var))
    over = upstream.get(task.map_var)
    if over is None:
        try:
            over = tokens.value(namespace.get(task.map_var))
        except _Unhashable as exc:
            return CellKey(None, parts, f"what it maps over, {task.map_var!r}, cannot "
                                        f"be hashed ({exc}); use --no-cache")
    return CellKey(_digest(base, over), parts, child_base=base)
