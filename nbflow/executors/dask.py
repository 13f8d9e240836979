"""``DaskExecutor``: tasks on a ``dask.distributed`` cluster.

A temporary ``LocalCluster`` (bound to 127.0.0.1, dashboard included) by
default; any cluster manager through ``cluster_class``; an existing cluster
through ``address``. The client it starts is made the current one for the run,
so ``performance_report`` finds it (Prefect 1's report fails there with "No global
client found"). ``distributed`` is imported only when the executor starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nbflow.errors import ClusterConnectionError
from nbflow.executors._dashboard import dashboard_link
from nbflow.executors._dask_faults import close_client, one_line
from nbflow.executors._dask_options import (
    ADAPT_KEYS,
    DEFAULT_WORKER_TIMEOUT,
    check_options,
    check_report_file,
    check_worker_timeout,
    import_path,
    validate_address,
)
from nbflow.executors._report import quiet_report
from nbflow.executors.base import Deliver, Executor, TaskChannel, map_nested

__all__ = ["ADAPT_KEYS", "DaskExecutor", "validate_address"]

log = logging.getLogger(__name__)

_LOCAL_CLUSTER_DEFAULTS = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}


class _LogEvent:
    """Report a record from a worker through Dask's event log (pub/sub)."""

    __slots__ = ("topic",)

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def __call__(self, record: Any) -> None:
        from distributed import get_worker

        get_worker().log_event(self.topic, record)


class _DaskChannel(TaskChannel):
    """Reports through Dask's events; cancellation is the scheduler's job."""

    __slots__ = ("report", "crosses_processes")

    def __init__(self, report: _LogEvent | None, crosses_processes: bool = True) -> None:
        self.report = report
        self.crosses_processes = crosses_processes

    def is_cancelled(self) -> bool:
        """Never: cancelling is the scheduler's job."""
        return False

    def where(self) -> str:
        """The Dask worker's address."""
        from distributed import get_worker

        try:
            return str(get_worker().address)
        except ValueError:  # not on a worker (a task run by the client)
            return threading.current_thread().name


