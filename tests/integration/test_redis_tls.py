"""`REDIS_URL=rediss://…` (SPEC §10): the hot path's lean connection speaks TLS with the same
URL options as redis-py (`ssl_ca_certs`, `ssl_cert_reqs`, `ssl_certfile`/`ssl_keyfile`), so a
Redis whose certificate comes from a private CA serves activations, not only the admin API.

A TLS-only redis-server with a CA and a server certificate made here, from Debian's
redis-server (built with TLS; installed with apt-get when the machine has none).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import RawTestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from activation.config import Settings
from activation.runtime import open_resources, public_api
from activation.store.lean_redis import LeanScriptClient
from fraud.admin_app import create_admin_app
from tests.conftest import _clean
from tests.integration.helpers import activation_body, create_license
from tests.integration.receivers import free_port
from tests.integration.servers import own_redis_server, redis_server_has_tls

ECHO = "return {KEYS[1], ARGV[1]}"


@pytest.fixture(scope="module", autouse=True)
def tls_capable_redis_server() -> None:
    """Debian's redis-server is built with TLS (installed when missing, tests/debian.py)."""
    if not redis_server_has_tls():
        pytest.fail("this machine's redis-server is built without TLS")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    extension: x509.ExtensionType,
    *,
    critical: bool,
) -> x509.Certificate:
    """A day-long certificate for `key` under `subject`, signed by `issuer`."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(extension, critical=critical)
        .sign(issuer_key, hashes.SHA256())
    )


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for 127.0.0.1, server key), all PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(
        "test CA",
        ca_key,
        "test CA",
        ca_key,
        x509.BasicConstraints(ca=True, path_length=None),
        critical=True,
    )
    server = _certificate(
        "127.0.0.1",
        server_key,
        "test CA",
        ca_key,
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        critical=False,
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, CA file) of a TLS-only redis-server that does not ask for client certificates."""
    ca, certificate, key = _certificates(tmp_path)
    port = free_port()
    with own_redis_server(
        tmp_path / "redis",
        *("--port", "0", "--tls-port", str(port)),
        *("--tls-cert-file", str(certificate), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"),
        port=port,
    ):
        yield port, ca


async def test_lean_client_verifies_with_the_urls_ca(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    client = LeanScriptClient(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", ECHO)
    try:
        assert await client.evalsha(["k"], ["v"]) == [b"k", b"v"]
    finally:
        await client.aclose()
    # Without the CA the certificate is refused (no silent fallback to an unverified link).
    untrusting = LeanScriptClient(f"rediss://127.0.0.1:{port}/0", ECHO, timeout=1.0)
    try:
        with pytest.raises(OSError):
            await untrusting.evalsha(["k"], ["v"])
    finally:
        await untrusting.aclose()


async def test_activations_over_tls(
    settings: Settings,
    tls_redis: tuple[int, Path],
    aiohttp_client: Any,
    admin_headers: dict[str, str],
) -> None:
    port, ca = tls_redis
    configured = dataclasses.replace(
        settings, redis_url=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    )
    await _clean(configured)
    async with open_resources(configured) as resources:
        admin = await aiohttp_client(create_admin_app(resources))
        public = await aiohttp_client(RawTestServer(public_api(resources).handle))
        key = (await create_license(admin, admin_headers))["key"]
        answer = await public.post("/v1/activations", json=activation_body(key))
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["code"] == "VALID"
