"""Sources reaching the same endpoint share connections across their cycles, and no endpoint
takes more than its share of them: slow endpoints beside a healthy one, on one shared pool."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import pytest

from egp_operator.egp import EGPClient, TransportError
from egp_operator.egp.client import ReadLimits, RetryPolicy, tls_context
from egp_operator.egp.connections import (
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_HOST,
    SharedConnections,
)
from egp_operator.egp.endpoint import EndpointPolicy
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from tests.integration.conftest import ACCOUNT, API_KEY
from tests.integration.hostile_server import (
    EMPTY_PAGE,
    HostileServer,
    RecordedRequest,
    Reply,
    Respond,
    TrickleHead,
)

pytestmark = pytest.mark.timeout(60)


async def test_cycles_of_different_sources_reuse_one_connection() -> None:
    page = {"items": generate_models(3), "has_more": False, "total": 3}
    keys = (API_KEY, "sk-other-team-91c2", API_KEY)  # three cycles, two sources
    connections = SharedConnections(EndpointPolicy())
    context = tls_context(True)
    try:
        with HostileServer(Respond(200, json.dumps(page).encode())) as server:
            for key in keys:
                async with EGPClient(
                    base_url=server.url,
                    api_key=key,
                    account_id=ACCOUNT,
                    transport=connections.transport(context),
                ) as client:
                    listing = await client.list_models()
                    assert len(listing.models) == 3

            assert [request.headers["x-api-key"] for request in server.requests] == list(keys)
            assert server.connections == 1  # closing a client left the pool open
    finally:
        await connections.aclose()


# --- One endpoint's share of the pool ------------------------------------------------------

#: Endpoints that trickle their answers forever, and listings sent to each: more in all than
#: the pool holds, so without a limit per host they would take every connection.
SLOW_HOSTS: Final = 4
LISTINGS_PER_SLOW_HOST: Final = 20
#: Long enough that the slow listings hold their connections until the test ends them.
SLOW_DEADLINE: Final = 30.0
#: What "promptly" means for a healthy endpoint's listing beside them (it takes ~10 ms).
PROMPTLY: Final = 2.0


async def until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll `condition` until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"still not so after {within}s"
        await asyncio.sleep(0.01)


def client_of(
    url: str,
    connections: SharedConnections,
    *,
    timeout: float = 10.0,
    deadline: float = SLOW_DEADLINE,
    api_key: str = API_KEY,
) -> EGPClient:
    return EGPClient(
        base_url=url,
        api_key=api_key,
        account_id=ACCOUNT,
        timeout=timeout,
        retry=RetryPolicy(max_retries=0),
        limits=ReadLimits(request_deadline=deadline),
        transport=connections.transport(tls_context(True)),
    )


@contextlib.asynccontextmanager
async def listing_in_background(clients: list[EGPClient]) -> AsyncIterator[None]:
    """Each client lists in a task of its own; leaving the block ends them all."""
    tasks = [asyncio.create_task(client.list_models()) for client in clients]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_slow_endpoints_cannot_take_the_connections_a_healthy_one_needs(
    egp_server: FakeEGPServer,
) -> None:
    egp_server.add_models(generate_models(3))
    connections = SharedConnections(EndpointPolicy())
    try:
        with contextlib.ExitStack() as servers:
            slow = [servers.enter_context(HostileServer(TrickleHead())) for _ in range(SLOW_HOSTS)]
            clients = [
                client_of(server.url, connections)
                for server in slow
                for _ in range(LISTINGS_PER_SLOW_HOST)
            ]
            assert len(clients) > MAX_CONNECTIONS
            async with listing_in_background(clients):
                held = SLOW_HOSTS * MAX_CONNECTIONS_PER_HOST
                await until(lambda: sum(server.connections for server in slow) >= held)

                started = time.monotonic()
                async with asyncio.timeout(PROMPTLY):
                    listing = await client_of(egp_server.url, connections).list_models()
                elapsed = time.monotonic() - started

                assert len(listing.models) == 3
                print(f"POOL healthy listing beside {len(clients)} trickling: {elapsed:.3f} s")
                assert [server.connections for server in slow] == [
                    MAX_CONNECTIONS_PER_HOST
                ] * SLOW_HOSTS, "each slow endpoint holds its share of the pool, no more"
    finally:
        await connections.aclose()


async def test_a_wait_for_a_busy_endpoints_connections_is_reported_as_that() -> None:
    connections = SharedConnections(EndpointPolicy())
    pool_wait = 0.5
    try:
        with HostileServer(TrickleHead()) as slow:
            holders = [client_of(slow.url, connections) for _ in range(MAX_CONNECTIONS_PER_HOST)]
            async with listing_in_background(holders):
                await until(lambda: slow.connections == MAX_CONNECTIONS_PER_HOST)
                late = client_of(slow.url, connections, timeout=pool_wait, deadline=5.0)

                with pytest.raises(TransportError) as raised:
                    await late.list_models()

                assert raised.value.message == (
                    f"no connection to 127.0.0.1:{slow.port} was free within {pool_wait:g}s:"
                    f" all {MAX_CONNECTIONS_PER_HOST} of the operator's connections to it are"
                    " busy (EGP_OPERATOR_MAX_CONNECTIONS_PER_HOST)"
                )
                assert late.status_counts == {"transport_error": 1}
                assert slow.connections == MAX_CONNECTIONS_PER_HOST, "it never connected"
    finally:
        await connections.aclose()


async def test_a_wait_for_a_full_pool_names_the_pool(egp_server: FakeEGPServer) -> None:
    connections = SharedConnections(EndpointPolicy(), max_connections=2)
    try:
        with HostileServer(TrickleHead()) as first, HostileServer(TrickleHead()) as second:
            holders = [client_of(first.url, connections), client_of(second.url, connections)]
            async with listing_in_background(holders):
                await until(lambda: first.connections + second.connections == 2)

                with pytest.raises(TransportError) as raised:
                    await client_of(egp_server.url, connections, timeout=0.5).list_models()

                assert raised.value.message.endswith(
                    "was free within 0.5s: all 2 of the operator's connections, to every"
                    " endpoint, are busy"
                )
    finally:
        await connections.aclose()


async def test_the_wait_for_a_connection_does_not_eat_into_the_request_deadline() -> None:
    """A request queued behind others' slow requests to its host still gives its endpoint the
    whole deadline, counted from when it has a connection."""
    hold, answer_after, deadline = 1.5, 1.0, 2.0
    served = itertools.count()

    async def slow_then_late(request: RecordedRequest, reply: Reply) -> None:
        if next(served) < MAX_CONNECTIONS_PER_HOST:
            await TrickleHead()(request, reply)  # the holders, until their deadline
        else:
            await asyncio.sleep(answer_after)  # slow, but within the deadline
            await reply.respond(200, EMPTY_PAGE)

    connections = SharedConnections(EndpointPolicy())
    try:
        with HostileServer(slow_then_late) as server:
            holders = [
                client_of(server.url, connections, deadline=hold)
                for _ in range(MAX_CONNECTIONS_PER_HOST)
            ]
            async with listing_in_background(holders):
                await until(lambda: server.connections == MAX_CONNECTIONS_PER_HOST)
                started = time.monotonic()

                listing = await client_of(server.url, connections, deadline=deadline).list_models()

                elapsed = time.monotonic() - started
                assert listing.models == ()
                assert elapsed > deadline, "it waited for the pool, then had its whole deadline"
    finally:
        await connections.aclose()
