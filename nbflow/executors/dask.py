"""``DaskExecutor``: tasks on a ``dask.distributed`` cluster.

A temporary ``LocalCluster`` (bound to 127.0.0.1, dashboard included) by
default; any cluster manager through ``cluster_class``; an existing cluster
through ``address``. The client it starts is made the current one for the run,
so ``performance_report`` finds it (Prefect 1's report fails there with "No global
client found"). ``distributed`` is imported only when the executor starts.

Values stay on the cluster: tasks get their inputs as futures, and the driver
gathers only what the run brings home (see :meth:`DaskExecutor.collect`). On
an existing cluster the client stays open after a run while results of it
are kept there, so they can be read later; a temporary cluster takes the
results it kept with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from nbflow.engine.state import Success
from nbflow.errors import ClusterConnectionError
from nbflow.executors._dashboard import dashboard_link
from nbflow.executors._dask_faults import (
    ClusterResult,
    Dropped,
    Home,
    ResultNotKeptError,
    close_client,
    explain,
    gather_as_completed,
    is_connected,
    one_line,
    plain,
    shells,
    stays,
)
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
from nbflow.executors.base import (
    Deliver,
    Executor,
    TaskChannel,
    calling_code,
    map_nested,
    work_name,
)

__all__ = ["ADAPT_KEYS", "ClientEnvironment", "DaskExecutor", "ResultNotKeptError",
           "client_environment", "validate_address"]

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

    __slots__ = ("report", "crosses_processes", "requirements")

    def __init__(self, report: _LogEvent | None, crosses_processes: bool = True,
                 requirements: str | None = None) -> None:
        self.report = report
        self.crosses_processes = crosses_processes
        #: The token of what the workers were checked for; None: not checked.
        self.requirements = requirements

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

    def refusal(self, task: str) -> str | None:
        """Why this worker cannot run ``task``: it joined after the run's
        check and lacks a package the task uses (its worker plugin checked it
        on joining).
        """
        if self.requirements is None:
            return None
        from nbflow.executors._environment import refusal

        return refusal(self.requirements, task)


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
    check_environment : bool
        Before the first task, ask the workers for the packages the flow's
        tasks use and refuse to run (:class:`~nbflow.errors.ClusterEnvironmentError`, one
        line) when one is missing or has another major/minor version, or when
        their Python differs; False runs anyway. The user's own modules (not
        installed as a distribution) are sent to the cluster either way.

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
        *,
        check_environment: bool = True,
        worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
    ) -> None:
        super().__init__()
        check_options(address, cluster_class, cluster_kwargs, adapt_kwargs, client_kwargs)
        self.worker_timeout = check_worker_timeout(worker_timeout)
        self.address = address
        #: ``cluster_class`` as given (an import path stays a string here).
        self._cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.debug = debug
        self.performance_report_path = (
            check_report_file(performance_report_path)
            if performance_report_path else None
        )
        self.check_environment = check_environment
        #: Called with one line about the workers when a run connects, e.g.
        #: ``"2 workers, Python 3.11"`` (``nbflow run`` prints it); not pickled.
        self.on_environment: Callable[[str], None] | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._topic: str | None = None
        #: The token of what this run checked the workers for (see prepare).
        self._requirements: str | None = None
        #: Where this run's kept results are; after a run on an existing
        #: cluster, a weak reference to it, to reuse its client.
        self._home: Home | None = None
        #: Keys of this run whose values were released unread (see collect).
        self._released: set[Any] = set()
        self._last_home: Callable[[], Home | None] = lambda: None

    def __repr__(self) -> str:
        given = [
            f"{k}={v!r}" for k, v in (
                ("address", self.address), ("cluster_class", self._cluster_class),
                ("cluster_kwargs", self.cluster_kwargs),
                ("adapt_kwargs", self.adapt_kwargs),
                ("client_kwargs", self.client_kwargs),
                ("debug", self.debug),
                ("performance_report_path", self.performance_report_path),
            ) if v
        ]
        if self.worker_timeout != DEFAULT_WORKER_TIMEOUT:
            given.append(f"worker_timeout={self.worker_timeout!r}")
        if not self.check_environment:
            given.append("check_environment=False")
        return f"DaskExecutor({', '.join(given)})"

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(_client=None, _cluster=None, _topic=None, _home=None,
                     _released=set(), on_environment=None, _requirements=None)
        state.pop("_last_home", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._last_home = lambda: None

    @property
    def cluster_class(self) -> Callable[..., Any]:
        """What makes the temporary cluster: the class or function, an import
        path resolved (``distributed.LocalCluster`` by default, imported now).
        """
        cls = self._cluster_class
        if cls is None:
            from distributed import LocalCluster

            return LocalCluster
        return import_path(cls) if isinstance(cls, str) else cls

    @cluster_class.setter
    def cluster_class(self, value: str | Callable[..., Any] | None) -> None:
        self._cluster_class = value

    @property
    def is_local_cluster(self) -> bool:
        """Whether runs start a temporary ``LocalCluster``: its workers run on
        this machine and see its files.
        """
        if self.address is not None:
            return False
        try:
            return _is_local_cluster(self.cluster_class)
        except Exception:  # noqa: BLE001 - a bad import path is start()'s to explain
            return False

    @property
    def performance_report(self) -> str:
        """The HTML of the performance report at ``performance_report_path``,
        read whenever the file exists; "" when it does not (as Prefect 1).
        """
        path = self.performance_report_path
        if not path:
            return ""
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            log.debug("No performance report at %r: %s", path, exc)
            return ""

    @property
    def crosses_processes(self) -> bool:
        """True: workers may be other processes and machines."""
        return True

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

        with contextlib.ExitStack() as stack:
            with warnings.catch_warnings():
                if self.check_environment:
                    # distributed's table of every mismatched version; prepare()
                    # says in one line what matters to this flow.
                    from distributed.versions import VersionMismatchWarning

                    warnings.simplefilter("ignore", VersionMismatchWarning)
                self._connect(stack)
            stack.enter_context(self._client.as_current())
            if self.performance_report_path:
                stack.enter_context(
                    quiet_report(performance_report(
                        filename=self.performance_report_path, mode="inline"
                    ), code=calling_code())
                )
            stack.enter_context(super().start())
            yield

    def _connect(self, stack: contextlib.ExitStack) -> None:
        from dask.utils import parse_timedelta
        from distributed import Client

        from nbflow.executors.cluster_info import probe_scheduler

        stack.callback(self._forget)
        if self.address is not None:
            home = self._last_home()
            if home is not None and home.client is not None and is_connected(
                home.client
            ):
                # The client of the last run, still open for its kept results.
                self._client, self._home = home.client, home
                stack.callback(self._leave_existing)
                return
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
            self._home = Home(self._client, self.address)
            stack.callback(self._leave_existing)
            self._wait_for_a_worker()
            return
        cls = self.cluster_class
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
            # debug= sets silence_logs, as in Prefect 1 (which uses CRITICAL).
            kwargs.setdefault(
                "silence_logs", logging.WARNING if self.debug else logging.ERROR
            )
        if _is_local_cluster(cls) and kwargs.get("processes") is not False:
            from nbflow.executors.local_dask import check_main_guard

            check_main_guard(repr(self))
        if _is_local_cluster(cls) and self.on_starting is not None:
            kwargs = self._report_workers_up(cls, kwargs)
        with _sigint_deferred():  # a kernel interrupt must not kill the workers
            self._cluster = cls(**kwargs)
            # Before a Ctrl-C of these seconds is raised on leaving the block.
            stack.callback(_to_the_end, self._cluster.close)
        if self.adapt_kwargs:
            self._cluster.adapt(**self.adapt_kwargs)
        self._client = Client(self._cluster, **self.client_kwargs)
        stack.callback(_to_the_end, close_client, self._client)
        self._home = Home(self._client, self._scheduler_address())
        stack.callback(self._home.shut)

    def _report_workers_up(self, cls: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` for a ``LocalCluster`` whose scheduler reports each worker
        that joins ("N of M workers up") through :meth:`report_starting`.

        A scheduler plugin: the scheduler runs in this process and calls it as
        a worker registers (no polling); it removes itself once all are up, so
        the run's tasks do not pass through it.
        """
        from distributed.diagnostics.plugin import SchedulerPlugin

        expected = _expected_workers(kwargs)
        if expected < 1:
            return kwargs
        what = f"Starting a temporary Dask cluster ({cls.__name__})"
        report = self.report_starting

        class WorkersUp(SchedulerPlugin):
            name = "nbflow-workers-up"

            def add_worker(self, scheduler: Any, worker: str) -> None:
                up = len(scheduler.workers)
                report(f"{what}: {min(up, expected)} of {expected} workers up …")
                if up >= expected:
                    scheduler.remove_plugin(name=self.name)

        scheduler_kwargs = dict(kwargs.get("scheduler_kwargs") or {})
        scheduler_kwargs["plugins"] = [
            *(scheduler_kwargs.get("plugins") or ()), WorkersUp()]
        report(f"{what}: 0 of {expected} workers up …")
        return {**kwargs, "scheduler_kwargs": scheduler_kwargs}

    def _leave_existing(self) -> None:
        """Keep the client open while results of a run are kept on the
        cluster (closed when the last is gone); close it otherwise.
        """
        home = self._home
        if home is None or not home.made or not is_connected(home.client):
            close_client(self._client)
            return
        if self._last_home() is not home:
            home.keep()
            self._last_home = weakref.ref(home)

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
        self.report_starting(
            f"Connected to {self.address}: 0 of 1 workers up; waiting up to "
            f"{self.worker_timeout:g} s for one (`dask worker {self.address}`) …")
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
        self._home = None
        self._released = set()
        self._requirements = None
        if self._topic is not None:
            self._topic = None

    def prepare(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        """Check that the workers have the packages the tasks use (unless
        ``check_environment=False``) and send them the user's own modules.

        Workers that join later (adaptive scaling, a late ``dask worker``) get
        the modules and check themselves when they join: a task that uses a
        package such a worker lacks fails there with the same one line.

        Parameters
        ----------
        functions : Mapping
            Task name -> the callable it runs.

        Raises
        ------
        ClusterEnvironmentError
            One line naming each package the workers (or the scheduler) lack
            or have in another major/minor version, or another Python, with
            the tasks that use it.
        """
        self._check_started()
        from nbflow.executors._environment import (
            Requirements,
            check_cluster,
            flow_needs,
            ship_code,
        )

        needs = flow_needs(functions)
        address = self._scheduler_address()
        if self.check_environment or self.on_environment is not None:
            found = check_cluster(self._client, needs, address)
            if self.on_environment is not None:
                self.on_environment(found.describe())
            if found.problems and self.check_environment:
                raise found.error()
        requirements = Requirements.of(needs, address) if self.check_environment else (
            None)
        ship_code(self._client, needs.bundle, requirements)
        self._requirements = requirements.token if requirements is not None else None

    def open_channel(self, deliver: Deliver | None) -> TaskChannel:
        """Tasks report through Dask's event log to a topic of this run."""
        self._check_started()
        # Results move between processes unless the cluster lives in this one.
        crosses = not self._scheduler_address().startswith("inproc://")
        if deliver is None:
            return _DaskChannel(None, crosses, self._requirements)
        self._topic = f"nbflow-{uuid.uuid4().hex}"
        topic = self._topic

        def handler(event: tuple[float, Any]) -> None:
            record = tuple(event[1])
            if record[2] == "Failed":
                record = _with_hint(record)
            deliver(record)

        self._client.subscribe_topic(topic, handler)
        return _DaskChannel(_LogEvent(topic), crosses, self._requirements)

    def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        extra_context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Submit ``fn`` to the cluster; futures among the arguments are resolved."""
        if self._client is None:
            self._check_started()
        key = f"{work_name(fn, extra_context)}-{uuid.uuid4().hex}"
        return self._client.submit(fn, *args, key=key, pure=False, **kwargs)

    def submit_map(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[Any, ...]],
        *,
        extra_context: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """Submit the children of a mapped task with one ``Client.map``: one
        message to the scheduler, arguments shared by all children (the task's
        spec, the channel) pickled once, not once per child.
        """
        if self._client is None:
            self._check_started()
        if not calls:
            return []
        prefix = f"{work_name(fn, extra_context)}-{uuid.uuid4().hex}"
        keys = [f"{prefix}-{i}" for i in range(len(calls))]
        return list(self._client.map(fn, *zip(*calls), key=keys, pure=False))

    def wait(self, futures: Any, *, return_exceptions: bool = False) -> Any:
        """Gather the values of ``futures`` from the cluster.

        With ``return_exceptions=True`` a future that gives no value gives the
        error that explains it (a dead worker, a lost scheduler).
        """
        self._check_started()
        if not return_exceptions:
            return self._client.gather(futures)
        from distributed import Future

        flat: list[Any] = []
        map_nested(lambda f: flat.append(f) if isinstance(f, Future) else None, futures)
        values: dict[Any, Any] = {}
        gather_as_completed(self._client, flat, values)
        address = self._scheduler_address()

        def value(f: Any) -> Any:
            if not isinstance(f, Future):
                return f
            if f.key in values:
                return _with_hint(values[f.key])
            return explain(self._client, f, address)

        return map_nested(value, futures)

    def wait_outcomes(self, futures: Sequence[Any]) -> list[Any]:
        """Gather them as they finish; a failure gives the error that explains it."""
        return list(self.wait(list(futures), return_exceptions=True))

    def collect(
        self,
        futures: list[Any],
        *,
        fetch: Collection[int] = (),
        budget: int | None = None,
        keep_others: bool = True,
    ) -> list[Any]:
        """Wait for the run's task futures; leave successful tasks' values on
        the cluster (``Success`` with a :class:`ClusterResult`), gather the
        states of the others, and those at the positions in ``fetch`` (at
        most ``budget`` bytes of them, by the scheduler's ``nbytes``; the
        largest stay).

        What is gathered is gathered as tasks finish (when ``budget`` is
        given: at the end, sizes known), so it survives a scheduler that dies
        later. Values outside ``fetch`` that will not be read (a temporary
        cluster, or ``keep_others=False``) are released as their tasks
        finish: Dask frees each once the tasks that need it have run.
        """
        self._check_started()
        from distributed import Future

        flat = [f for f in futures if isinstance(f, Future)]
        want = {futures[i].key for i in fetch if isinstance(futures[i], Future)}
        release = not keep_others or self.address is None
        released = self._released

        def stay(f: Any) -> bool:
            if f.key in want:
                return budget is not None and stays(f)
            if not stays(f) or (release and not plain(f)):
                # A Cached or Skipped value the cluster would drop comes home
                # (the next run's cache needs it).
                return False
            if release:
                released.add(f.key)
                f.release()
            return True

        values: dict[Any, Any] = {}
        kept: set[Any] = set()
        gather_as_completed(self._client, flat, values, stay, kept)
        if budget is not None and want:
            self._fetch_within(budget, [f for f in flat if f.key in want and
                                        f.key in kept], values, kept)
        return self._outcomes(futures, values, kept)

    def _fetch_within(
        self, budget: int, futures: list[Any], values: dict[Any, Any], kept: set[Any]
    ) -> None:
        """Gather the smallest of ``futures`` whose sizes add up to ``budget``."""
        known: dict[Any, int] = {}
        with contextlib.suppress(Exception):  # sizes unknown: count them as 0
            known = self._client.nbytes(keys=[f.key for f in futures], summary=False)
        chosen, total = [], 0
        for future in sorted(futures, key=lambda f: known.get(f.key, 0)):
            total += known.get(future.key, 0)
            if total > budget:
                break
            chosen.append(future)
        before = len(values)
        gather_as_completed(self._client, chosen, values)
        if len(values) > before:
            kept.difference_update(values)

    def _outcomes(
        self, futures: list[Any], values: dict[Any, Any], kept: set[Any]
    ) -> list[Any]:
        from distributed import Future

        home = self._home
        assert home is not None
        address = self._scheduler_address()
        now = time.time()
        out: list[Any] = []
        released = self._released
        other = [f for f in futures if isinstance(f, Future) and f.key in kept
                 and f.key not in values and not plain(f)]
        try:
            shell = shells(self._client, other)
        except Exception:  # noqa: BLE001 - the scheduler was lost: plain Success
            shell = {}
        for f in futures:
            if not isinstance(f, Future):
                out.append(f)
            elif f.key in values:
                out.append(_with_hint(values[f.key]))
            elif f.key in released:
                out.append(Success(result=Dropped(f.key, home), timestamp=now))
            elif f.key in shell:
                state = shell[f.key]
                state._result = ClusterResult(f, home)
                out.append(state)
            elif f.key in kept or stays(f):
                # (the second: finished, but the scheduler was lost before its
                # value came home: Success still, its value lost with it)
                out.append(Success(result=ClusterResult(f, home), timestamp=now))
            else:
                out.append(explain(self._client, f, address))
        return out

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
            try:
                self._client.cancel(pending, asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - best effort (a lost scheduler)
                log.debug("Cancelling %d futures failed: %r", len(pending), exc)

    def collect_finished(
        self, futures: list[Any], *, fetch: Collection[int] = ()
    ) -> list[Any]:
        """States of the finished futures (values stay on the cluster but
        those at the positions in ``fetch``, as in :meth:`collect`), None for
        the others.
        """
        from distributed import Future

        values: dict[Any, Any] = {}
        if self._client is not None:
            _catch_up(self._client, [f for f in futures if isinstance(f, Future)])
        want = {futures[i].key for i in fetch if isinstance(futures[i], Future)}
        kept = {f.key for f in futures if isinstance(f, Future)
                and f.status == "finished" and f.key not in want and plain(f)}
        done = [f for f in futures if isinstance(f, Future) and f.status == "finished"
                and f.key not in kept]
        if done and self._client is not None:
            try:
                # By key: gather(errors="skip") drops a list's lost entries,
                # which would shift every later value onto the wrong task.
                gathered = self._client.gather({f.key: f for f in done}, errors="skip")
                values.update((f.key, gathered[f.key]) for f in done
                              if f.status == "finished" and f.key in gathered)
            except Exception as exc:  # noqa: BLE001 - they end Cancelled instead
                log.warning("Results of %d finished tasks were lost while cancelling "
                            "the run: %s", len(done), exc)
        home = self._home
        out: list[Any] = []
        for f in futures:
            if not isinstance(f, Future):
                out.append(f)
            elif f.key in self._released and home is not None:
                out.append(Success(result=Dropped(f.key, home)))
            elif f.key in kept and home is not None:
                out.append(Success(result=ClusterResult(f, home)))
            else:
                out.append(values.get(f.key))
        return out


#: How long a cancelled run waits for the client to hear of tasks the
#: scheduler already holds (the client's event loop may be starved).
_CATCH_UP = 30.0


def _catch_up(client: Any, futures: list[Any]) -> None:
    """Wait until the client knows of every future the scheduler holds in memory.

    The client hears that a task finished a moment after the scheduler does;
    on a loaded machine its dependents can already run meanwhile (a Ctrl-C
    then came while the client still called a finished task pending, and it
    ended Cancelled). Asked only when a run is cancelled.
    """
    from distributed import wait

    pending = [f for f in futures if not f.done()]
    if not pending or not is_connected(client):
        return
    try:
        # Bounded, unlike Client.who_has: the scheduler may be going away.
        who_has = client.sync(client.scheduler.who_has, keys=[f.key for f in pending],
                              callback_timeout=_CATCH_UP)
        held = [f for f in pending if who_has.get(f.key)]
        if held:
            wait(held, timeout=_CATCH_UP)
    except Exception as exc:  # noqa: BLE001 - best effort: they end Cancelled
        log.debug("Asking the scheduler for finished tasks failed: %r", exc)


@dataclasses.dataclass(frozen=True)
class ClientEnvironment:
    """The Python and the installed distributions where the flow is started."""

    #: e.g. ``"3.11.7"``.
    python: str
    #: Each installed distribution's name and version, sorted by name.
    distributions: Mapping[str, str]

    def requirements(self, names: Iterable[str] | None = None) -> list[str]:
        """``name==version`` pins (of ``names`` only, if given) for ``pip install``."""
        def canonical(name: str) -> str:
            return re.sub(r"[-_.]+", "-", name).lower()

        wanted = None if names is None else {canonical(n) for n in names}
        return [f"{n}=={v}" for n, v in self.distributions.items()
                if wanted is None or canonical(n) in wanted]


def client_environment() -> ClientEnvironment:
    """What a ``cluster_class=`` factory builds workers with: this Python and
    these distributions (nbflow's counterpart of Prefect 1's
    ``prefect.context.image``).

    The factory runs where the flow is started (the kernel, ``nbflow run``), so
    it can pin the workers' image or ``pip install`` line to the same versions;
    ``DaskExecutor`` then checks the workers before the first task.

    Returns
    -------
    ClientEnvironment

    Examples
    --------
    >>> env = client_environment()
    >>> env.requirements(["dask"])                      # doctest: +SKIP
    ['dask==2026.8.0']
    >>> def team_cluster(**kwargs):                     # doctest: +SKIP
    ...     pins = client_environment().requirements(["pandas", "dask", "distributed"])
    ...     return KubeCluster(env={"EXTRA_PIP_PACKAGES": " ".join(pins)}, **kwargs)

    """
    import importlib.metadata
    import platform

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in found:
            found[name] = dist.version
    return ClientEnvironment(
        platform.python_version(), dict(sorted(found.items(), key=lambda kv: kv[0].lower())))


def _with_hint(value: Any) -> Any:
    """A failed task's record or state, with a hint when a data file it did
    not find on the worker is here (data files do not travel).
    """
    from nbflow.engine.state import State
    from nbflow.executors._environment import data_file_hint

    if isinstance(value, tuple):  # an event record
        hint = data_file_hint(value[4])
        return value if hint is None else (*value[:4], f"{value[4]} ({hint})", *value[5:])
    if isinstance(value, State) and value.is_failed():
        hint = data_file_hint(value.message)
        if hint is not None and hint not in (value.message or ""):
            value.message = f"{value.message} ({hint})"
    return value


def _expected_workers(kwargs: Mapping[str, Any]) -> int:
    """How many workers ``LocalCluster(**kwargs)`` starts (its own defaults)."""
    from dask.system import CPU_COUNT
    from distributed.deploy.utils import nprocesses_nthreads

    n_workers = kwargs.get("n_workers")
    threads = kwargs.get("threads_per_worker")
    processes = kwargs.get("processes")
    if processes is None:
        from distributed import Nanny

        worker_class = kwargs.get("worker_class")
        processes = worker_class is None or issubclass(worker_class, Nanny)
    if n_workers is not None:
        return int(n_workers)
    if threads is None:
        return int(nprocesses_nthreads()[0]) if processes else 1
    return max(1, CPU_COUNT // int(threads)) if processes else 1


def _to_the_end(close: Callable[..., Any], *args: Any) -> None:
    """Call ``close`` to its end even if Ctrl-C is pressed meanwhile (users
    press it twice: a temporary cluster half shut down leaves its processes
    behind); the interrupt is raised once it is done.
    """
    interrupted = False
    while True:
        try:
            close(*args)
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt


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
