"""An existing Dask cluster: whether a Dask scheduler answers at an address
(``probe_scheduler``, before any ``Client`` is made) and what it has
(``inspect_cluster`` for "Test connection").

Given the flow's task functions it also says what ``DaskExecutor`` would say
before a run: the workers' Python, and the packages the flow uses that they
lack or have in another major/minor version.

``distributed`` is imported when a cluster is probed or inspected, not before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from nbflow.errors import ClusterConnectionError

__all__ = ["ClusterSummary", "inspect_cluster", "probe_scheduler"]

#: Seconds past the connect timeout that the handshake may take.
_HANDSHAKE_GRACE = 2.0


def probe_scheduler(
    address: str, *, timeout: float, client_kwargs: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`ClusterConnectionError` if something answers at ``address``
    but not as a Dask scheduler; return if a scheduler completed the handshake.

    ``distributed.Client`` waits for the handshake without a deadline, so a
    silent port (a dashboard, any quiet service) hangs it for minutes, and an
    HTTP server's reply is read as a frame length (``MemoryError: Unable to
    allocate 3.07 EiB``). The probe opens one comm with Dask's own ``connect``
    (every protocol: tcp, tls, ws, ucx), bounded by ``timeout``. Errors of
    reaching the address (``OSError``, and the ``TypeError`` of a tls://
    address without certificates) are left to the caller's message.
    """
    if address.startswith("inproc://"):
        return  # in this process: distributed fails at once if it is not there
    from distributed.comm.core import connect
    from distributed.security import Security

    security = (client_kwargs or {}).get("security")
    if isinstance(security, dict):
        security = Security(**security)
    elif security is None:
        security = Security()
    if not isinstance(security, Security):
        return  # security=True and the like: left to distributed
    args = security.get_connection_args("client")
    deadline = timeout + _HANDSHAKE_GRACE

    async def handshake() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=timeout, **args), deadline)
        await comm.close()

    outcome: list[BaseException | None] = []

    def probe() -> None:
        # A thread of its own: the caller may be inside a running event loop
        # (a Jupyter kernel), where asyncio.run is refused.
        try:
            asyncio.run(handshake())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=probe, name="nbflow-probe-scheduler", daemon=True)
    thread.start()
    thread.join(deadline + 5.0)
    error = outcome[0] if outcome else TimeoutError()
    if error is None:
        return
    if isinstance(error, TimeoutError) and not str(error):
        # Our own deadline: the connection was accepted, no handshake came.
        raise ClusterConnectionError(
            f"Could not connect to the Dask scheduler at {address!r}: something "
            "there accepted the connection but did not answer as a Dask scheduler "
            f"within {deadline:g} s (a dashboard or another service?); give the address `dask scheduler` prints, "
            "e.g. 'tcp://HOST:8786'."
        ) from None
    if isinstance(error, (OSError, TypeError)):
        raise error
    raise ClusterConnectionError(
        f"Could not connect to the Dask scheduler at {address!r}: something "
        f"there answered, but not as a Dask scheduler ({type(error).__name__}); give the address `dask scheduler` prints, "
        "e.g. 'tcp://HOST:8786'."
    ) from None


@dataclasses.dataclass(frozen=True)
class ClusterSummary:
    """The workers, threads and memory (bytes) of a Dask cluster."""

    address: str
    workers: int
    threads: int
    memory: int
    #: The workers' Python (e.g. ``"3.11"``); "" when there are no workers.
    python: str = ""
    #: What the flow uses that the workers lack or have in another version,
    #: e.g. ``("missing on 1 worker: pandas (cell 'clean')",)``.
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line, e.g. ``"2 workers, 4 threads, 7.63 GiB memory, Python 3.11;
        missing on 1 worker: pandas (cell 'clean')"``.
        """
        plural = "" if self.workers == 1 else "s"
        text = (
            f"{self.workers} worker{plural}, {self.threads} threads, "
            f"{self.memory / 2**30:.2f} GiB memory"
        )
        if self.python:
            text += f", Python {self.python}"
        return "; ".join([text, *self.problems])


def inspect_cluster(
    address: str,
    *,
    timeout: float = 3.0,
    client_kwargs: Mapping[str, Any] | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> ClusterSummary:
    """Connect to the scheduler at ``address`` and return its cluster's size,
    its workers' Python and what they lack of the packages ``functions`` use.

    The client is not made the default one and is closed before returning.

    Parameters
    ----------
    address : str
        The scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    timeout : float
        Seconds to wait for the connection.
    client_kwargs : Mapping, optional
        Further ``distributed.Client`` keywords, such as ``security``.
    functions : Mapping, optional
        The flow's tasks (name -> callable), whose packages are checked on the
        workers as ``DaskExecutor`` checks them before a run.

    Returns
    -------
    ClusterSummary
        Its workers, threads and total memory.

    Raises
    ------
    ClusterConnectionError
        If the scheduler cannot be reached in time.

    Examples
    --------
    >>> inspect_cluster("tcp://127.0.0.1:8786").describe()  # doctest: +SKIP
    '2 workers, 2 threads, 7.63 GiB memory'

    """
    from distributed import Client
    from distributed.versions import VersionMismatchWarning

    try:
        probe_scheduler(address, timeout=timeout, client_kwargs=client_kwargs)
        with warnings.catch_warnings():
            # Not distributed's table of versions: the summary says what matters.
            warnings.simplefilter("ignore", VersionMismatchWarning)
            client: Any = Client(
                address, timeout=timeout, set_as_default=False,
                **dict(client_kwargs or {})
            )
    except ClusterConnectionError:
        raise
    except (OSError, TimeoutError, TypeError) as exc:
        # distributed raises TypeError for a tls:// address without TLS settings.
        hint = (
            "give the TLS files (tls_ca_file, tls_client_cert, tls_client_key)"
            if address.startswith("tls://")
            else "check that `dask scheduler` runs there and is reachable"
        )
        raise ClusterConnectionError(
            f"Could not connect to the Dask scheduler at {address!r} ({exc}); {hint}."
        ) from exc
    try:
        workers = list(client.scheduler_info(n_workers=-1)["workers"].values())
        python = ""
        problems: tuple[str, ...] = ()
        if workers:
            from nbflow.executors._environment import check_cluster, flow_needs

            found = check_cluster(
                client, flow_needs(functions) if functions else None, address)
            python, problems = found.python, found.problems
    finally:
        client.close()
    return ClusterSummary(
        address=address,
        workers=len(workers),
        threads=sum(int(w.get("nthreads") or 0) for w in workers),
        memory=sum(int(w.get("memory_limit") or 0) for w in workers),
        python=python,
        problems=problems,
    )
