"""A secure cluster: TLS with client certificates, or no connection at all."""

from __future__ import annotations

import time

import pytest
from _certs import Authority
from _faults import add, inc
from _processes import start_scheduler, start_worker, stop, wait_for_workers

from nbflow import Flow
from nbflow.errors import ClusterConnectionError
from nbflow.executors import DaskExecutor

pytestmark = pytest.mark.slow

#: A refused connection must be reported this soon (it takes about a second).
BOUND = 30


def _tls_args(ca_file: str, cert: tuple[str, str]) -> tuple[str, ...]:
    return ("--tls-ca-file", ca_file, "--tls-cert", cert[0], "--tls-key", cert[1])


def _security(ca_file: str, cert: tuple[str, str]):
    from distributed import Security

    return Security(tls_ca_file=ca_file, tls_client_cert=cert[0],
                    tls_client_key=cert[1], require_encryption=True)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A scheduler and a worker that speak only TLS and require a certificate
    of their CA; yields (address, the CA, a client certificate).
    """
    directory = tmp_path_factory.mktemp("tls-cluster")
    ca = Authority(directory, "ca")
    server, client = ca.issue("cluster"), ca.issue("client")
    args = _tls_args(ca.ca_file, server)
    scheduler, address = start_scheduler(directory, "--protocol", "tls", *args)
    worker = None
    try:
        worker = start_worker(directory, address, "--no-nanny", *args, name="tls")
        wait_for_workers(address, 1, security=_security(ca.ca_file, client))
        yield address, ca, client
    finally:
        if worker is not None:
            stop(worker)
        stop(scheduler)


def test_tls_cluster_runs_with_client_certificate(tls_cluster):
    address, ca, client = tls_cluster
    assert address.startswith("tls://127.0.0.1:")
    with Flow("secure") as flow:
        total = add(inc(1), inc(2))
    executor = DaskExecutor(address=address,
                            client_kwargs={"security": _security(ca.ca_file, client)})
    state = flow.run(executor=executor)
    assert state.is_successful(), state.message
    assert state.result[total].result == 5


def _refused(address: str, **client_kwargs) -> tuple[ClusterConnectionError, float]:
    with Flow("refused") as flow:
        inc(1)
    started = time.monotonic()
    with pytest.raises(ClusterConnectionError) as info:
        flow.run(executor=DaskExecutor(address=address, client_kwargs=client_kwargs))
    return info.value, time.monotonic() - started


def test_tls_cluster_refuses_client_without_certificate(tls_cluster):
    address, ca, _ = tls_cluster
    error, took = _refused(address)
    message = str(error)
    assert address in message and "\n" not in message, message
    assert "TLS" in message, message
    assert took < BOUND


@pytest.mark.parametrize("credentials", ["other-authority", "no-client-certificate"])
def test_tls_cluster_refuses_wrong_credentials(tls_cluster, tmp_path, credentials):
    from distributed import Security

    address, ca, _ = tls_cluster
    if credentials == "other-authority":
        other = Authority(tmp_path, "intruder")
        security = _security(other.ca_file, other.issue("client"))
    else:
        security = Security(tls_ca_file=ca.ca_file, require_encryption=True)
    error, took = _refused(address, security=security)
    message = str(error)
    assert address in message and "\n" not in message, message
    assert took < BOUND
