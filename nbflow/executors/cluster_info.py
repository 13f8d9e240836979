"""What an existing Dask cluster has: ``inspect_cluster`` for "Test connection".

Given the flow's task functions it also says what ``DaskExecutor`` would say
before a run: the workers' Python, and the packages the flow uses that they
lack or have in another major/minor version.

``distributed`` is imported when a cluster is inspected, not before.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from nbflow.errors import ClusterConnectionError

__all__ = ["ClusterSummary", "inspect_cluster"]


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
        with warnings.catch_warnings():
            # Not distributed's table of versions: the summary says what matters.
            warnings.simplefilter("ignore", VersionMismatchWarning)
            client: Any = Client(
                address, timeout=timeout, set_as_default=False,
                **dict(client_kwargs or {})
            )
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
