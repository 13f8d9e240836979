"""What a flow needs on a Dask cluster: the user's own code, and the packages.

Before a run's first task is submitted, :func:`flow_needs` reads what the
tasks refer to (the globals and imports of task functions, the imports and
namespace values of cells) and splits it into

- the user's own modules (found on the client but not installed as a
  distribution: ``mylib.py`` next to the notebook, a package in the project
  folder), shipped as a :class:`CodeBundle`: a scheduler plugin and a worker
  plugin write their source into a folder on ``sys.path`` there (the scheduler
  unpickles the task graph, the workers run it; workers that join later get
  the worker plugin too), and forget the modules of the older bundle of the
  same origin (one kernel or script process) so an edited module is imported
  afresh, while other people's bundles on a shared cluster stay;
- installed distributions, checked against the workers and the scheduler in
  one round trip each (:func:`check_cluster`): missing ones, major/minor
  versions that differ from the client's, and a different Python minor version.
  Workers that join after that check (adaptive scaling, a late ``dask
  worker``) check themselves when they join: the same worker plugin carries
  the run's :class:`Requirements`, its ``setup`` runs the same probe and
  comparison there (before the worker takes any task), and a task that uses
  what the worker lacks fails there with the same one line
  (:func:`refusal`, asked by the run's task channel as each task starts);
  the flow's other tasks run there. Why not re-check from the client when a
  worker appears: tasks may reach the new worker before the client hears of
  it, and refusing a worker for all flows on a shared cluster is not one
  run's call.

Why a plugin and not ``cloudpickle.register_pickle_by_value``: distributed
pickles a task graph with the standard pickler first, which pickles a function
nested in the task's arguments (here: the task's function in its spec) by
reference, whatever cloudpickle was told (tried: the scheduler still fails with
"Error during deserialization of the task graph"); and a cell that runs
``import mylib`` needs the module importable on the worker anyway. Why not
``Client.upload_file``: one file per call (a package must be zipped), and each
call adds a plugin under a new uuid name that is never replaced, so a notebook
re-run after each edit piles them up for every worker that joins later. The
plugins here are sent once per run (two round trips, about 4 ms with two
workers; workers skip a bundle they have) and taken off the scheduler when the
run's client leaves, so a shared scheduler keeps none of them.

``distributed`` is imported by the plugin classes: import this module only when
a cluster is used.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import dis
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import socket
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from nbflow.errors import ClusterEnvironmentError

__all__ = [
    "ClusterEnvironment",
    "CodeBundle",
    "FlowNeeds",
    "Requirements",
    "check_cluster",
    "data_file_hint",
    "flow_needs",
    "refusal",
    "ship_code",
]

#: Plugin names on the scheduler and the workers start so; one per origin.
_PLUGIN_PREFIX = "nbflow-user-code"
#: Never shipped: the engine itself must be installed where tasks run.
_NEVER_SHIPPED = frozenset({"nbflow", "__main__", "__mp_main__"})
#: What every task on a cluster uses: the engine, and what moves the task graph
#: (distributed's own version check says the same, in a wall of text).
_EVERY_TASK = ("nbflow", "cloudpickle", "dask", "distributed")
#: Larger user packages are not shipped (a project folder, not a module).
_MAX_BUNDLE_BYTES = 20 * 2**20


# -- what the flow uses ---------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _major_minor(version: str) -> str:
    match = re.match(r"(\d+)(?:\.(\d+))?", version)
    if match is None:
        return version
    return f"{match.group(1)}.{match.group(2) or 0}"


def _label(name: str, fn: Any) -> str:
    """``cell 'clean'`` for a notebook cell, ``task 'load'`` otherwise."""
    return f"cell {name!r}" if isinstance(getattr(fn, "source", None), str) else (
        f"task {name!r}")


def _value_module(value: Any) -> str | None:
    if isinstance(value, types.ModuleType):
        return value.__name__
    module = getattr(value, "__module__", None)
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)) and (
        isinstance(module, str)
    ):
        return module
    module = type(value).__module__
    return module if isinstance(module, str) else None


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _function_modules(fn: Any) -> dict[str, bool]:
    """Modules a Python function refers to (its own, its globals', its
    closure's, its imports), each with whether unpickling the function already
    imports it (the imports in its body run only when it is called).
    """
    fn = getattr(fn, "__func__", fn)
    fn = _unwrap(fn)
    found: dict[str, bool] = {}
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: its class, and its __call__
        found[type(fn).__module__] = True
        call = vars(type(fn)).get("__call__")
        if isinstance(call, types.FunctionType):
            for called, is_loaded in _function_modules(call).items():
                found[called] = found.get(called, False) or is_loaded
        return found
    own = getattr(fn, "__module__", None)
    if isinstance(own, str):
        found[own] = True
    module: str | None
    fn_globals = getattr(fn, "__globals__", {})
    package = fn_globals.get("__package__") or ""
    for inner in _codes(code):
        for name in inner.co_names:
            if name in fn_globals:
                module = _value_module(fn_globals[name])
                if module:
                    found[module] = True
        previous: list[Any] = []
        for ins in dis.get_instructions(inner):
            if ins.opname == "IMPORT_NAME":
                level = previous[-2] if len(previous) >= 2 else 0
                found.setdefault(_resolve(str(ins.argval), level, package), False)
            previous.append(ins.argval if ins.opname == "LOAD_CONST" else None)
    for cell in getattr(fn, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            module = _value_module(cell.cell_contents)
            if module:
                found[module] = True
    return found


def _unwrap(fn: Any) -> Any:
    """``fn`` without ``functools.wraps`` layers."""
    seen = 0
    while hasattr(fn, "__wrapped__") and seen < 100:
        fn, seen = fn.__wrapped__, seen + 1
    return fn


def _resolve(name: str, level: Any, package: str) -> str:
    if isinstance(level, int) and level > 0:
        with contextlib.suppress(ImportError, ValueError):
            return importlib.util.resolve_name("." * level + name, package)
        return ""
    return name


def _source_imports(source: str, package: str = "", *, top_level: bool = False
                    ) -> set[str]:
    """Modules imported by Python source, relative ones resolved: anywhere in
    it, or (``top_level``) by the statements that run when it is imported,
    leaving out those under ``if``/``try`` (optional or type-checking imports).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found: set[str] = set()
    nodes = tree.body if top_level else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            if base:
                found.add(base)
                # `from pkg import sub` may import the submodule pkg.sub.
                found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return found


def _task_modules(fn: Any) -> dict[str, bool]:
    """See :func:`_function_modules`; a cell's imports run when it runs, the
    values it reads from the namespace travel with it (unpickled on arrival).
    """
    source = getattr(fn, "source", None)
    if isinstance(source, str):
        found = dict.fromkeys(_source_imports(source), False)
        for value in (getattr(fn, "namespace", None) or {}).values():
            module = _value_module(value)
            if module:
                found[module] = True
        return found
    return _function_modules(fn)


@dataclasses.dataclass(frozen=True)
class CodeBundle:
    """The source files of the user's own modules, to ship to a cluster."""

    #: ``(path relative to a sys.path folder, content)``, sorted.
    files: tuple[tuple[str, bytes], ...]
    #: Top-level names of the modules and packages in it.
    modules: tuple[str, ...]
    #: Where the bundle was made: a worker in this very process installs nothing.
    origin: tuple[str, int] = dataclasses.field(
        default_factory=lambda: (socket.gethostname(), os.getpid()))

    @property
    def digest(self) -> str:
        """A hash of the files (not of the origin)."""
        h = hashlib.sha256()
        for path, data in self.files:
            h.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()

    @property
    def nbytes(self) -> int:
        """The size of the files."""
        return sum(len(data) for _, data in self.files)


@dataclasses.dataclass(frozen=True)
class FlowNeeds:
    """What a flow's tasks need where they run."""

    #: Distribution (canonical name) -> (its name, the client's version, users).
    distributions: Mapping[str, tuple[str, str, tuple[str, ...]]]
    bundle: CodeBundle
    #: The distributions that unpickling the tasks imports (the scheduler
    #: unpickles the task graph: it needs these, not the others).
    unpickled: frozenset[str] = frozenset()
    #: Task name -> how messages name it (``cell 'clean'``, ``task 'load'``).
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _user_module_files(top: str) -> list[tuple[str, Path]] | None:
    """The .py files of a top-level user module or package, or None if ``top``
    is not a plain source module on this machine.
    """
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        files: list[tuple[str, Path]] = []
        for location in spec.submodule_search_locations:
            root = Path(location)
            if not (root / "__init__.py").is_file():
                continue  # a namespace package: not one folder of the user's
            for path in sorted(root.rglob("*.py")):
                parts = path.relative_to(root).parts
                if any(p.startswith(".") or p == "__pycache__" for p in parts):
                    continue
                files.append((str(Path(top, *parts)), path))
        return files or None
    origin = spec.origin
    if origin and origin.endswith(".py") and os.path.isfile(origin):
        return [(f"{top}.py", Path(origin))]
    return None


_packages: dict[str, Any] = {"key": None, "value": {}}


def _packages_distributions() -> Mapping[str, list[str]]:
    """``importlib.metadata.packages_distributions()`` (120 ms on 150
    distributions), read again only when a folder on ``sys.path`` changed
    (installing or removing a distribution changes its folder's mtime).
    """
    key = []
    for entry in sys.path:
        with contextlib.suppress(OSError):
            key.append((entry, os.stat(entry or ".").st_mtime_ns))
    if _packages["key"] != key:
        _packages.update(key=key, value=importlib.metadata.packages_distributions())
    value: Mapping[str, list[str]] = _packages["value"]
    return value


def flow_needs(functions: Mapping[str, Callable[..., Any]]) -> FlowNeeds:
    """Find what the tasks ``functions`` (name -> function) need on a cluster.

    Parameters
    ----------
    functions : Mapping
        Each task's name and the callable it runs (a notebook cell's callable
        carries ``source`` and ``namespace``).

    Returns
    -------
    FlowNeeds
        The distributions they use (with the tasks that use them) and the
        user's own modules, as a bundle of files.

    Examples
    --------
    >>> import json
    >>> needs = flow_needs({"dump": json.dumps})
    >>> sorted(needs.distributions), needs.bundle.files  # what every task uses
    (['cloudpickle', 'dask', 'distributed', 'nbflow'], ())

    """
    installed = _packages_distributions()
    stdlib = sys.stdlib_module_names | set(sys.builtin_module_names)
    users: dict[str, dict[str, None]] = {}  # top-level name -> task labels
    loaded: set[str] = {"nbflow"}  # top-level names unpickling imports
    modules_of: dict[int, dict[str, bool]] = {}
    unpickled: set[str] = set()
    task_labels: dict[str, str] = {}
    for name, fn in functions.items():
        label = task_labels[name] = _label(name, fn)
        if id(fn) not in modules_of:  # many tasks may share one function
            modules_of[id(fn)] = _task_modules(fn)
        for module, is_loaded in modules_of[id(fn)].items():
            top = module.partition(".")[0]
            if top and top not in stdlib:
                users.setdefault(top, {})
                users[top][label] = None
                if is_loaded:
                    loaded.add(top)
    dists: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    files: dict[str, bytes] = {}
    shipped: list[str] = []
    todo = list(users)
    seen: set[str] = set()
    while todo:
        top = todo.pop()
        if top in seen or top in stdlib:
            continue
        seen.add(top)
        labels = tuple(users.get(top, {}))
        if top in installed:
            for dist in installed[top]:
                key = _canonical(dist)
                with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                    old = dists.get(key, (dist, importlib.metadata.version(dist), ()))
                    merged = tuple(dict.fromkeys((*old[2], *labels)))
                    dists[key] = (old[0], old[1], merged)
                    if top in loaded:
                        unpickled.add(key)
            continue
        if top in _NEVER_SHIPPED:
            continue
        module_files = _user_module_files(top)
        if module_files is None:
            continue
        shipped.append(top)
        for relative, path in module_files:
            data = path.read_bytes()
            files[relative] = data
            package = top if relative.endswith("__init__.py") else ""
            if "/" in relative:
                package = ".".join(Path(relative).parent.parts)
            text = data.decode("utf-8", "replace")
            # Its own modules travel along wherever it imports them; what it
            # imports when imported is used by the tasks that use it.
            for imported in _source_imports(text, package):
                sub = imported.partition(".")[0]
                if sub not in seen and sub not in installed:
                    todo.append(sub)
            for imported in _source_imports(text, package, top_level=True):
                sub = imported.partition(".")[0]
                if top in loaded:
                    loaded.add(sub)
                users.setdefault(sub, {})
                for label in labels:
                    users[sub][label] = None
                if sub not in seen:
                    todo.append(sub)
    for always in _EVERY_TASK:
        if always not in dists:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                dists[always] = (always, importlib.metadata.version(always), ())
        unpickled.add(always)
    bundle = CodeBundle(tuple(sorted(files.items())), tuple(sorted(shipped)))
    return FlowNeeds(dists, bundle, frozenset(unpickled), task_labels)


# -- asking the cluster ---------------------------------------------------------------


def _probe(names: Iterable[str]) -> str:
    """An expression a worker evaluates (``eval`` needs no nbflow there): its
    Python version and the versions of the wanted distributions it has.
    """
    wanted = sorted(set(names))
    return (
        "(tuple(__import__('sys').version_info[:2]), {n: v for n, v in ((n, next(("
        "d.version for d in __import__('importlib.metadata').metadata.distributions("
        f"name=n)), None)) for n in {wanted!r}) if v is not None}})"
    )


@dataclasses.dataclass(frozen=True)
class ClusterEnvironment:
    """The workers' Python and the problems with the packages a flow uses."""

    address: str
    workers: int
    python: str
    #: One short text each, e.g. ``"missing on 1 worker: pandas (cell 'clean')"``.
    problems: tuple[str, ...]
    #: The same problems, each naming the workers and versions in full.
    details: tuple[str, ...]

    def describe(self) -> str:
        """One line, e.g. ``"2 workers, Python 3.11, missing on 1 worker: pandas
        (cell 'clean')"``.
        """
        plural = "" if self.workers == 1 else "s"
        text = f"{self.workers} worker{plural}, Python {self.python}"
        return "; ".join([text, *self.problems]) if self.problems else text

    def error(self) -> ClusterEnvironmentError:
        """The one-line refusal to run, naming every problem."""
        return ClusterEnvironmentError(
            f"The workers of {self.address!r} cannot run this flow: "
            f"{'; '.join(self.details)}; install the same versions where the "
            "workers run, or pass DaskExecutor(check_environment=False) "
            "(nbflow run --no-check-environment) to run anyway."
        )


def _some(items: list[str], most: int = 3) -> str:
    shown = ", ".join(items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"


def check_cluster(
    client: Any, needs: FlowNeeds | None, address: str | None = None
) -> ClusterEnvironment:
    """Ask every worker (one ``client.run``) and the scheduler for their Python
    and the versions of the distributions ``needs`` lists; compare them with
    this process.

    Parameters
    ----------
    client : distributed.Client
    needs : FlowNeeds, optional
        What the flow uses; None checks the Python version only.
    address : str, optional
        The scheduler, for messages.

    Returns
    -------
    ClusterEnvironment
        ``problems`` is empty when the workers can run the flow.

    Examples
    --------
    >>> check_cluster(client, flow_needs(functions)).describe()  # doctest: +SKIP
    '2 workers, Python 3.11'

    """
    dists = dict(needs.distributions) if needs else {}
    probe = _probe(dists)
    answers: dict[str, Any] = client.run(eval, probe)
    workers = len(answers)
    # The scheduler unpickles the task graph: it needs the packages too.
    answers[_SCHEDULER] = client.run_on_scheduler(eval, probe)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    unpickled = needs.unpickled if needs is not None else None
    found = _compare(answers, dists, unpickled, here)
    pythons = {".".join(map(str, python)) for where, (python, _) in answers.items()
               if where != _SCHEDULER}
    return ClusterEnvironment(
        address or "the cluster", workers, ", ".join(sorted(pythons)) or here,
        tuple(p.short for p in found), tuple(p.detail for p in found))


@dataclasses.dataclass(frozen=True)
class _Problem:
    """One thing a place lacks: in short, in full, and the labels of the tasks
    it stops (None: every task).
    """

    short: str
    detail: str
    labels: tuple[str, ...] | None


def _compare(
    answers: Mapping[str, Any],
    dists: Mapping[str, tuple[str, str, tuple[str, ...]]],
    unpickled: frozenset[str] | None,
    here: str,
) -> list[_Problem]:
    """What the places in ``answers`` (where -> the probe's answer there) lack
    of ``dists`` (see :class:`FlowNeeds`), or have in another major/minor
    version; a Python minor version other than ``here``. The scheduler is
    asked for the ``unpickled`` distributions only (None: all).
    """
    found: list[_Problem] = []
    pythons: dict[str, list[str]] = {}
    for where, (python, _) in answers.items():
        pythons.setdefault(".".join(map(str, python)), []).append(where)
    for py, on_py in sorted(pythons.items()):
        if py != here:
            found.append(_Problem(f"Python {py} on {_count(on_py)}",
                                  f"Python {py} on {_some(on_py)} ({here} here)", None))
    for key, (name, mine, labels) in sorted(dists.items()):
        used = f" ({_some(list(labels))})" if labels else ""
        used_by = f", used by {_some(list(labels))}" if labels else (
            ", used by every task")
        theirs: dict[str | None, list[str]] = {}
        for where, (_, versions) in answers.items():
            if where == _SCHEDULER and unpickled is not None and key not in unpickled:
                continue
            have = {_canonical(n): v for n, v in versions.items()}
            theirs.setdefault(have.get(key), []).append(where)
        stops = labels or None
        for version, on in theirs.items():
            if version is None:
                found.append(_Problem(
                    f"missing on {_count(on)}: {name}{used}",
                    f"{name!r} ({mine} here) is missing on {_some(on)}{used_by}", stops))
            elif _major_minor(version) != _major_minor(mine):
                found.append(_Problem(
                    f"{name} {version} on {_count(on)} ({mine} here){used}",
                    f"{name!r} is {version} on {_some(on)} but {mine} here{used_by}",
                    stops))
    return found


_SCHEDULER = "the scheduler"


def _count(where: list[str]) -> str:
    """``"2 workers"``, ``"1 worker and the scheduler"``, ``"the scheduler"``."""
    k = sum(w != _SCHEDULER for w in where)
    parts = [f"{k} worker{'s' * (k != 1)}"] if k else []
    if _SCHEDULER in where:
        parts.append(_SCHEDULER)
    return " and ".join(parts)


# -- shipping the user's code ---------------------------------------------------------

#: In each process that installs bundles, per origin (a kernel, a script): the
#: digest, folder and top-level modules of its current bundle.
_current: dict[tuple[str, int], tuple[str, str, tuple[str, ...]]] = {}


def _install(bundle: CodeBundle, where: str | None) -> None:
    """Make the bundle's modules importable here, forgetting older versions;
    the files go into ``where`` (the worker's or scheduler's local directory,
    which Dask removes when it closes), else the temporary directory.
    """
    if bundle.origin == (socket.gethostname(), os.getpid()):
        return  # an in-process worker: the client's own modules are here
    digest = bundle.digest
    old_digest, old_path, old_modules = _current.get(bundle.origin, ("", "", ()))
    if old_digest == digest:
        return
    base = Path(where or tempfile.gettempdir())
    folder = base / f"nbflow-code-{digest[:20]}"
    if not folder.is_dir():
        staging = Path(tempfile.mkdtemp(prefix="nbflow-code-", dir=base))
        for relative, data in bundle.files:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        try:
            staging.rename(folder)
        except OSError:  # another process on this machine was first
            if not folder.is_dir():
                raise
    if old_path in sys.path:
        sys.path.remove(old_path)
    sys.path.insert(0, str(folder))
    # Forget every module of the origin's old and new bundle: the next import
    # (or unpickling) reads the new source. All of them, since one may hold
    # names imported from another. Other origins' bundles (other people on a
    # shared cluster) stay, unless they use the same module names: one
    # process holds one module of a name.
    tops = set(old_modules) | set(bundle.modules)
    for name in list(sys.modules):
        if name.partition(".")[0] in tops:
            del sys.modules[name]
    importlib.invalidate_caches()
    _current[bundle.origin] = (digest, str(folder), bundle.modules)


def _plugin_name(bundle: CodeBundle) -> str:
    """One plugin per origin: a re-run replaces its own, not another kernel's."""
    host, pid = bundle.origin
    return f"{_PLUGIN_PREFIX}-{host}-{pid}"


@dataclasses.dataclass(frozen=True)
class Requirements:
    """What a run checked the workers for, to check workers that join later
    (adaptive scaling, a late ``dask worker``) the same way: see
    :func:`refusal`.
    """

    #: The scheduler, for messages.
    address: str
    #: The client's Python, ``"3.11"``.
    python: str
    distributions: Mapping[str, tuple[str, str, tuple[str, ...]]]
    #: Task name -> its label (see :class:`FlowNeeds`).
    labels: Mapping[str, str]

    @classmethod
    def of(cls, needs: FlowNeeds, address: str) -> Requirements:
        """The requirements of a flow with ``needs`` on the cluster ``address``."""
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        return cls(address, here, needs.distributions, needs.labels)

    @property
    def token(self) -> str:
        """Names these requirements on a worker (the runs' channels carry it)."""
        text = repr((self.address, self.python, sorted(self.distributions.items()),
                     sorted(self.labels.items())))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


#: On a worker: requirements token -> (them, the problems of this worker).
_refusals: dict[str, tuple[Requirements, list[_Problem]]] = {}
#: On a worker: plugin name (one per origin) -> the token it judged last.
_judged: dict[str, str] = {}


def _judge(requirements: Requirements, where: str, name: str) -> None:
    """Check this worker against ``requirements``, as :func:`check_cluster`
    checks the workers present when a run starts, and keep what it lacks for
    :func:`refusal`.
    """
    answer = eval(_probe(requirements.distributions))  # the same probe, here
    problems = _compare({where: answer}, requirements.distributions, None,
                        requirements.python)
    token = requirements.token
    _refusals[token] = (requirements, problems)
    old = _judged.get(name)
    if old is not None and old != token:  # that origin's earlier run
        _refusals.pop(old, None)
    _judged[name] = token


def refusal(token: str, task: str) -> str | None:
    """Why ``task`` of the run whose requirements have ``token`` cannot run
    on this worker (one line, as the check before the run says it), or None.

    Parameters
    ----------
    token : str
        :attr:`Requirements.token`.
    task : str
        The task's name.

    Returns
    -------
    str or None

    Examples
    --------
    >>> refusal("no-such-run", "load") is None
    True

    """
    judged = _refusals.get(token)
    if judged is None or not judged[1]:
        return None
    requirements, problems = judged
    label = requirements.labels.get(task, f"task {task!r}")
    mine = [p for p in problems if p.labels is None or label in p.labels]
    if not mine:
        return None
    return str(ClusterEnvironment(
        requirements.address, 1, "", tuple(p.short for p in mine),
        tuple(p.detail for p in mine)).error())


class _CodeOnWorkers(WorkerPlugin):
    """Installs a :class:`CodeBundle` on each worker, joining ones included,
    and checks each against the run's :class:`Requirements`.
    """

    def __init__(self, bundle: CodeBundle, requirements: Requirements | None = None
                 ) -> None:
        self.bundle = bundle
        self.requirements = requirements
        self.name = _plugin_name(bundle)

    def setup(self, worker: Any) -> None:
        """Install the bundle; check the worker."""
        if self.bundle.files:
            _install(self.bundle, getattr(worker, "local_directory", None))
        if self.requirements is not None and self.bundle.origin != (
                socket.gethostname(), os.getpid()):  # not an in-process worker
            _judge(self.requirements, str(worker.address), self.name)


class _CodeOnScheduler(SchedulerPlugin):
    """Installs a :class:`CodeBundle` on the scheduler (it unpickles graphs),
    and takes both plugins off when the client that sent them leaves.
    """

    def __init__(self, bundle: CodeBundle, client: str) -> None:
        self.bundle = bundle
        self.client = client
        self.name = _plugin_name(bundle)

    async def start(self, scheduler: Any) -> None:
        """Install the bundle."""
        if self.bundle.files:
            _install(self.bundle, getattr(scheduler, "local_directory", None))

    def remove_client(self, scheduler: Any, client: str) -> None:
        """The run that sent the bundle is over (or its kernel is gone):
        workers that join from now on need it no more, and a shared scheduler
        keeps no plugin per kernel that ever connected. Workers keep what they
        imported; the next run sends its bundle again.
        """
        if client != self.client or scheduler.plugins.get(self.name) is not self:
            return  # another client, or the next run of this origin sent its own
        scheduler.plugins.pop(self.name, None)
        scheduler.worker_plugins.pop(self.name, None)


#: Client id -> digest of the bundle it sent, in this process.
_shipped: dict[str, str] = {}


def ship_code(client: Any, bundle: CodeBundle,
              requirements: Requirements | None = None) -> bool:
    """Send ``bundle`` to the scheduler and every worker, now and joining ones
    while ``client`` is connected, and have each worker check itself against
    ``requirements``; nothing if this client sent them already. Returns
    whether they were sent.

    Parameters
    ----------
    client : distributed.Client
    bundle : CodeBundle
    requirements : Requirements, optional
        What a worker that joins later is checked for (see :func:`refusal`).

    Returns
    -------
    bool

    Examples
    --------
    >>> ship_code(client, flow_needs(functions).bundle)  # doctest: +SKIP
    True

    """
    if not bundle.files and requirements is None:
        return False
    digest = bundle.digest + (requirements.token if requirements else "")
    if _shipped.get(client.id) == digest:
        return False
    if bundle.nbytes > _MAX_BUNDLE_BYTES:
        raise ClusterEnvironmentError(
            f"The modules {list(bundle.modules)!r} to send to the workers are "
            f"{bundle.nbytes / 2**20:.0f} MiB of source; install them on the "
            "workers as a package instead (pip install -e on a shared folder)."
        )
    name = _plugin_name(bundle)
    client.register_plugin(_CodeOnScheduler(bundle, client.id), name=name)
    client.register_plugin(_CodeOnWorkers(bundle, requirements), name=name)
    _shipped[client.id] = digest
    return True


# -- a task that failed on a data file --------------------------------------------

_MISSING_FILE = re.compile(r"FileNotFoundError: \[Errno 2\] No such file or directory: '([^']+)'")


def data_file_hint(message: str | None) -> str | None:
    """A hint for a task message that says a relative path was not found on a
    worker while it exists here: data files do not travel with the code.
    """
    if not message:
        return None
    match = _MISSING_FILE.search(message)
    if match is None:
        return None
    path: str = match.group(1)
    if os.path.isabs(path) or not os.path.exists(path):
        return None
    return (
        f"{path!r} exists here but not where the task ran: data files do not "
        "travel to the workers; put them on storage every worker reads (a shared "
        "folder, s3://...) and use that path, or read them here and pass the data."
    )
