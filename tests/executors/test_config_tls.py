"""A config's TLS paths against a real TLS-only ``dask scheduler`` and worker."""

from __future__ import annotations

import datetime
import html
import ipaddress
import types

import pytest
from _processes import start_scheduler, start_worker, stop, wait_for_workers

from nbflow import Flow, task
from nbflow.errors import ClusterConnectionError
from nbflow.executors.config import ExecutorConfig, inspect_cluster

pytestmark = pytest.mark.slow


def _write_certificates(directory):
    """A CA, and one certificate + key it signed for 127.0.0.1 (server and client)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nbflow test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: directory / name for name in ("ca.pem", "cert.pem", "key.pem")}
    paths["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key.pem"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A TLS-only scheduler and one worker on 127.0.0.1; yields (address, paths)."""
    from distributed import Security

    directory = tmp_path_factory.mktemp("tls-cluster")
    paths = _write_certificates(directory)
    tls_args = (
        "--tls-ca-file",
        paths["ca.pem"],
        "--tls-cert",
        paths["cert.pem"],
        "--tls-key",
        paths["key.pem"],
    )
    scheduler, address = start_scheduler(directory, "--protocol", "tls", *tls_args)
    worker = None
    try:
        assert address.startswith("tls://")
        worker = start_worker(directory, address, *tls_args)
        security = Security(
            tls_ca_file=paths["ca.pem"],
            tls_client_cert=paths["cert.pem"],
            tls_client_key=paths["key.pem"],
            require_encryption=True,
        )
        wait_for_workers(address, 1, security=security)
        yield address, paths
    finally:
        if worker is not None:
            stop(worker)
        stop(scheduler)


def tls_config(address, paths):
    return ExecutorConfig(
        kind="dask",
        cluster="existing",
        address=address,
        tls_ca_file=paths["ca.pem"],
        tls_client_cert=paths["cert.pem"],
        tls_client_key=paths["key.pem"],
    )


@task
def double(x):
    return 2 * x


def test_config_tls_executor_runs_a_flow_on_a_secure_cluster(tls_cluster):
    address, paths = tls_cluster
    config = tls_config(address, paths)
    assert config.problem() is None
    with Flow("secure") as flow:
        result = double(21)
    state = flow.run(executor=config.build())
    assert state.is_successful(), state.message
    assert state.result[result].result == 42
    namespace = {"flow": types.SimpleNamespace()}
    exec(config.code(), namespace)  # the pasted code connects as well
    state = flow.run(executor=namespace["flow"].executor)
    assert state.result[result].result == 42


def test_inspect_cluster_with_the_configs_tls(tls_cluster):
    address, paths = tls_cluster
    config = tls_config(address, paths)
    summary = inspect_cluster(address, timeout=30, client_kwargs=config.client_kwargs())
    assert (summary.workers, summary.threads) == (1, 1)


def test_inspect_cluster_without_tls_files_fails_clearly(tls_cluster):
    address, _ = tls_cluster
    with pytest.raises(ClusterConnectionError) as info:
        inspect_cluster(address, timeout=5)
    message = str(info.value)
    assert message.startswith(f"Could not connect to the Dask scheduler at '{address}'")
    assert message.endswith(
        "give the TLS files (tls_ca_file, tls_client_cert, tls_client_key)."
    )


def test_panel_test_connection_uses_the_tls_paths(tls_cluster):
    from nbflow.widgets import ExecutorPanel

    address, paths = tls_cluster
    panel = ExecutorPanel()
    panel.set(**tls_config(address, paths).to_dict())
    assert panel.problem is None
    summary = panel.test_connection(timeout=30).result(timeout=60)
    assert summary.workers == 1
    assert "1 worker, 1 threads" in html.unescape(panel._connection.value)
    assert "key.pem" in panel.code and "BEGIN" not in panel.code
