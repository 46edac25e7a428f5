"""TLS verification is on by default: a certificate EGP's client cannot verify is refused."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from egp_operator.egp import EGPClient, TransportError
from egp_operator.egp.client import RetryPolicy
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from tests.integration.conftest import ACCOUNT, API_KEY


def _self_signed_certificate(cert: Path, key: Path) -> None:
    """A new self-signed certificate for 127.0.0.1: its own CA."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def https_egp(tmp_path: Path) -> Iterator[tuple[FakeEGPServer, Path]]:
    """A local EGP server on HTTPS with a self-signed certificate for 127.0.0.1."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    _self_signed_certificate(cert, key)
    server = FakeEGPServer(api_key=API_KEY, account_id=ACCOUNT, tls=(cert, key))
    with server:
        server.add_models(generate_models(2))
        yield server, cert


async def test_an_unverifiable_certificate_is_refused_by_default(
    https_egp: tuple[FakeEGPServer, Path],
) -> None:
    server, _ = https_egp
    client = EGPClient(
        base_url=server.url, api_key=API_KEY, account_id=ACCOUNT, retry=RetryPolicy(max_retries=0)
    )
    async with client:
        with pytest.raises(TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await client.list_models()


async def test_a_trusted_ca_file_makes_it_work(https_egp: tuple[FakeEGPServer, Path]) -> None:
    server, cert = https_egp
    async with EGPClient(
        base_url=server.url, api_key=API_KEY, account_id=ACCOUNT, verify=str(cert)
    ) as client:
        listing = await client.list_models()

    assert len(listing.models) == 2


async def test_a_rotated_ca_file_is_trusted_without_a_restart(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    for generation in range(2):
        cert, key = tmp_path / f"tls-{generation}.crt", tmp_path / f"tls-{generation}.key"
        _self_signed_certificate(cert, key)
        ca_file.write_bytes(cert.read_bytes())  # the CA file is rewritten in place
        with FakeEGPServer(api_key=API_KEY, account_id=ACCOUNT, tls=(cert, key)) as server:
            server.add_models(generate_models(1))
            async with EGPClient(
                base_url=server.url, api_key=API_KEY, account_id=ACCOUNT, verify=str(ca_file)
            ) as client:
                listing = await client.list_models()
        assert len(listing.models) == 1
