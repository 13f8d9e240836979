"""The vocabulary, checks and conversions behind ``ExecutorConfig``; stdlib only.

Executor kinds and cluster modes (each normalised by its one function), and
the checks and conversions the config uses, kept apart so that ``config.py``
reads as the model: its fields, what it builds and what it renders. Every
function here raises
:class:`ExecutorConfigError` with one sentence naming the value and the fix.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Mapping
from typing import Any, Literal, get_args

from nbflow.errors import ExecutorConfigError
from nbflow.executors.base import Executor
from nbflow.executors.dask import DaskExecutor

__all__ = [
    "CLUSTER_MODES",
    "KINDS",
    "TLS_FIELDS",
    "ClusterMode",
    "ExecutorConfigError",
    "ExecutorKind",
    "Option",
    "Section",
    "SecurityPaths",
    "check_cache_location",
    "check_cluster_kwargs",
    "check_report_path",
    "check_security",
    "dask_fields",
    "literal",
    "normalize_cluster_mode",
    "normalize_kind",
    "option",
    "unheld",
]

TLS_FIELDS = ("tls_ca_file", "tls_client_cert", "tls_client_key")

#: Where a field applies, and where the panel shows it: always (``kind``), to one
#: executor kind, to the temporary (and adaptive) or adaptive or existing
#: cluster modes, or to every DaskExecutor (``dask``, ``report``); the notebook
#: cache's location applies to every run (``cache``).
Section = Literal[
    "kind", "local-dask", "dask", "temporary", "adaptive", "existing", "report",
    "cache",
]
ExecutorKind = Literal["local", "local-dask", "dask"]
ClusterMode = Literal["temporary", "adaptive", "existing"]
KINDS: tuple[ExecutorKind, ...] = get_args(ExecutorKind)
CLUSTER_MODES: tuple[ClusterMode, ...] = get_args(ClusterMode)

_KIND_ALIASES: dict[str, ExecutorKind] = {
    "local": "local",
    "localexecutor": "local",
    "local-dask": "local-dask",
    "local_dask": "local-dask",
    "localdask": "local-dask",
    "localdaskexecutor": "local-dask",
    "dask": "dask",
    "daskexecutor": "dask",
    "distributed": "dask",
}
_MODE_ALIASES: dict[str, ClusterMode] = {
    "temporary": "temporary",
    "temp": "temporary",
    "new": "temporary",
    "adaptive": "adaptive",
    "adapt": "adaptive",
    "existing": "existing",
    "address": "existing",
    "connect": "existing",
}


@dataclasses.dataclass(frozen=True)
class Option:
    """What the config, its panel and ``nbflow run`` know of one config field.

    The field's metadata (:func:`option`): adding an option is one field of
    ``ExecutorConfig`` with its ``Option``, plus what it builds.
    """

    #: Where it applies (and is shown); see :data:`Section`.
    section: Section
    #: Its control: a choice of buttons, a count, seconds, a text, JSON, a checkbox.
    control: Literal["choice", "count", "seconds", "text", "json", "flag"]
    #: What an empty control means, shown in it.
    placeholder: str = ""
    #: For a count: the least value, checked where the field applies (None:
    #: the executor checks it), and what leaving it out gives.
    minimum: int | None = None
    default: str = "the default"
    #: The ``flag`` field that turns this one on (it is shown only then).
    switch: str | None = None
    #: Its ``nbflow run`` option, if it has one, its value's name and help.
    flag: str | None = None
    metavar: str | None = None
    help: str = ""


def option(section: Section, control: Any, **more: Any) -> dict[str, Option]:
    """The metadata of an ``ExecutorConfig`` field: ``field(metadata=option(...))``."""
    return {"option": Option(section, control, **more)}


def normalize_kind(name: object) -> ExecutorKind:
    """Return the canonical executor kind for ``name`` or one of its aliases.

    Raises
    ------
    ExecutorConfigError
        If ``name`` names no executor.

    Examples
    --------
    >>> normalize_kind("LocalDaskExecutor")
    'local-dask'

    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key in _KIND_ALIASES:
        return _KIND_ALIASES[key]
    choices = ", ".join(repr(k) for k in KINDS)
    raise ExecutorConfigError(
        f"Unknown executor kind {name!r}; expected one of {choices}."
    )


