"""``ExecutorConfig``: every executor choice as plain, validated data.

The model behind the executor panel, usable without ipywidgets: it says why a
choice cannot be built (:meth:`ExecutorConfig.problem`), builds the executor,
renders itself as the equivalent Python and round-trips through a JSON-able
dict. Values are checked by the executors' own validation wherever it exists,
so the messages are the same in the panel and in a script. Standard library
only at import time; ``distributed`` is imported when TLS is built or a cluster
is inspected. TLS settings are file *paths*, never key material.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from nbflow.errors import NbflowError, WholeNumberError
from nbflow.executors._config_parts import (
    CLUSTER_MODES,
    KINDS,
    TLS_FIELDS,
    ClusterMode,
    ExecutorConfigError,
    ExecutorKind,
    Option,
    Section,
    SecurityPaths,
    check_cache_location,
    check_cluster_kwargs,
    check_report_path,
    check_security,
    dask_fields,
    literal,
    normalize_cluster_mode,
    normalize_kind,
    option,
    unheld,
)
from nbflow.executors._dask_options import DEFAULT_WORKER_TIMEOUT
from nbflow.executors._schedulers import Scheduler, normalize_scheduler
from nbflow.executors.base import Executor
from nbflow.executors.cluster_info import ClusterSummary, inspect_cluster
from nbflow.executors.dask import DaskExecutor, validate_address
from nbflow.executors.local import LocalExecutor
from nbflow.executors.local_dask import LocalDaskExecutor

__all__ = [
    "CLUSTER_MODES",
    "KINDS",
    "ClusterMode",
    "ClusterSummary",
    "ExecutorConfig",
    "ExecutorConfigError",
    "ExecutorKind",
    "OPTIONS",
    "Option",
    "Section",
    "inspect_cluster",
    "normalize_cluster_mode",
    "normalize_kind",
]



def _field(default: Any, metadata: dict[str, Option]) -> Any:
    return dataclasses.field(default=default, metadata=metadata)



@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
    """Which executor a flow runs on, and its settings, as plain data.

    Fields that do not apply to the chosen ``kind`` (and cluster mode) are kept,
    so switching back restores them, but are not used to build or render.

    Parameters
    ----------
    kind : {"local", "local-dask", "dask"}
        ``LocalExecutor``, ``LocalDaskExecutor`` or ``DaskExecutor``.
    scheduler : {"threads", "processes", "synchronous"}
        The local dask scheduler (``local-dask``).
    num_workers : int, optional
        Threads or processes of the local scheduler; default one per core.
    cluster : {"temporary", "adaptive", "existing"}
        A temporary cluster of fixed size, one that scales between ``minimum``
        and ``maximum``, or an existing cluster at ``address`` (``dask``).
    n_workers, threads_per_worker : int, optional
        The temporary cluster's ``cluster_kwargs`` of the same names.
    cluster_class : str, optional
        Import path of the cluster manager; default ``distributed.LocalCluster``.
    cluster_kwargs : dict
        Further JSON-able keywords of the cluster manager.
    address : str, optional
        The scheduler of an existing cluster, ``tcp://`` or ``tls://``.
    minimum, maximum : int
        Adaptive scaling bounds (``maximum`` None: unbounded).
    performance_report : bool
        Write Dask's performance report to ``performance_report_path``.
    tls_ca_file, tls_client_cert, tls_client_key : str, optional
        Paths of the TLS files for a secure existing cluster.
    debug : bool
        Keep the cluster's logs at their usual level.
    worker_timeout : float, optional
        Seconds to wait for a worker when the scheduler at ``address`` has none
        (default 60); None: do not wait.
    cache_location : str, optional
        Where the notebook cache keeps cell results from the next run on: a
        folder (or ``file://`` URL) the kernel and every worker can write; on
        a cluster it is what lets runs be cached beyond the session. Default:
        ``$NBFLOW_CACHE_DIR``, else ``.nbflow/cache`` next to the notebook.

    Examples
    --------
    >>> config = ExecutorConfig(kind="dask", n_workers=4, threads_per_worker=2)
    >>> print(config.code(imports=False))
    flow.executor = DaskExecutor(cluster_kwargs={"n_workers": 4, "threads_per_worker": 2})

    """

    # Each field's metadata says where it applies, how the panel edits it and
    # its `nbflow run` option (see Option); OPTIONS collects them.
    kind: ExecutorKind = _field("local", option("kind", "choice"))
    scheduler: Scheduler = _field(
        "threads",
        option(
            "local-dask", "choice", flag="--scheduler", metavar="NAME",
            help="threads, processes or synchronous",
        ),
    )
    num_workers: int | None = _field(
        None,
        option(
            "local-dask", "count", placeholder=f"one per core ({os.cpu_count()})",
            minimum=1, default="one worker per core", flag="--num-workers",
            metavar="N", help="threads or processes",
        ),
    )
    cluster: ClusterMode = _field("temporary", option("dask", "choice"))
    n_workers: int | None = _field(
        None,
        option(
            "temporary", "count", placeholder="LocalCluster's default", minimum=0,
            default="the cluster's default", flag="--num-workers", metavar="N",
            help="workers of the temporary cluster",
        ),
    )
    threads_per_worker: int | None = _field(
        None,
        option(
            "temporary", "count", placeholder="LocalCluster's default", minimum=1,
            default="the cluster's default",
        ),
    )
    cluster_class: str | None = _field(
        None, option("temporary", "text", placeholder="distributed.LocalCluster")
    )
    cluster_kwargs: dict[str, Any] = dataclasses.field(
        default_factory=dict,
        metadata=option(
            "temporary", "json", placeholder='{"processes": false}  (JSON)'
        ),
    )
    address: str | None = _field(
        None,
        option(
            "existing", "text", placeholder="tcp://HOST:8786", flag="--address",
            metavar="tcp://HOST:PORT", help="an existing scheduler (left running)",
        ),
    )
    minimum: int = _field(0, option("adaptive", "count", placeholder="0"))
    maximum: int | None = _field(
        None, option("adaptive", "count", placeholder="no limit")
    )
    performance_report: bool = _field(False, option("report", "flag"))
    performance_report_path: str | None = _field(
        None,
        option(
            "report", "text", placeholder="report.html",
            switch="performance_report", flag="--report", metavar="PATH",
            help="write Dask's performance report (HTML) there",
        ),
    )
    tls_ca_file: str | None = _field(
        None, option("existing", "text", placeholder="path of the CA certificate (PEM)")
    )
    tls_client_cert: str | None = _field(
        None,
        option("existing", "text", placeholder="path of the client certificate (PEM)"),
    )
    tls_client_key: str | None = _field(
        None, option("existing", "text", placeholder="path of the client key (PEM)")
    )
    debug: bool = _field(False, option("report", "flag"))
    worker_timeout: float | None = _field(
        DEFAULT_WORKER_TIMEOUT,
        option(
            "existing", "seconds", placeholder="None: do not wait",
            flag="--worker-timeout", metavar="SECONDS",
            help="wait that long for a worker if the scheduler at --address has none "
            f"(default {DEFAULT_WORKER_TIMEOUT:g}; none: do not wait)",
        ),
    )
    cache_location: str | None = _field(
        None,
        option(
            "cache", "text",
            placeholder="default: .nbflow/cache next to the notebook; a shared "
                        "folder for a cluster",
        ),
    )

    def __post_init__(self) -> None:
        # Canonical names where they are recognisable; anything else is kept
        # as given, for problem() to explain.
        for name, normalize in (
            ("kind", normalize_kind),
            ("scheduler", normalize_scheduler),
            ("cluster", normalize_cluster_mode),
        ):
            with contextlib.suppress(NbflowError):
                object.__setattr__(self, name, normalize(getattr(self, name)))
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) and not value.strip():
                object.__setattr__(self, name, None)
        if isinstance(self.cluster_kwargs, Mapping):
            object.__setattr__(self, "cluster_kwargs", dict(self.cluster_kwargs))

    # -- validation and building ------------------------------------------------

    def sections(self) -> set[Section]:
        """The sections whose fields apply to this config's kind and cluster mode.

        Examples
        --------
        >>> sorted(ExecutorConfig(kind="dask", cluster="adaptive").sections())
        ['adaptive', 'cache', 'dask', 'kind', 'report', 'temporary']

        """
        shown: set[Section] = {"kind", "cache"}
        if self.kind == "local-dask":
            shown.add("local-dask")
        elif self.kind == "dask":
            shown |= {"dask", "report"}
            if self.cluster in ("temporary", "adaptive"):
                shown.add("temporary")
            if self.cluster == "adaptive":
                shown.add("adaptive")
            if self.cluster == "existing":
                shown.add("existing")
        return shown

    def applies(self, name: str) -> bool:
        """Whether field ``name`` is used for this kind and mode (and switched on)."""
        spec = OPTIONS[name]
        switch = spec.switch is None or bool(getattr(self, spec.switch))
        return spec.section in self.sections() and switch

    def problem(self) -> str | None:
        """Return why this config cannot be built, or None if it can.

        Returns
        -------
        str or None
            One sentence naming the offending value and the fix.

        Examples
        --------
        >>> ExecutorConfig(kind="local-dask", num_workers=0).problem()
        'num_workers must be a whole number >= 1, got 0; leave it out for one worker per core.'

        """
        try:
            self._arguments()
        except NbflowError as exc:
            return str(exc)
        return None

    def build(self) -> Executor:
        """Return the executor this config describes, ready to start.

        Raises
        ------
        ExecutorConfigError
            If :meth:`problem` is set (the problem is the message).

        Examples
        --------
        >>> ExecutorConfig(kind="local-dask", scheduler="processes", num_workers=8).build()
        LocalDaskExecutor(scheduler='processes', num_workers=8)

        """
        cls, kwargs = self._checked_arguments()
        if "client_kwargs" in kwargs:
            kwargs["client_kwargs"] = self.client_kwargs()
        executor: Executor = cls(**kwargs)
        return executor

    def client_kwargs(self) -> dict[str, Any]:
        """The keywords of ``distributed.Client`` for this config's TLS files.

        Returns
        -------
        dict
            ``{"security": distributed.Security(...)}``, or ``{}`` without TLS.
        """
        security = self._security()
        return {} if security is None else {"security": security.build()}

    def code(self, target: str = "flow.executor", *, imports: bool = True) -> str:
        """Return Python that sets ``target`` to this config's executor.

        Parameters
        ----------
        target : str
            What the executor is assigned to.
        imports : bool
            Start with the import lines the statement needs.

        Returns
        -------
        str
            Code to paste into a script; it reproduces :meth:`build`'s executor.

        Raises
        ------
        ExecutorConfigError
            If :meth:`problem` is set.

        Examples
        --------
        >>> print(ExecutorConfig(kind="local-dask", num_workers=2).code())
        from nbflow.executors import LocalDaskExecutor
        <BLANKLINE>
        flow.executor = LocalDaskExecutor(scheduler="threads", num_workers=2)

        """
        cls, kwargs = self._checked_arguments()
        cache = ("" if self.cache_location is None else
                 f"\nconfigure_cache({literal(self.cache_location)})")
        rendered = [f"{k}={literal(v)}" for k, v in kwargs.items()]
        line = f"{target} = {cls.__name__}({', '.join(rendered)})"
        if len(line) > 88:
            body = "".join(f"    {arg},\n" for arg in rendered)
            line = f"{target} = {cls.__name__}(\n{body})"
        if not imports:
            return line + cache
        lines = [f"from nbflow.executors import {cls.__name__}"]
        if "client_kwargs" in kwargs:
            lines.insert(0, "from distributed import Security")
        if cache:
            lines.append("from nbflow.notebook.cache import configure_cache")
        return "\n".join(lines) + "\n\n" + line + cache

    def _checked_arguments(self) -> tuple[type[Executor], dict[str, Any]]:
        try:
            return self._arguments()
        except NbflowError as exc:
            raise ExecutorConfigError(str(exc)) from None

    def _arguments(self) -> tuple[type[Executor], dict[str, Any]]:
        """The executor class and its arguments (TLS as paths); raise if invalid."""
        kind = normalize_kind(self.kind)
        if self.cache_location is not None:
            check_cache_location(self.cache_location)
        for name, spec in OPTIONS.items():
            value = getattr(self, name)
            if spec.minimum is not None and value is not None and self.applies(name):
                WholeNumberError.check(
                    name, value, minimum=spec.minimum, default=spec.default
                )
        if kind == "local":
            return LocalExecutor, {}
        if kind == "local-dask":
            kwargs: dict[str, Any] = {"scheduler": self.scheduler}
            if self.num_workers is not None:
                kwargs["num_workers"] = self.num_workers
            LocalDaskExecutor(**kwargs)  # its own validation and messages
            return LocalDaskExecutor, kwargs
        kwargs = self._dask_arguments()
        DaskExecutor(**{k: v for k, v in kwargs.items() if k != "client_kwargs"})
        return DaskExecutor, kwargs

    def _dask_arguments(self) -> dict[str, Any]:
        mode = normalize_cluster_mode(self.cluster)
        kwargs: dict[str, Any] = {}
        if mode == "existing":
            if self.address is None:
                raise ExecutorConfigError(
                    "Cluster mode 'existing' needs the scheduler's address; give "
                    "address such as 'tcp://10.0.0.5:8786' or choose 'temporary'."
                )
            kwargs["address"] = validate_address(self.address)
            security = self._security()
            if security is not None:
                kwargs["client_kwargs"] = {"security": security}
            if self.worker_timeout != DEFAULT_WORKER_TIMEOUT:
                kwargs["worker_timeout"] = self.worker_timeout  # checked by it
        else:
            if self.cluster_class is not None:
                kwargs["cluster_class"] = self.cluster_class
            sizes = {
                "n_workers": self.n_workers,
                "threads_per_worker": self.threads_per_worker,
            }
            cluster_kwargs = check_cluster_kwargs(self.cluster_kwargs, sizes)
            if cluster_kwargs:
                kwargs["cluster_kwargs"] = cluster_kwargs
            if mode == "adaptive":
                adapt = {"minimum": self.minimum, "maximum": self.maximum}
                kwargs["adapt_kwargs"] = {
                    k: v for k, v in adapt.items() if v is not None
                }
        if self.debug:
            kwargs["debug"] = True
        if self.performance_report:
            kwargs["performance_report_path"] = check_report_path(
                self.performance_report_path
            )
        return kwargs

    def _security(self) -> SecurityPaths | None:
        given = {name: getattr(self, name) for name in TLS_FIELDS}
        return check_security(self.address or "", given)

    # -- conversions --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return every field as JSON-able data (:meth:`from_dict` reads it back).

        Examples
        --------
        >>> ExecutorConfig.from_dict(ExecutorConfig().to_dict()) == ExecutorConfig()
        True

        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutorConfig:
        """Return the config of a dict as made by :meth:`to_dict`.

        Parameters
        ----------
        data : Mapping
            Field names to values; missing fields take their defaults.

        Raises
        ------
        ExecutorConfigError
            If ``data`` has keys that are not fields.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ExecutorConfigError(
                f"Unknown executor config keys {unknown!r}; expected some of {names!r}."
            )
        return cls(**data)

    @classmethod
    def from_executor(cls, executor: Executor | None) -> ExecutorConfig:
        """Return the config that builds an executor like ``executor``.

        Parameters
        ----------
        executor : Executor or None
            None (a flow's default) gives the ``local`` config.

        Raises
        ------
        ExecutorConfigError
            If ``executor`` has settings a config cannot hold.
        """
        if executor is None or type(executor) is LocalExecutor:
            return cls()
        if type(executor) is LocalDaskExecutor:
            if executor.kwargs:
                raise unheld(executor, f"scheduler keywords {executor.kwargs!r}")
            return cls(
                kind="local-dask",
                scheduler=executor.scheduler,
                num_workers=executor.num_workers,
            )
        if type(executor) is DaskExecutor:
            return cls(**dask_fields(executor))
        raise unheld(executor, f"the executor type {type(executor).__name__}")


#: Each field's :class:`Option`: where it applies, its control, its CLI flag.
OPTIONS: dict[str, Option] = {
    f.name: f.metadata["option"] for f in dataclasses.fields(ExecutorConfig)
}
_TEXT_FIELDS = tuple(n for n, o in OPTIONS.items() if o.control == "text")
