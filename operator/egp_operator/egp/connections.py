"""One pool of connections to EGP endpoints, shared by every source of the process.

A cycle's `EGPClient` carries the source's key, account and limits, but its connections need
not be its own: sources that reach the same endpoint reuse each other's connections, and their
TLS handshakes, instead of each opening its own every cycle. The key and account travel in each
request's headers, never in the pool, and the pool keeps no cookie. It checks every address it
connects to against the endpoint policy (`transport.GuardedTransport`). A rotated CA file gets a
pool of its own.

Every tenant's sources draw on the pool, so one endpoint may hold only so many of its
connections (`max_connections_per_host`): a tenant whose endpoints hold theirs open until the
request deadline slows its own sources, and the others still find connections free. A request
that finds none free waits at most its pool timeout, and is told it was the operator's
connections that were busy (`transport.PoolWaitTimeout`), not its endpoint that was slow.
"""

from __future__ import annotations

import ssl
from typing import Final

from egp_operator.egp.endpoint import EndpointPolicy
from egp_operator.egp.transport import GuardedTransport

#: Connections open at once over all endpoints; a cycle that finds none free waits for one
#: within its request timeout.
MAX_CONNECTIONS: Final = 64
#: Connections open at once to one endpoint (scheme, host and port), the default of
#: EGP_OPERATOR_MAX_CONNECTIONS_PER_HOST: an eighth of the pool, so that it takes endpoints
#: on eight hosts, all holding theirs, to fill it.
MAX_CONNECTIONS_PER_HOST: Final = 8
#: How long an idle connection is kept for the next cycle of a source of the same endpoint.
KEEPALIVE_SECONDS: Final = 30.0


class SharedConnections:
    def __init__(
        self,
        policy: EndpointPolicy,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_host: int = MAX_CONNECTIONS_PER_HOST,
    ) -> None:
        self._policy = policy
        self._max_connections = max_connections
        self._max_connections_per_host = min(max_connections_per_host, max_connections)
        self._pools: dict[int, tuple[ssl.SSLContext, GuardedTransport]] = {}

    def transport(self, ssl_context: ssl.SSLContext) -> GuardedTransport:
        """The process's pool for this TLS context, for an `EGPClient` to borrow."""
        entry = self._pools.get(id(ssl_context))
        if entry is None or entry[0] is not ssl_context:
            pool = GuardedTransport(
                self._policy,
                ssl_context,
                max_connections=self._max_connections,
                max_connections_per_host=self._max_connections_per_host,
                keepalive_expiry=KEEPALIVE_SECONDS,
            )
            entry = self._pools[id(ssl_context)] = (ssl_context, pool)
        return entry[1]

    async def aclose(self) -> None:
        for _, pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()
