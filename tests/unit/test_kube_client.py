from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from kubernetes.client import Configuration

from egp_operator import kube
from egp_operator.kube import TOKEN_REUSE_SECONDS, KubeClient, KubeError, WatchError


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


# ---- watch streams ----------------------------------------------------------------------------


@pytest.fixture
async def stream_server() -> AsyncIterator[tuple[str, list[bytes | int]]]:
    """A loopback server whose watch answers with what the test puts in the list: byte
    chunks to stream, or a status code to refuse with."""
    answers: list[bytes | int] = []

    async def watch(request: web.Request) -> web.StreamResponse:
        if answers and isinstance(answers[0], int):
            status = {"kind": "Status", "reason": "Forbidden", "message": "cannot watch"}
            return web.json_response(status, status=answers[0])
        response = web.StreamResponse()
        await response.prepare(request)
        for chunk in answers:
            assert isinstance(chunk, bytes)
            await response.write(chunk)
        return response

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/secrets", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", answers
    await runner.cleanup()


async def events_of(url: str) -> list[dict[str, object]]:
    client = KubeClient(Configuration(host=url), max_watches=1)
    try:
        return [e async for e in client.watch("/api/v1/namespaces/ns/secrets", {"watch": "1"})]
    finally:
        await client.aclose()


async def test_watch_events_arrive_whole_however_the_stream_is_cut(
    stream_server: tuple[str, list[bytes | int]],
) -> None:
    url, answers = stream_server
    answers += [b'{"type": "ADD', b'ED", "n": 1}\n\n{"type": "MODIFIED",', b' "n": 2}\n{"n": 3}']

    assert await events_of(url) == [
        {"type": "ADDED", "n": 1},
        {"type": "MODIFIED", "n": 2},
        {"n": 3},
    ]


async def test_a_watch_event_past_the_bound_ends_the_watch(
    stream_server: tuple[str, list[bytes | int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "MAX_WATCH_EVENT_BYTES", 1024)
    url, answers = stream_server
    answers += [b'{"type": "ADDED"}\n', b"x" * 800, b"x" * 800]

    with pytest.raises(WatchError, match="1024 bytes"):
        await events_of(url)


async def test_a_line_that_is_not_json_ends_the_watch(
    stream_server: tuple[str, list[bytes | int]],
) -> None:
    url, answers = stream_server
    answers += [b"<html>\n"]

    with pytest.raises(WatchError, match="not JSON"):
        await events_of(url)


async def test_a_refused_watch_is_a_kube_error_with_the_api_servers_reason(
    stream_server: tuple[str, list[bytes | int]],
) -> None:
    url, answers = stream_server
    answers.append(403)

    with pytest.raises(KubeError) as refused:
        await events_of(url)
    assert (refused.value.status, refused.value.reason) == (403, "Forbidden")
