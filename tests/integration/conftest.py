"""Fixtures that run the EGP client against the local EGP server over real HTTP on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from egp_operator.egp import EGPClient
from egp_operator.egp.client import RetryPolicy
from egp_operator.egp.rate_limits import RateLimits
from egp_testbench.fake_egp import FakeEGPServer

API_KEY = "sk-test-5f3c9a1e7d2b4c60"
ACCOUNT = "acct-alpha"


class RecordedSleep:
    """Stands in for asyncio.sleep inside the client so retry delays are asserted, not waited;
    `clock` is the time those sleeps make pass, for the rate limits' holds."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 0.0

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def egp_server() -> Iterator[FakeEGPServer]:
    with FakeEGPServer(api_key=API_KEY, account_id=ACCOUNT) as server:
        yield server


@pytest.fixture
def sleeps() -> RecordedSleep:
    return RecordedSleep()


@contextlib.asynccontextmanager
async def client_maker(**defaults: Any) -> AsyncIterator[Callable[..., EGPClient]]:
    """Makes EGPClients from `defaults` and per-call overrides, and closes them all after."""
    clients: list[EGPClient] = []

    def make(**overrides: Any) -> EGPClient:
        client = EGPClient(**(defaults | overrides))
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def make_client(
    egp_server: FakeEGPServer, sleeps: RecordedSleep
) -> AsyncIterator[Callable[..., EGPClient]]:
    async with client_maker(
        base_url=egp_server.url,
        api_key=API_KEY,
        account_id=ACCOUNT,
        retry=RetryPolicy(max_retries=3),
        sleep=sleeps,
        rate_limits=RateLimits(clock=sleeps.clock),
        timeout=10.0,
    ) as make:
        yield make
