"""Checking ``DaskExecutor``'s options, at construction and in the panel."""

from __future__ import annotations

import importlib
import re
from typing import Any

from nbflow.errors import NbflowError

__all__ = [
    "ADAPT_KEYS",
    "DEFAULT_WORKER_TIMEOUT",
    "DaskExecutorError",
    "check_adapt",
    "check_options",
    "check_worker_timeout",
    "import_path",
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


class DaskExecutorError(NbflowError, ValueError):
    """A DaskExecutor option is invalid."""


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


def check_worker_timeout(value: object) -> float | None:
    """``value`` as seconds (a finite number >= 0) or None, else raise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 <= value < float("inf")
    ):
        raise DaskExecutorError(
            f"worker_timeout must be a number of seconds >= 0 or None, got {value!r}."
        )
    return float(value)


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
