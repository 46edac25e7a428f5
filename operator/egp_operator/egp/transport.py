"""The connections to EGP endpoints: httpx's interface over aiohttp's pool, connecting only to
addresses the endpoint policy allows (`endpoint.py`).

A name is resolved here and every address it resolves to is checked before aiohttp may connect
(`GuardedResolver`), so that a name re-pointed at a refused address between the URL check and
the connection (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from egp_operator.egp.endpoint import EndpointPolicy, IPAddress, literal_address

#: The size of the pieces a response body is read in, each counted against the page's cap.
_CHUNK: Final = 64 * 1024


class GuardedResolver(AbstractResolver):
    """Resolves a host itself and checks every address before aiohttp may connect to any: the
    addresses checked are the addresses used. aiohttp connects to an IP literal without asking
    a resolver; `EndpointPolicy.check_url` has checked those before any request."""

    def __init__(self, policy: EndpointPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await _resolve(host, port)
        for address in addresses:
            self._policy.check_address(address, host.lower())
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing is held between resolutions."""


async def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise OSError(error.errno, f"cannot resolve {host}: {error.strerror}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = literal_address(str(info[4][0]).split("%", 1)[0])
        if address is not None and address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OSError(f"{host} has no address")
    return addresses


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's interface over aiohttp's connection pool, connecting only to addresses the
    policy allows. aiohttp (kopf's client, already in the process) spends a fraction of
    httpcore's CPU per request (bench/FINDINGS.md section 9). No proxy is used (`trust_env` is
    off), so the address checked is the EGP endpoint's own; no cookie is kept, so one tenant's
    endpoint cannot set what another's requests carry; nothing is decompressed (the client
    refuses any Content-Encoding); and a body not read to its end closes its connection."""

    def __init__(
        self,
        policy: EndpointPolicy,
        ssl_context: ssl.SSLContext,
        *,
        max_connections: int = 10,
        keepalive_expiry: float = 15.0,
    ) -> None:
        self._policy = policy
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        #: Connections opened so far (aiohttp counts none): what shows that they are reused.
        self.connections_opened = 0

    def _open_session(self) -> aiohttp.ClientSession:
        """Made at the first request, inside the event loop, as aiohttp requires."""
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_end.append(self._count_connection)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=self._ssl_context,
                limit=self._max_connections,
                keepalive_timeout=self._keepalive_expiry,
                resolver=GuardedResolver(self._policy),
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            trace_configs=[tracing],
        )

    async def _count_connection(self, *_: object) -> None:
        self.connections_opened += 1

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open_session()
        timeouts = request.extensions.get("timeout", {})
        try:
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=list(request.headers.multi_items()),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                    connect=timeouts.get("pool"),
                ),
            )
        except aiohttp.ConnectionTimeoutError as error:
            raise httpx.ConnectTimeout(str(error), request=request) from None
        except aiohttp.ServerTimeoutError as error:
            raise httpx.ReadTimeout(str(error), request=request) from None
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(str(error), request=request) from None
        except aiohttp.ClientError as error:  # disconnected, or an answer that is not HTTP
            raise httpx.RemoteProtocolError(str(error), request=request) from None
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body as httpx streams it, with aiohttp's errors as httpx's."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except aiohttp.ServerTimeoutError as error:
            raise httpx.ReadTimeout(str(error)) from None
        except aiohttp.ClientError as error:
            raise httpx.ReadError(str(error)) from None

    async def aclose(self) -> None:
        """Back to the pool if it was read to its end, else closed."""
        self._response.release()
