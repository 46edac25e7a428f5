"""The /metrics server over real HTTP and TLS on loopback: what a caller without a token, with
a refused one and with an allowed one gets, what a flood is told, and a renewed certificate
served without a restart. The decisions come from a scripted reviewer here; the real
TokenReview and SubjectAccessReview are asked in tests/e2e/test_install.py."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from egp_operator import metrics
from egp_operator.metrics_server import MetricsGate, MetricsServer
from egp_testbench.processes import free_port
from tests.unit.test_metrics_gate import READER, STRANGER, Reviewer

Start = Callable[..., Coroutine[Any, Any, MetricsServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Starts MetricsServers on free loopback ports; closes them after the test."""
    started: list[MetricsServer] = []

    async def starting(gate: MetricsGate | None, **tls: str) -> MetricsServer:
        server = MetricsServer("127.0.0.1", free_port(), gate, **tls)
        await server.start()
        started.append(server)
        return server

    yield starting
    for server in started:
        await server.aclose()


def url(server: MetricsServer, path: str = "/metrics", scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.port}{path}"


async def get(address: str, token: str | None = None, **options: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10, **options) as client:
        return await client.get(address, headers=headers)


async def test_only_a_token_the_reviewer_allows_reads_the_metrics(start: Start) -> None:
    metrics.KUBE_REQUESTS.labels("GET").inc(0)  # a family with a sample, whatever ran before
    reviewer = Reviewer()
    server = await start(MetricsGate(reviewer))

    anonymous = await get(url(server))
    stranger = await get(url(server), STRANGER)
    reader = await get(url(server), READER)

    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert "egp_operator" not in anonymous.text
    assert stranger.status_code == 403
    assert "egp_operator" not in stranger.text
    assert reader.status_code == 200
    assert reader.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert reader.headers["Content-Encoding"] == "gzip"  # httpx asks for it, as Prometheus does
    assert "egp_operator_kubernetes_requests_total" in reader.text
    assert reviewer.asked == [STRANGER, READER]
    # Another path costs no review.
    assert (await get(url(server, "/metrics/../healthz"), READER)).status_code == 404
    assert (await get(url(server, "/"), "another")).status_code == 404
    assert reviewer.asked == [STRANGER, READER]


async def test_a_caller_past_the_review_budget_is_told_when_to_come_back(start: Start) -> None:
    server = await start(MetricsGate(Reviewer(), burst=0, rate=0))

    answer = await get(url(server), READER)

    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "1"


async def test_openmetrics_is_served_to_who_asks_for_it(start: Start) -> None:
    server = await start(MetricsGate(Reviewer()))

    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(
            url(server),
            headers={
                "Authorization": f"Bearer {READER}",
                "Accept": "application/openmetrics-text; version=1.0.0",
            },
        )

    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")


async def test_with_auth_off_anyone_reads_the_metrics(start: Start) -> None:
    server = await start(None)

    assert (await get(url(server))).status_code == 200


def certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    made = subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1", "-subj", f"/CN={name}"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return cert, key


async def served_certificate(server: MetricsServer, trusted: Path) -> httpx.Response:
    """A scrape over a new TLS connection that trusts only `trusted`."""
    context = ssl.create_default_context(cafile=str(trusted))
    return await get(url(server, scheme="https"), READER, verify=context)


async def test_over_tls_a_renewed_certificate_is_served_without_a_restart(
    start: Start, tmp_path: Path
) -> None:
    first, second = certificate(tmp_path, "first"), certificate(tmp_path, "second")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(first[0], cert)
    shutil.copy(first[1], key)
    server = await start(MetricsGate(Reviewer()), cert_file=str(cert), key_file=str(key))

    assert (await served_certificate(server, first[0])).status_code == 200
    with pytest.raises(httpx.TransportError):
        await get(url(server), READER)  # plain HTTP is not served

    # A renewal written half-way (the new certificate, the old key) is not taken ...
    shutil.copy(second[0], cert)
    assert server.reload_certificate() is False
    assert (await served_certificate(server, first[0])).status_code == 200
    # ... the whole of it is, by the next connection.
    shutil.copy(second[1], key)
    assert server.reload_certificate() is True
    assert (await served_certificate(server, second[0])).status_code == 200
    with pytest.raises(httpx.ConnectError):
        await served_certificate(server, first[0])
    assert server.reload_certificate() is False  # unchanged since
