"""One pool of connections to EGP endpoints, shared by every source of the process.

A client is made per sync cycle (it carries the source's key, account and limits), but its
connections need not be: sources that reach the same endpoint reuse each other's connections,
and their TLS handshakes, instead of each opening its own every cycle. The pool checks every
address it connects to against the endpoint policy, as a client's own would
(`endpoint.GuardedTransport`). A rotated CA file gets a pool of its own.
"""

from __future__ import annotations

import ssl
from typing import Final

import httpx

from egp_operator.egp.endpoint import EndpointPolicy, GuardedTransport

#: Connections open at once over all endpoints; a cycle that finds none free waits for one
#: within its request timeout.
MAX_CONNECTIONS: Final = 64
#: How long an idle connection is kept for the next cycle of a source of the same endpoint.
KEEPALIVE_SECONDS: Final = 30.0


class _Borrowed(httpx.AsyncBaseTransport):
    """The shared pool as one client sees it: closing the client leaves the pool open."""

    def __init__(self, pool: GuardedTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        """The pool is the process's: SharedConnections.aclose closes it."""


class SharedConnections:
    def __init__(self, policy: EndpointPolicy) -> None:
        self._policy = policy
        self._pools: dict[int, tuple[ssl.SSLContext, GuardedTransport]] = {}

    def transport(self, ssl_context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
        """A transport over the pool for this TLS context, for one client."""
        entry = self._pools.get(id(ssl_context))
        if entry is None or entry[0] is not ssl_context:
            pool = GuardedTransport(
                self._policy,
                ssl_context,
                max_connections=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_SECONDS,
            )
            entry = self._pools[id(ssl_context)] = (ssl_context, pool)
        return _Borrowed(entry[1])

    def open_connections(self) -> int:
        """Connections in the pools now, idle or in use."""
        return sum(pool.open_connections() for _, pool in self._pools.values())

    async def aclose(self) -> None:
        for _, pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()
