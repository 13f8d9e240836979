"""Checking ``DaskExecutor``'s options, at construction and in the panel."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from typing import Any

from nbflow.errors import DaskExecutorError

__all__ = [
    "ADAPT_KEYS",
    "DEFAULT_WORKER_TIMEOUT",
    "DaskExecutorError",
    "check_adapt",
    "check_cluster_kwargs",
    "check_options",
    "check_report_file",
    "check_worker_timeout",
    "import_path",
    "read_seconds",
    "validate_address",
]

#: Keywords ``Cluster.adapt`` takes.
ADAPT_KEYS = frozenset({
    "minimum", "maximum", "minimum_cores", "maximum_cores", "minimum_memory",
    "maximum_memory", "interval", "wait_count", "target_duration", "worker_key",
})
#: Seconds ``DaskExecutor`` waits for a worker at a scheduler that has none.
DEFAULT_WORKER_TIMEOUT = 60.0
_ADDRESS = re.compile(
    r"^(?:(tcp|tls|inproc|ucx|ws|wss)://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+)(?::(\d{1,5}))?/?$"
)
#: An in-process scheduler's address, ``inproc://HOST/PID/N``.
_INPROC = re.compile(r"^inproc://[A-Za-z0-9_.\-:\[\]]+/\d+/\d+$")


def validate_address(address: object) -> str:
    """Return ``address`` if it is a Dask scheduler address, else raise.

    Examples
    --------
    >>> validate_address("tcp://127.0.0.1:8786")
    'tcp://127.0.0.1:8786'

    """
    if isinstance(address, str) and _INPROC.match(address):
        return address
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    if match is None or (match.group(1) in (None, "tcp", "tls") and not match.group(3)):
        raise DaskExecutorError(
            f"Malformed scheduler address {address!r}; expected 'tcp://HOST:PORT' "
            "(or tls://HOST:PORT), as printed by `dask scheduler`."
        )
    return address  # type: ignore[return-value]


def import_path(path: str) -> Any:
    """The object a ``cluster_class`` import path names."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DaskExecutorError(
            f"Could not import cluster_class {path!r} ({exc}); give a full import "
            "path such as 'distributed.LocalCluster' and install its package."
        ) from None


def check_report_file(path: object) -> str:
    """``path`` as a string if a performance report can be written there, else
    raise: not a folder, in a folder that exists and can be written.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise DaskExecutorError(
            f"performance_report_path must be a path, got {path!r}; give a path "
            "such as 'report.html'."
        )
    text = os.fspath(path)
    if not isinstance(text, str):
        raise DaskExecutorError(
            f"performance_report_path must be a text path, got {path!r}."
        )
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        problem = "is a folder; give a file path in it, such as 'report.html'"
    elif not os.path.isdir(folder):
        problem = f"is in a folder that does not exist ({folder!r}); create it first"
    elif not os.access(folder, os.W_OK | os.X_OK) or (
        os.path.exists(text) and not os.access(text, os.W_OK)
    ):
        problem = "cannot be written (no permission); choose a path you can write"
    else:
        return text
    raise DaskExecutorError(f"performance_report_path {text!r} {problem}.")


def check_worker_timeout(value: object, name: str = "worker_timeout") -> float | None:
    """``value`` as seconds (a finite number >= 0) or None, else raise.

    The one check of a worker timeout: the executor, its config (so the panel)
    and ``nbflow run --worker-timeout`` (``name``) all say it with this message.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 <= value < float("inf")
    ):
        raise DaskExecutorError(
            f"{name} must be a number of seconds >= 0, or None not to wait, "
            f"got {value!r}."
        )
    return float(value)


def read_seconds(text: str) -> object:
    """Typed seconds (a panel's box, a command-line value) as a number, None for
    "none" or nothing, else the text as given (for the check to quote).
    """
    text = text.strip()
    if not text or text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def check_adapt(adapt_kwargs: dict[str, Any]) -> None:
    """Raise if ``adapt_kwargs`` has unknown keys or minimum above maximum."""
    unknown = sorted(set(adapt_kwargs) - ADAPT_KEYS)
    if unknown:
        raise DaskExecutorError(
            f"Unknown adapt_kwargs {unknown!r}; expected some of "
            f"{sorted(ADAPT_KEYS)!r}."
        )
    low, high = adapt_kwargs.get("minimum", 0), adapt_kwargs.get("maximum")
    for key, value in (("minimum", low), ("maximum", high)):
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise DaskExecutorError(
                f"adapt_kwargs[{key!r}] must be a number >= 0, got {value!r}."
            )
    if high is not None and low > high:
        raise DaskExecutorError(
            f"adapt_kwargs minimum {low!r} is above maximum {high!r}; "
            "make minimum <= maximum."
        )


#: The types of the ``LocalCluster`` keywords users give most; a wrong one fails
#: deep inside a nanny otherwise.
_KWARG_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "n_workers": ((int,), "a whole number >= 0"),
    "threads_per_worker": ((int,), "a whole number >= 1"),
    "nthreads": ((int,), "a whole number >= 1"),
    "processes": ((bool,), "True or False"),
    "memory_limit": ((str, int, float), "bytes or a string such as '2GiB'"),
    "host": ((str,), "a host name or IP address"),
    "ip": ((str,), "a host name or IP address"),
    "protocol": ((str,), "a protocol such as 'tcp://'"),
    "dashboard_address": ((str,), "an address such as '127.0.0.1:8787'"),
    "worker_dashboard_address": ((str,), "an address such as '127.0.0.1:0'"),
    "scheduler_port": ((int,), "a port number"),
    "silence_logs": ((int, bool), "a logging level"),
    "scheduler_kwargs": ((dict,), "a dict"),
    "resources": ((dict,), "a dict"),
    "env": ((dict,), "a dict"),
}
#: Parameters of distributed's servers that the cluster itself sets.
_INTERNAL = frozenset({"self", "handlers", "stream_handlers", "connection_args",
                       "scheduler_ip", "scheduler_file", "nanny"})


