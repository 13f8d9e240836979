"""Config fixtures shared by the executor config tests."""

from __future__ import annotations

import pytest

from nbflow.errors import NbflowError
from nbflow.executors.config import ExecutorConfig


def write_pem_files(directory):
    """Three files where TLS paths may point (their contents are never read)."""
    paths = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        (directory / name).write_text("not read by the config\n")
        paths[name] = str(directory / name)
    return paths


def tls(pem_files, **extra):
    """A valid config of a TLS-secured existing cluster."""
    return ExecutorConfig(
        kind="dask",
        cluster="existing",
        address="tls://127.0.0.1:8786",
        tls_ca_file=pem_files["ca.pem"],
        tls_client_cert=pem_files["client.pem"],
        tls_client_key=pem_files["client.key"],
        **extra,
    )


def own_message(call):
    """The message of the NbflowError that ``call()`` raises."""
    with pytest.raises(NbflowError) as info:
        call()
    return str(info.value)