def normalize_cluster_mode(name: object) -> ClusterMode:
    """Return the canonical Dask cluster mode for ``name`` or one of its aliases.

    Raises
    ------
    ExecutorConfigError
        If ``name`` names no cluster mode.

    Examples
    --------
    >>> normalize_cluster_mode("adapt")
    'adaptive'

    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key in _MODE_ALIASES:
        return _MODE_ALIASES[key]
    choices = ", ".join(repr(m) for m in CLUSTER_MODES)
    raise ExecutorConfigError(
        f"Unknown cluster mode {name!r}; expected one of {choices}."
    )


@dataclasses.dataclass(frozen=True)
class SecurityPaths:
    """TLS file paths, built into ``distributed.Security`` or rendered as code."""

    tls_ca_file: str
    tls_client_cert: str
    tls_client_key: str | None

    def build(self) -> Any:
        """Return the ``distributed.Security`` that reads these files."""
        from distributed import Security

        return Security(**self._kwargs(), require_encryption=True)

    def _kwargs(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def code(self) -> str:
        """Python source that makes the same ``Security``."""
        args = ", ".join(f"{k}={literal(v)}" for k, v in self._kwargs().items())
        return f"Security({args}, require_encryption=True)"


def check_cluster_kwargs(extra: object, sizes: Mapping[str, object]) -> dict[str, Any]:
    """Merge ``n_workers``/``threads_per_worker`` into JSON-able cluster_kwargs."""
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise ExecutorConfigError(
            f"cluster_kwargs must be a dict with string keys, got {extra!r}; "
            'write a JSON object such as {"processes": false}.'
        )
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as exc:
        raise ExecutorConfigError(
            f"cluster_kwargs {extra!r} is not JSON-able ({exc}); use strings, "
            "numbers, booleans, lists and dicts only."
        ) from None
    merged: dict[str, Any] = {}
    for name, value in sizes.items():
        if value is None:
            continue
        if name in extra:
            raise ExecutorConfigError(
                f"{name} is given both as {value!r} and in cluster_kwargs as "
                f"{extra[name]!r}; remove it from cluster_kwargs."
            )
        merged[name] = value
    return {**merged, **extra}


def check_report_path(path: str | None) -> str:
    """Return ``path`` if a performance report can be written there."""
    if path is None:
        raise ExecutorConfigError(
            "performance_report is on but performance_report_path is empty; "
            "give a path such as 'report.html' or turn the report off."
        )
    if not isinstance(path, str):
        raise ExecutorConfigError(
            f"performance_report_path must be a path string, got {path!r}; "
            "give a path such as 'report.html'."
        )
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ExecutorConfigError(
            f"The folder of performance_report_path {path!r} does not exist; "
            "create it or choose another path."
        )
    return path


def check_cache_location(location: str) -> str:
    """The absolute folder of a cache location (a path or ``file://`` URL) if
    the cache can be written there (it, or the nearest folder above it that
    exists, is a folder this process may write in).

    Examples
    --------
    >>> check_cache_location("file:///tmp/nbflow-cache")
    '/tmp/nbflow-cache'

    """
    path = location[len("file://"):] if location.startswith("file://") else location
    why = None
    if "://" in path:
        why = ("the cache is a folder on a filesystem the kernel and every worker "
               "mount, not an object store")
    else:
        path = os.path.abspath(os.path.expanduser(path))
        found = path
        while not os.path.exists(found):
            found = os.path.dirname(found)
        if not os.path.isdir(found):
            why = f"{found!r} is a file"
        elif not os.access(found, os.W_OK | os.X_OK):
            why = f"{found!r} is not writable"
    if why is not None:
        raise ExecutorConfigError(
            f"The cache location {location!r} cannot be written ({why}); give a "
            "folder the kernel and every worker can write, or leave it empty for "
            "the default."
        )
    return path


def check_security(address: str, given: dict[str, str | None]) -> SecurityPaths | None:
    """The TLS files for ``address`` (a validated address), or None without TLS."""
    is_tls = address.startswith("tls://")
    if not any(given.values()):
        if is_tls:
            raise ExecutorConfigError(
                f"address {address!r} is a TLS scheduler; give tls_ca_file, "
                "tls_client_cert and tls_client_key."
            )
        return None
    for name in ("tls_client_cert", "tls_ca_file"):
        if not given[name]:
            others = " and ".join(n for n, v in given.items() if v)
            raise ExecutorConfigError(
                f"{others} given without {name}; give the path of {name} too, "
                "or clear the TLS settings."
            )
    for name, path in given.items():
        if path is not None and not os.path.isfile(path):
            raise ExecutorConfigError(
                f"{name} {path!r} is not a file; give the path of an existing PEM file."
            )
    if not is_tls:
        raise ExecutorConfigError(
            f"TLS files are set but address {address!r} is not tls://; write the "
            "address as 'tls://HOST:PORT' or clear the TLS settings."
        )
    return SecurityPaths(**given)  # type: ignore[arg-type]


def unheld(executor: Executor, what: str) -> ExecutorConfigError:
    """The error for an executor setting a config cannot hold."""
    return ExecutorConfigError(
        f"{executor!r} has {what}, which an ExecutorConfig cannot hold; set "
        "flow.executor in Python or choose the settings anew."
    )


def dask_fields(executor: DaskExecutor) -> dict[str, Any]:
    """The config fields of a DaskExecutor; raise for what they cannot hold."""
    fields: dict[str, Any] = {
        "kind": "dask", "debug": executor.debug,
        "worker_timeout": executor.worker_timeout,
    }
    if executor.performance_report_path:
        fields.update(
            performance_report=True,
            performance_report_path=executor.performance_report_path,
        )
    fields.update(_tls_fields(executor))
    if executor.address is not None:
        return {**fields, "cluster": "existing", "address": executor.address}
    cls = executor._cluster_class  # as given: an import path stays one
    if cls is not None and not isinstance(cls, str):
        path = f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', '')}"
        if _import_quietly(path) is not cls:
            raise unheld(executor, f"cluster_class {cls!r} without an import path")
        cls = path
    extra = dict(executor.cluster_kwargs)
    fields.update(
        cluster_class=cls,
        n_workers=extra.pop("n_workers", None),
        threads_per_worker=extra.pop("threads_per_worker", None),
        cluster_kwargs=extra,
    )
    adapt = executor.adapt_kwargs
    if adapt:
        if set(adapt) - {"minimum", "maximum"}:
            raise unheld(executor, f"adapt_kwargs {adapt!r} beyond minimum/maximum")
        fields.update(
            cluster="adaptive",
            minimum=adapt.get("minimum", 0),
            maximum=adapt.get("maximum"),
        )
    return fields


def _tls_fields(executor: DaskExecutor) -> dict[str, Any]:
    client_kwargs = executor.client_kwargs
    if not client_kwargs:
        return {}
    security = client_kwargs.get("security")
    if set(client_kwargs) != {"security"} or security is None:
        raise unheld(executor, f"client_kwargs {client_kwargs!r} beyond security")
    paths = {name: getattr(security, name, None) for name in TLS_FIELDS}
    if any("\n" in (p or "") for p in paths.values()):
        raise unheld(executor, "TLS certificates given as contents, not paths,")
    return paths


def _import_quietly(path: str) -> Any:
    """The object at an import path, or None."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def literal(value: Any) -> str:
    """Python source for a JSON-able value (double-quoted strings)."""
    if isinstance(value, SecurityPaths):
        return value.code()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        items = ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(f"{literal(v)}, " for v in value).rstrip(" ") + ")"
    return repr(value)