def _parameters(*functions: Any) -> tuple[set[str], bool]:
    """The keyword names of ``functions``, and whether one takes ``**kwargs``."""
    names: set[str] = set()
    open_ended = False
    for fn in functions:
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.VAR_KEYWORD:
                open_ended = True
            elif p.kind is not p.VAR_POSITIONAL:
                names.add(p.name)
    return names - _INTERNAL, open_ended


def check_cluster_kwargs(cluster_class: Any, cluster_kwargs: dict[str, Any]) -> None:
    """Raise for a key or a value of ``cluster_kwargs`` that a ``LocalCluster``
    (or subclass) ``cluster_class`` does not take: its own parameters and those
    it passes on to its workers and nannies (and ``scheduler_kwargs`` to the
    scheduler). Other cluster classes take what they take.
    """
    from distributed import LocalCluster, Nanny, Scheduler, Worker
    from distributed.core import Server

    if not (isinstance(cluster_class, type) and issubclass(cluster_class, LocalCluster)):
        return
    own = [c.__init__ for c in cluster_class.__mro__
           if isinstance(c, type) and issubclass(c, LocalCluster)]
    names, _ = _parameters(*own)
    if cluster_kwargs.get("worker_class") is None:
        worker, _ = _parameters(Worker.__init__, Nanny.__init__, Server.__init__)
        names |= worker
    else:
        names = set()  # a worker class of the user's: it takes what it takes
    unknown = sorted(k for k in cluster_kwargs if names and k not in names)
    if unknown:
        raise DaskExecutorError(
            f"Unknown cluster_kwargs {unknown!r} for {cluster_class.__name__}; "
            f"check the spelling (e.g. 'n_workers', 'threads_per_worker', "
            "'memory_limit', 'processes')."
        )
    for key, value in cluster_kwargs.items():
        if key not in _KWARG_TYPES or value is None:
            continue
        types, expected = _KWARG_TYPES[key]
        wrong = not isinstance(value, types) or (
            isinstance(value, bool) and bool not in types
        )
        if not wrong and key in ("n_workers", "threads_per_worker", "nthreads"):
            wrong = value < (0 if key == "n_workers" else 1)
        if wrong:
            raise DaskExecutorError(
                f"cluster_kwargs[{key!r}] must be {expected}, got {value!r}."
            )
    scheduler = cluster_kwargs.get("scheduler_kwargs") or {}
    # The scheduler's **kwargs go verbatim to Server.__init__, which has none.
    names, _ = _parameters(Scheduler.__init__, Server.__init__)
    unknown = sorted(set(scheduler) - names)
    if unknown:
        raise DaskExecutorError(
            f"Unknown scheduler_kwargs {unknown!r} in cluster_kwargs; expected some "
            f"of {sorted(names)!r}."
        )


def check_options(
    address: str | None,
    cluster_class: object,
    cluster_kwargs: dict[str, Any] | None,
    adapt_kwargs: dict[str, Any] | None,
    client_kwargs: dict[str, Any] | None,
) -> None:
    """Raise :class:`DaskExecutorError` for a ``DaskExecutor`` option that is
    invalid alone or with the others.
    """
    if address is not None:
        validate_address(address)
        if cluster_class is not None or cluster_kwargs or adapt_kwargs:
            raise DaskExecutorError(
                f"address {address!r} connects to an existing cluster, so "
                "cluster_class, cluster_kwargs and adapt_kwargs cannot be given "
                "with it; drop one or the other."
            )
    if isinstance(cluster_class, str):
        import_path(cluster_class)
    elif cluster_class is not None and not callable(cluster_class):
        raise DaskExecutorError(
            f"cluster_class must be an import path, a class or a function, "
            f"got {cluster_class!r}."
        )
    for name, value in (("cluster_kwargs", cluster_kwargs),
                        ("adapt_kwargs", adapt_kwargs),
                        ("client_kwargs", client_kwargs)):
        if value is not None and not isinstance(value, dict):
            raise DaskExecutorError(f"{name} must be a dict, got {value!r}.")
    check_adapt(adapt_kwargs or {})
    if address is None and cluster_kwargs:
        cls: Any = cluster_class
        if cls is None or isinstance(cls, str):
            import distributed

            cls = distributed.LocalCluster if cls is None else import_path(cls)
        check_cluster_kwargs(cls, cluster_kwargs)
        if cluster_kwargs.get("n_workers") == 0 and not adapt_kwargs and (
            _is_local_cluster(cls)
        ):
            raise DaskExecutorError(
                "cluster_kwargs['n_workers'] is 0 and the cluster does not adapt, "
                "so no task would ever run; give n_workers >= 1, or "
                "adapt_kwargs={'minimum': 0, 'maximum': N}."
            )


def _is_local_cluster(cls: Any) -> bool:
    from distributed import LocalCluster

    return isinstance(cls, type) and issubclass(cls, LocalCluster)
