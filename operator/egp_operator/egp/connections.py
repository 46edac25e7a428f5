"""One HTTP client for EGP endpoints, shared by every source of the process.

A cycle's `EGPClient` carries the source's key, account and limits, but its HTTP client and
connections need not be its own: sources that reach the same endpoint reuse each other's
connections, and their TLS handshakes, and no cycle pays for building a client (bench/FINDINGS.md
section 9). The key and account travel in each request's headers, never in the shared client,
and the shared client keeps no cookie. Its pool checks every address it connects to against the
endpoint policy (`endpoint.GuardedTransport`). A rotated CA file gets a client of its own.
"""

from __future__ import annotations

import ssl
from typing import Final

import httpx

from egp_operator.egp.client import http_client
from egp_operator.egp.endpoint import EndpointPolicy, GuardedTransport

#: Connections open at once over all endpoints; a cycle that finds none free waits for one
#: within its request timeout.
MAX_CONNECTIONS: Final = 64
#: How long an idle connection is kept for the next cycle of a source of the same endpoint.
KEEPALIVE_SECONDS: Final = 30.0


class SharedConnections:
    def __init__(self, policy: EndpointPolicy) -> None:
        self._policy = policy
        self._clients: dict[int, tuple[ssl.SSLContext, GuardedTransport, httpx.AsyncClient]] = {}

    def client(self, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
        """The process's HTTP client for this TLS context, for an `EGPClient` to borrow."""
        entry = self._clients.get(id(ssl_context))
        if entry is None or entry[0] is not ssl_context:
            transport = GuardedTransport(
                self._policy,
                ssl_context,
                max_connections=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_SECONDS,
            )
            entry = self._clients[id(ssl_context)] = (
                ssl_context,
                transport,
                http_client(transport),
            )
        return entry[2]

    def connections_opened(self) -> int:
        """Connections opened so far, over every client."""
        return sum(transport.connections_opened for _, transport, _ in self._clients.values())

    async def aclose(self) -> None:
        for _, _, client in self._clients.values():
            await client.aclose()
        self._clients.clear()