class DaskExecutor(Executor):
    """Run tasks on a ``dask.distributed`` cluster.

    Parameters
    ----------
    address : str, optional
        An existing scheduler, e.g. ``"tcp://10.0.0.5:8786"``; left running.
    cluster_class : str, class or callable, optional
        What makes a temporary cluster, called with ``cluster_kwargs``; an
        import path string, a cluster class or a function returning a cluster.
        Default ``distributed.LocalCluster`` on 127.0.0.1.
    cluster_kwargs : dict, optional
        For the temporary cluster, e.g. ``{"n_workers": 4, "threads_per_worker": 2}``.
    adapt_kwargs : dict, optional
        Adaptive scaling of a temporary cluster, e.g. ``{"minimum": 1, "maximum": 10}``.
    client_kwargs : dict, optional
        For ``distributed.Client``, e.g. ``{"security": Security(...)}``.
    debug : bool
        Keep the cluster's logs at their usual level (they are quietened otherwise).
    performance_report_path : str, optional
        Write Dask's performance report there (inline resources: it draws
        offline); its HTML is then in :attr:`performance_report`.
    worker_timeout : float, optional
        Seconds to wait, when the scheduler at ``address`` has no worker, for
        the first one to join before failing (default 60); None: do not wait
        (a cluster that starts workers only once work arrives).

    Examples
    --------
    >>> DaskExecutor(cluster_kwargs={"n_workers": 4, "threads_per_worker": 2})
    DaskExecutor(cluster_kwargs={'n_workers': 4, 'threads_per_worker': 2})

    """

    def __init__(
        self,
        address: str | None = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        debug: bool = False,
        performance_report_path: str | os.PathLike[str] | None = None,
        worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
    ) -> None:
        super().__init__()
        check_options(address, cluster_class, cluster_kwargs, adapt_kwargs, client_kwargs)
        self.worker_timeout = check_worker_timeout(worker_timeout)
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.debug = debug
        self.performance_report_path = (
            check_report_file(performance_report_path)
            if performance_report_path else None
        )
        self._performance_report = ""
        #: The source shown under "Calling Code" in the performance report;
        #: None: the code that called ``flow.run`` (the notebook layer sets it
        #: to the flow's ``%%flowtask`` cells for a ``%flow run``).
        self.report_code: str | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._topic: str | None = None
        # Values gathered during the run (key -> value), and the futures not
        # gathered yet; see wait().
        self._results: dict[Any, Any] = {}
        self._submitted: list[Any] = []

    def __repr__(self) -> str:
        given = [
            f"{k}={v!r}" for k, v in (
                ("address", self.address), ("cluster_class", self.cluster_class),
                ("cluster_kwargs", self.cluster_kwargs),
                ("adapt_kwargs", self.adapt_kwargs),
                ("client_kwargs", self.client_kwargs),
                ("debug", self.debug),
                ("performance_report_path", self.performance_report_path),
            ) if v
        ]
        if self.worker_timeout != DEFAULT_WORKER_TIMEOUT:
            given.append(f"worker_timeout={self.worker_timeout!r}")
        return f"DaskExecutor({', '.join(given)})"

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(_client=None, _cluster=None, _topic=None, _results={},
                     _submitted=[])
        return state

    @property
    def performance_report(self) -> str:
        """The HTML of the last run's performance report ("" before one)."""
        return self._performance_report

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard of the running cluster, or None when not running.

        On a JupyterHub (Binder) a local dashboard is linked through
        jupyter-server-proxy, ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status``.
        """
        if self._client is None:
            return None
        return dashboard_link(self._client, self._cluster, self.cluster_kwargs)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` while running, else None."""
        return self._client

    @contextlib.contextmanager
    def start(self) -> Iterator[None]:
        """Start or connect to a cluster; close what was started on every way out."""
        from distributed import performance_report

        self._performance_report = ""
        with contextlib.ExitStack() as stack:
            self._connect(stack)
            stack.enter_context(self._client.as_current())
            if self.performance_report_path:
                stack.callback(self._read_report)
                stack.enter_context(
                    quiet_report(performance_report(
                        filename=self.performance_report_path, mode="inline"
                    ), code=self.report_code)
                )
            stack.enter_context(super().start())
            yield

    def _connect(self, stack: contextlib.ExitStack) -> None:
        from dask.utils import parse_timedelta
        from distributed import Client

        from nbflow.executors.cluster_info import probe_scheduler

        stack.callback(self._forget)
        if self.address is not None:
            kwargs = {"timeout": 5, **self.client_kwargs}
            try:
                probe_scheduler(self.address, timeout=float(parse_timedelta(
                    kwargs["timeout"])), client_kwargs=self.client_kwargs)
                self._client = Client(self.address, **kwargs)
            except ClusterConnectionError:
                raise
            except (OSError, TimeoutError) as exc:
                raise ClusterConnectionError(
                    f"Could not connect to the Dask scheduler at {self.address!r} "
                    f"({one_line(exc)}); check that `dask scheduler` runs there and "
                    "is reachable (and, for tls://, that your certificate is one it "
                    "trusts), or leave address out for a temporary local cluster."
                ) from exc
            except TypeError as exc:
                # distributed's way of saying a tls:// address got no TLS settings.
                if "TLS" not in str(exc):
                    raise
                raise ClusterConnectionError(
                    f"Could not connect to the Dask scheduler at {self.address!r}: "
                    "it needs TLS and no certificates were given; pass client_kwargs="
                    "{'security': distributed.Security(tls_ca_file=..., "
                    "tls_client_cert=..., tls_client_key=..., "
                    "require_encryption=True)}."
                ) from exc
            stack.callback(close_client, self._client)
            self._wait_for_a_worker()
            return
        cls = self.cluster_class
        if cls is None:
            from distributed import LocalCluster

            cls = LocalCluster
        elif isinstance(cls, str):
            cls = import_path(cls)
        kwargs = dict(self.cluster_kwargs)
        if _is_local_cluster(cls):
            defaults = dict(_LOCAL_CLUSTER_DEFAULTS)
            if kwargs.get("processes") is False and "protocol" not in kwargs:
                # In-process clusters talk over inproc://, which takes no host;
                # their workers' HTTP servers would then listen on 0.0.0.0 and ::.
                defaults.pop("host")
                defaults["worker_dashboard_address"] = "127.0.0.1:0"
            kwargs = {**defaults, **kwargs}
            if kwargs.get("processes") is not False and kwargs.get("worker_class") is None:
                preload = kwargs.get("preload") or []
                preload = [preload] if isinstance(preload, str) else list(preload)
                kwargs["preload"] = [*preload, _IGNORE_SIGINT]
            if not self.debug:
                kwargs.setdefault("silence_logs", logging.ERROR)
        if _is_local_cluster(cls) and kwargs.get("processes") is not False:
            from nbflow.executors.local_dask import check_main_guard

            check_main_guard(repr(self))
        with _sigint_deferred():  # a kernel interrupt must not kill the workers
            self._cluster = cls(**kwargs)
            # Before a Ctrl-C of these seconds is raised on leaving the block.
            stack.callback(self._cluster.close)
        if self.adapt_kwargs:
            self._cluster.adapt(**self.adapt_kwargs)
        self._client = Client(self._cluster, **self.client_kwargs)
        stack.callback(close_client, self._client)

    def _wait_for_a_worker(self) -> None:
        """Say that the scheduler has no worker; wait ``worker_timeout`` for one."""
        if self.worker_timeout is None or self._client.scheduler_info(n_workers=1)[
            "workers"
        ]:
            return
        log.warning(
            "The Dask scheduler at %s has no workers; waiting up to %g s for one "
            "(start one with `dask worker %s`).",
            self.address, self.worker_timeout, self.address,
        )
        try:
            self._client.wait_for_workers(1, timeout=self.worker_timeout)
        except TimeoutError:
            raise ClusterConnectionError(
                f"The Dask scheduler at {self.address!r} has no workers and none "
                f"joined within {self.worker_timeout:g} s; start one with `dask "
                f"worker {self.address}`, or wait longer with worker_timeout=SECONDS "
                "(`nbflow run --worker-timeout SECONDS`)."
            ) from None

    def _forget(self) -> None:
        self._client = self._cluster = None
        self._results, self._submitted = {}, []
        if self._topic is not None:
            self._topic = None

    def _read_report(self) -> None:
        path = self.performance_report_path
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self._performance_report = f.read()

    def open_channel(self, deliver: Deliver | None) -> TaskChannel:
        """Tasks report through Dask's event log to a topic of this run."""
        self._check_started()
        # Results move between processes unless the cluster lives in this one.
        crosses = not self._scheduler_address().startswith("inproc://")
        if deliver is None:
            return _DaskChannel(None, crosses)
        self._topic = f"nbflow-{uuid.uuid4().hex}"
        topic = self._topic

        def handler(event: tuple[float, Any]) -> None:
            deliver(tuple(event[1]))

        self._client.subscribe_topic(topic, handler)
        return _DaskChannel(_LogEvent(topic), crosses)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Submit ``fn`` to the cluster; futures among the arguments are resolved."""
        if self._client is None:
            self._check_started()
        name = kwargs.pop("dask_key_name", None) or getattr(fn, "__name__", "task")
        key = f"{name}-{uuid.uuid4().hex}"
        future = self._client.submit(fn, *args, key=key, pure=False, **kwargs)
        self._submitted.append(future)
        return future

    def submit_map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        dask_key_name: str | None = None,
    ) -> list[Any]:
        """Submit the children of a mapped task with one ``Client.map``: one
        message to the scheduler, arguments shared by all children (the task's
        spec, the channel) pickled once, not once per child.
        """
        if self._client is None:
            self._check_started()
        if not calls:
            return []
        name = dask_key_name or getattr(fn, "__name__", "task")
        prefix = f"{name}-{uuid.uuid4().hex}"
        keys = [f"{prefix}-{i}" for i in range(len(calls))]
        futures = list(self._client.map(fn, *zip(*calls), key=keys, pure=False))
        self._submitted.extend(futures)
        return futures

    def wait(self, futures: Any, *, return_exceptions: bool = False) -> Any:
        """Gather the values of ``futures`` from the cluster.

        With ``return_exceptions=True`` values are gathered as tasks finish, so
        they survive a scheduler that dies later; a future that gives no value
        gives the error that explains it (a dead worker, a lost scheduler).
        """
        self._check_started()
        if not return_exceptions:
            return self._client.gather(futures)
        from distributed import Future

        from nbflow.executors._dask_faults import explain, gather_as_completed

        flat: list[Any] = []
        map_nested(lambda f: flat.append(f) if isinstance(f, Future) else None, futures)
        values = self._results
        pending = [f for f in flat if f.key not in values]
        if pending:
            gather_as_completed(self._client, pending, values)
        # Also bring in what else finished meanwhile (upstream of what was
        # waited for), so a scheduler lost later takes none of it.
        self._submitted = [f for f in self._submitted if f.key not in values]
        gather_as_completed(self._client, [
            f for f in self._submitted if f.status == "finished"], values)
        address = self._scheduler_address()

        def value(f: Any) -> Any:
            if not isinstance(f, Future):
                return f
            if f.key in values:
                return values[f.key]
            return explain(self._client, f, address)

        return map_nested(value, futures)

    def _scheduler_address(self) -> str:
        if self.address is not None:
            return self.address
        try:
            return str(self._client.scheduler.address)
        except AttributeError:
            return "the temporary cluster"

    def cancel(self, futures: Any) -> None:
        """Cancel what has not finished on the cluster."""
        from distributed import Future

        flat: list[Any] = []
        map_nested(lambda f: flat.append(f) if isinstance(f, Future) else None, futures)
        # Cancelling a finished future would release its result: keep those.
        pending = [f for f in flat if not f.done()]
        if self._client is not None and pending:
            with contextlib.suppress(Exception):
                self._client.cancel(pending, asynchronous=False)

    def collect_finished(self, futures: list[Any]) -> list[Any]:
        """Values of the finished futures (one round trip), None for the others."""
        from distributed import Future

        values: dict[Any, Any] = dict(self._results)
        done = [f for f in futures if isinstance(f, Future) and f.status == "finished"
                and f.key not in values]
        if done and self._client is not None:
            with contextlib.suppress(Exception):
                values.update(zip((f.key for f in done),
                                  self._client.gather(done, errors="skip")))
        return [
            values.get(f.key) if isinstance(f, Future) else f for f in futures
        ]


def _is_local_cluster(cls: Any) -> bool:
    from distributed import LocalCluster

    return isinstance(cls, type) and issubclass(cls, LocalCluster)


#: Run in each worker process of a temporary cluster as it starts (a
#: distributed preload given as source text): a kernel interrupt or Ctrl-C
#: goes to the driver's whole process group, and workers that died of it
#: would take the results of finished tasks with them.
_IGNORE_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)"


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that comes while a temporary cluster starts; raise it
    (KeyboardInterrupt) when the block ends, once closing the cluster is
    arranged. Only the main thread can do this; elsewhere (a background run)
    nothing changes.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    except BaseException:
        if not caught:
            raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
