from collections.abc import AsyncIterator

import pytest
from kubernetes.client import Configuration

from egp_operator import kube
from egp_operator.kube import TOKEN_REUSE_SECONDS, KubeClient, KubeError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(kube.time, "monotonic", fake)
    return fake


@pytest.fixture
def configuration() -> Configuration:
    configuration = Configuration(host="https://127.0.0.1:6443")
    configuration.api_key = {"authorization": "token-one"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return configuration


@pytest.fixture
async def client(configuration: Configuration) -> AsyncIterator[KubeClient]:
    client = KubeClient(configuration)
    yield client
    await client.aclose()


async def test_a_rotated_token_is_sent_once_the_reuse_time_is_over(
    client: KubeClient, configuration: Configuration, clock: Clock
) -> None:
    assert client._auth_headers() == {"Authorization": "Bearer token-one"}
    configuration.api_key = {"authorization": "token-two"}
    clock.now += TOKEN_REUSE_SECONDS / 2
    assert client._auth_headers() == {"Authorization": "Bearer token-one"}
    clock.now += TOKEN_REUSE_SECONDS / 2
    assert client._auth_headers() == {"Authorization": "Bearer token-two"}


async def test_no_token_sends_no_authorization_header(
    client: KubeClient, configuration: Configuration
) -> None:
    configuration.api_key = {}
    assert client._auth_headers() == {}


async def test_an_api_server_that_does_not_answer_is_a_kube_error() -> None:
    configuration = Configuration(host="http://127.0.0.1:9")  # the discard port: refused
    client = KubeClient(configuration)
    try:
        with pytest.raises(KubeError) as raised:
            await client.get("/api/v1/namespaces/default/secrets/x")
    finally:
        await client.aclose()

    assert (raised.value.status, raised.value.reason) == (0, "Unavailable")
