"""Fixtures for the compliance tests: keys made once per session, key files, a loopback DNS server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.compliance.verifiers import OpendkimVerifier, start_port53_dns
from tests.support.dnsserver import DnsTestServer


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="session")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    """Two RSA-2048 keys (generating one costs ~100 ms, so once per session)."""
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


@pytest.fixture(scope="session")
def ed25519_keys() -> list[ed25519.Ed25519PrivateKey]:
    return [ed25519.Ed25519PrivateKey.generate() for _ in range(2)]


@pytest.fixture
def key_file(tmp_path: Path):
    """write(key, name) -> path of a 0600 PEM file holding `key`."""
    def write(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, name: str) -> str:
        path = tmp_path / name
        path.write_bytes(pem(key))
        os.chmod(path, 0o600)
        return str(path)
    return write


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    server = DnsTestServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def opendkim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpendkimVerifier]:
    """opendkim-testmsg reading keys from a DNS server of ours (skips where that cannot be set up)."""
    server, reason = start_port53_dns()
    if server is None:
        pytest.skip(reason)
    try:
        yield OpendkimVerifier(server, tmp_path_factory.mktemp("opendkim"))
    finally:
        server.stop()
