"""The Dask dashboard link of a ``DaskExecutor``, as the user's browser can open it.

Two fixes of the link ``distributed`` reports:

- A temporary ``LocalCluster`` with ``processes=False`` talks over inproc://,
  so distributed names the machine's network address in the link, while
  nbflow binds the dashboard to 127.0.0.1: the link then says 127.0.0.1.
- On a JupyterHub (Binder) the kernel's ``127.0.0.1:PORT`` is not reachable
  from the user's browser; jupyter-server-proxy serves it under
  ``{JUPYTERHUB_SERVICE_PREFIX}proxy/PORT/``.

Standard library only at import time.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

__all__ = ["dashboard_link", "hub_dashboard_link"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})


def dashboard_link(client: Any, cluster: Any, cluster_kwargs: dict[str, Any]) -> str | None:
    """The dashboard link of ``client``, fixed as the module docstring says.

    Parameters
    ----------
    client : distributed.Client
    cluster : Cluster or None
        The temporary cluster the executor started (None for an existing one).
    cluster_kwargs : dict
        The executor's ``cluster_kwargs`` (a ``dashboard_address`` given there
        is left alone).

    Returns
    -------
    str or None

    """
    link: str | None = client.dashboard_link
    if link and cluster is not None and "dashboard_address" not in cluster_kwargs:
        from distributed import LocalCluster

        address = getattr(cluster, "scheduler_address", "")
        if isinstance(cluster, LocalCluster) and address.startswith("inproc://"):
            parts = urllib.parse.urlsplit(link)
            if parts.port:
                link = parts._replace(netloc=f"127.0.0.1:{parts.port}").geturl()
    return hub_dashboard_link(link)


def hub_dashboard_link(link: str | None) -> str | None:
    """Return ``link`` through jupyter-server-proxy when running on a JupyterHub.

    A dashboard on this machine (a loopback host, as nbflow's temporary
    clusters have) becomes ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}{path}``
    when ``JUPYTERHUB_SERVICE_PREFIX`` is set. Any other link is returned as
    given: a remote cluster's (the proxy cannot reach it) and one that
    ``distributed.dashboard.link`` already made relative or proxied.

    Parameters
    ----------
    link : str or None
        The link distributed reports, e.g. ``"http://127.0.0.1:8787/status"``.

    Returns
    -------
    str or None

    Examples
    --------
    >>> import os
    >>> os.environ["JUPYTERHUB_SERVICE_PREFIX"] = "/user/ada/"
    >>> hub_dashboard_link("http://127.0.0.1:8787/status")
    '/user/ada/proxy/8787/status'
    >>> del os.environ["JUPYTERHUB_SERVICE_PREFIX"]

    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not prefix or not link:
        return link
    parts = urllib.parse.urlsplit(link)
    try:
        port = parts.port
    except ValueError:  # not a port number: not a link distributed made
        return link
    if parts.scheme not in ("http", "https") or parts.hostname not in _LOOPBACK or not port:
        return link
    query = f"?{parts.query}" if parts.query else ""
    return f"{prefix.rstrip('/')}/proxy/{port}{parts.path or '/status'}{query}"
