"""The connections to EGP endpoints: httpx's interface over aiohttp's pool, connecting only to
addresses the endpoint policy allows (`endpoint.py`).

A name is resolved here and every address it resolves to is checked before aiohttp may connect
(`GuardedResolver`), so that a name re-pointed at a refused address between the URL check and
the connection (DNS rebinding) is refused too.

Every byte a connection receives for a request is counted against that request's
`ByteBudget`, at the protocol, before aiohttp parses it: interim (1xx) answers, the status line
and headers, chunk framing and extensions, trailers and the body. Past the budget the
connection is aborted, so what a server can make the operator parse, and spend CPU on, is
bounded by the budget whatever it sends. The pool has a limit per endpoint host as well as in
all, so that one tenant's slow endpoints cannot hold every connection; a request that finds
none free waits a bounded time and is told so (`PoolWaitTimeout`), apart from the endpoint's
own timeouts. Every error raised here is worded by this module (`OwnWords`): aiohttp's
exceptions quote what the server sent, so their text is never passed on.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import functools
import os
import re
import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from aiohttp.http import RawResponseMessage
from aiohttp.streams import StreamReader

from egp_operator.egp.endpoint import EndpointPolicy, IPAddress, literal_address

#: The size of the pieces a response body is read in, each counted against the page's cap.
_CHUNK: Final = 64 * 1024
#: Request extension: the `ByteBudget` of the response. Without one, bytes are not capped here.
RESPONSE_BUDGET: Final = "egp_operator.response_budget"
#: Request extension: a callable, called once, when the request has a connection (a new one or
#: one from the pool): the moment its wait for the pool ends and its own time starts.
ON_CONNECTION: Final = "egp_operator.on_connection"
#: Interim (1xx) answers read before a response. The client never sends `Expect:
#: 100-continue`; a server may still send a `100` or a `103 Early Hints`, but not a flood.
MAX_INTERIM_ANSWERS: Final = 8
#: aiohttp's own limits on a head's shape, stated rather than inherited (they are its
#: defaults): a status line or header field of at most 8190 bytes and at most 128 fields.
#: Breaking them is an answer that is not valid HTTP; the `ByteBudget` bounds the bytes.
MAX_LINE_BYTES: Final = 8190
MAX_FIELD_BYTES: Final = 8190
MAX_HEADER_FIELDS: Final = 128


@dataclass(frozen=True)
class ByteBudget:
    """What one response may take on the wire. `head`: everything before its body (interim
    answers, status line, headers). `total`: everything the connection receives for the
    request (the head, chunk framing and extensions, trailers and the body)."""

    head: int
    total: int


# --- Errors, in this module's own words --------------------------------------------------------


class OwnWords:
    """A transport error whose text this module wrote: fixed phrases and fields it chose (the
    endpoint's host, a number, an OS or OpenSSL error name), never bytes the server sent nor a
    library's rendering of them. The client repeats such a text; any other error it names by
    its class only."""


class ConnectFailed(OwnWords, httpx.ConnectError):
    pass


class ConnectTimedOut(OwnWords, httpx.ConnectTimeout):
    pass


class ReadTimedOut(OwnWords, httpx.ReadTimeout):
    pass


class ReadFailed(OwnWords, httpx.ReadError):
    pass


class NotHTTP(OwnWords, httpx.RemoteProtocolError):
    pass


class PoolWaitTimeout(OwnWords, httpx.PoolTimeout):
    """No pooled connection to the endpoint was free in time: the operator's own connections
    were busy, which says nothing about the endpoint the request was for."""


class ResponseOverBudget(OwnWords, httpx.TransportError):
    """The connection received more than the request's `budget` allowed (`in_head`: its head
    was past the head's part), or more interim answers than `MAX_INTERIM_ANSWERS`
    (`interim_answers` is then how many), and was aborted."""

    def __init__(
        self,
        message: str,
        *,
        budget: ByteBudget | None,
        in_head: bool,
        interim_answers: int | None = None,
        request: httpx.Request | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.budget = budget
        self.in_head = in_head
        self.interim_answers = interim_answers


class _BudgetSpent(aiohttp.ClientError):
    """Set on a connection's readers when it is aborted over budget; the transport reports
    `ResponseOverBudget` from the request's `_Exchange`, whatever aiohttp raises after."""


# --- One request's account of its connection ---------------------------------------------------


def _nothing() -> None:
    return None


@dataclass(eq=False)
class _Exchange:
    """What one request received on its connection, and whether it holds a connection."""

    budget: ByteBudget | None
    origin: tuple[str, str]  # (scheme, host[:port]): the key the per-host limit counts by
    on_connection: Callable[[], None] | None
    stop_waiting: Callable[[], None] = _nothing
    received: int = 0
    head_done: bool = False
    interim_answers: int = 0
    over_budget: bool = False
    over_in_head: bool = False
    connected: bool = False
    finished: bool = False
    #: Called once, when the exchange ends: gives back its place in the busy count.
    on_finish: Callable[[], None] = _nothing

    @property
    def host(self) -> str:
        return self.origin[1]

    def connection_acquired(self) -> None:
        if self.connected:
            return  # aiohttp's one silent retry on a fresh connection: the clocks run on
        self.connected = True
        self.stop_waiting()
        if self.on_connection is not None:
            self.on_connection()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.on_finish()
            # The connection's protocol keeps its last exchange while it idles in the pool:
            # it need not keep the request's clocks, and their task, alive with it.
            self.on_connection = None
            self.stop_waiting = _nothing


#: The exchange of the request being sent, for the protocol to pick up when aiohttp hands it
#: the request (`set_response_params` runs in the request's task, before the request is sent).
_CURRENT_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "egp_current_exchange", default=None
)


class _CountingResponseHandler(ResponseHandler):
    """aiohttp's protocol for one connection, counting every byte it receives against the
    budget of the request it serves before the parser sees it, and each interim answer."""

    _exchange: _Exchange | None = None

    def set_response_params(self, **params: Any) -> None:
        self._exchange = _CURRENT_EXCHANGE.get()
        super().set_response_params(**params)

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None or not data:
            super().data_received(data)
            return
        if exchange.over_budget:
            return  # aborted: nothing more is parsed
        head_received = exchange.received
        exchange.received += len(data)
        budget = exchange.budget
        if budget is not None and exchange.received > budget.total:
            self._refuse(exchange)
            return
        if budget is not None and not exchange.head_done:
            room = budget.head - head_received
            if len(data) > room:
                # Parse only what the head may take; the rest only once the head has ended.
                super().data_received(data[:room])
                if exchange.over_budget or self.exception() is not None:
                    return  # refused, or not valid HTTP (the parser's verdict stands)
                if not exchange.head_done:
                    self._refuse(exchange)
                    return
                data = data[room:]
        super().data_received(data)

    def feed_data(self, data: tuple[RawResponseMessage, StreamReader], size: int = 0) -> None:
        """A parsed head: an interim answer is counted; any other ends the head."""
        exchange = self._exchange
        if exchange is not None:
            if exchange.over_budget:
                return
            code = data[0].code
            if 100 <= code < 200 and code != 101:
                exchange.interim_answers += 1
                if exchange.interim_answers > MAX_INTERIM_ANSWERS:
                    self._refuse(exchange)
                    return
            else:
                exchange.head_done = True
        super().feed_data(data, size)

    def _refuse(self, exchange: _Exchange) -> None:
        """Fail whoever reads this connection, and abort it: the rest is never parsed."""
        exchange.over_budget = True
        exchange.over_in_head = not exchange.head_done
        spent = _BudgetSpent()
        payload = self._payload
        self.set_exception(spent)
        if payload is not None:
            payload.set_exception(spent)
        if self.transport is not None:
            self.transport.abort()


class _CountingConnector(aiohttp.TCPConnector):
    """aiohttp's connector, making `_CountingResponseHandler`s. aiohttp has no public hook for
    the protocol: `_factory` is where it keeps the one it makes (aiohttp 3.14). Should that
    move, the operator refuses to start its pool rather than read uncounted."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(getattr(self, "_factory", None), functools.partial):
            raise RuntimeError(
                "this aiohttp keeps no protocol factory in TCPConnector._factory: the EGP"
                " client could not count what a response takes on the wire"
            )
        self._factory = functools.partial(_counting_handler, loop=self._loop)


def _counting_handler(loop: asyncio.AbstractEventLoop) -> ResponseHandler:
    return _CountingResponseHandler(loop)


# --- Names and addresses ---------------------------------------------------------------------


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


# --- The transport ---------------------------------------------------------------------------


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's interface over aiohttp's connection pool, connecting only to addresses the
    policy allows. aiohttp (kopf's client, already in the process) spends a fraction of
    httpcore's CPU per request (bench/FINDINGS.md section 9). No proxy is used (`trust_env` is
    off), so the address checked is the EGP endpoint's own; no cookie is kept, so one tenant's
    endpoint cannot set what another's requests carry; nothing is decompressed (the client
    refuses any Content-Encoding); and a body not read to its end closes its connection.

    `max_connections_per_host` (None: no limit of its own) caps the connections to one
    endpoint (aiohttp keys them by scheme, host and port). A request waits at most its `pool`
    timeout for a free one; that wait ends before the request's own clocks start
    (`ON_CONNECTION`)."""

    def __init__(
        self,
        policy: EndpointPolicy,
        ssl_context: ssl.SSLContext,
        *,
        max_connections: int = 10,
        max_connections_per_host: int | None = None,
        keepalive_expiry: float = 15.0,
    ) -> None:
        self._policy = policy
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._max_connections_per_host = max_connections_per_host
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        #: Requests holding a connection, per endpoint: what tells which limit a wait met.
        self._busy: Counter[tuple[str, str]] = Counter()

    def _open_session(self) -> aiohttp.ClientSession:
        """Made at the first request, inside the event loop, as aiohttp requires."""
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_start.append(self._connection_acquired)
        tracing.on_connection_reuseconn.append(self._connection_acquired)
        return aiohttp.ClientSession(
            connector=_CountingConnector(
                ssl=self._ssl_context,
                limit=self._max_connections,
                limit_per_host=self._max_connections_per_host or 0,
                keepalive_timeout=self._keepalive_expiry,
                resolver=GuardedResolver(self._policy),
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            trace_configs=[tracing],
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_HEADER_FIELDS,
        )

    async def _connection_acquired(
        self, _session: aiohttp.ClientSession, context: SimpleNamespace, _params: object
    ) -> None:
        exchange = getattr(context, "trace_request_ctx", None)
        if isinstance(exchange, _Exchange) and not exchange.connected:
            self._busy[exchange.origin] += 1
            exchange.on_finish = functools.partial(self._release, exchange.origin)
            exchange.connection_acquired()

    def _release(self, origin: tuple[str, str]) -> None:
        self._busy[origin] -= 1
        if self._busy[origin] <= 0:
            del self._busy[origin]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open_session()
        timeouts = request.extensions.get("timeout", {})
        exchange = _Exchange(
            budget=request.extensions.get(RESPONSE_BUDGET),
            origin=(request.url.scheme, request.url.netloc.decode("ascii")),
            on_connection=request.extensions.get(ON_CONNECTION),
        )
        current = _CURRENT_EXCHANGE.set(exchange)
        try:
            async with asyncio.timeout(timeouts.get("pool")) as waiting:
                exchange.stop_waiting = functools.partial(waiting.reschedule, None)
                response = await self._session.request(
                    request.method,
                    str(request.url),
                    headers=list(request.headers.multi_items()),
                    allow_redirects=False,
                    trace_request_ctx=exchange,
                    # The pool wait is bounded above, on its own; these bound the endpoint.
                    timeout=aiohttp.ClientTimeout(
                        sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
                    ),
                )
        except aiohttp.ClientError as error:
            exchange.finish()
            raise _in_own_words(error, exchange, timeouts, request) from None
        except TimeoutError:
            exchange.finish()
            if not waiting.expired():
                raise
            raise self._pool_wait_timeout(exchange, timeouts.get("pool"), request) from None
        except BaseException:
            exchange.finish()
            raise
        finally:
            _CURRENT_EXCHANGE.reset(current)
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, exchange, timeouts),
            request=request,
        )

    def _pool_wait_timeout(
        self, exchange: _Exchange, waited: float | None, request: httpx.Request
    ) -> PoolWaitTimeout:
        per_host = self._max_connections_per_host
        if per_host is not None and self._busy[exchange.origin] >= per_host:
            busy = (
                f"all {per_host} of the operator's connections to it are busy"
                " (EGP_OPERATOR_MAX_CONNECTIONS_PER_HOST)"
            )
        else:
            busy = (
                f"all {self._max_connections} of the operator's connections, to every"
                " endpoint, are busy"
            )
        return PoolWaitTimeout(
            f"no connection to {exchange.host} was free within {waited or 0:g}s: {busy}",
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _in_own_words(
    error: aiohttp.ClientError,
    exchange: _Exchange,
    timeouts: dict[str, float | None],
    request: httpx.Request | None = None,
) -> httpx.TransportError:
    """`error` in this module's words: its class, and fields chosen from it, never its text
    (aiohttp renders the server's bytes into it, and cuts them where a key may straddle)."""
    host = exchange.host
    if exchange.over_budget:
        return _over_budget(exchange, request)
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        connect = timeouts.get("connect") or 0
        return ConnectTimedOut(f"connecting to {host} took more than {connect:g}s", request=request)
    if isinstance(error, aiohttp.ServerTimeoutError):
        read = timeouts.get("read") or 0
        return ReadTimedOut(f"{host} sent nothing for {read:g}s", request=request)
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return ConnectFailed(f"{host} did not resolve to an address", request=request)
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        why = _openssl_phrase(getattr(error.certificate_error, "verify_message", None))
        return ConnectFailed(
            f"the TLS certificate of {host} was not accepted{why}", request=request
        )
    if isinstance(error, aiohttp.ClientConnectorSSLError):
        why = _ssl_reason(getattr(error.os_error, "reason", None))
        return ConnectFailed(f"the TLS handshake with {host} failed{why}", request=request)
    if isinstance(error, aiohttp.ClientConnectorError):
        why = _os_phrase(error.os_error)
        return ConnectFailed(f"connecting to {host} failed{why}", request=request)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        why = "closed the connection before its answer was complete"
        return ReadFailed(f"{host} {why}", request=request)
    if isinstance(error, aiohttp.ClientPayloadError):
        why = "sent a body that ended early or was not validly framed"
        return ReadFailed(f"{host} {why}", request=request)
    if isinstance(error, aiohttp.ClientResponseError):  # the head did not parse
        return NotHTTP(f"{host} sent an answer that is not valid HTTP", request=request)
    if isinstance(error, aiohttp.ClientOSError):
        return ReadFailed(f"the connection to {host} failed{_os_phrase(error)}", request=request)
    return ReadFailed(f"the request to {host} failed ({type(error).__name__})", request=request)


def _over_budget(exchange: _Exchange, request: httpx.Request | None) -> ResponseOverBudget:
    budget = exchange.budget
    if exchange.interim_answers > MAX_INTERIM_ANSWERS:
        return ResponseOverBudget(
            f"{exchange.host} sent more than {MAX_INTERIM_ANSWERS} interim (1xx) answers",
            budget=budget,
            in_head=True,
            interim_answers=exchange.interim_answers,
            request=request,
        )
    where = "a head" if exchange.over_in_head else "a response"
    limit = (budget.head if exchange.over_in_head else budget.total) if budget else 0
    return ResponseOverBudget(
        f"{exchange.host} sent {where} of more than {limit} bytes",
        budget=budget,
        in_head=exchange.over_in_head,
        request=request,
    )


#: OpenSSL's reason codes (`WRONG_VERSION_NUMBER`): fixed names, safe to repeat.
_SSL_REASON: Final = re.compile(r"[A-Z0-9_]{1,64}")
#: OpenSSL's certificate verdicts ("self-signed certificate", "certificate has expired") and
#: Python's "Hostname mismatch, certificate is not valid for 'host'." (the host is ours).
_OPENSSL_PHRASE: Final = re.compile(r"[A-Za-z0-9 ,.:'()_-]{1,120}")


def _ssl_reason(reason: object) -> str:
    return f" ({reason})" if isinstance(reason, str) and _SSL_REASON.fullmatch(reason) else ""


def _openssl_phrase(text: object) -> str:
    if isinstance(text, str) and _OPENSSL_PHRASE.fullmatch(text):
        return f" ({text.rstrip('.')})"
    return ""


def _os_phrase(error: OSError | None) -> str:
    """The OS's name for an error number (`Connection refused`), which is libc's, not the
    peer's."""
    number = getattr(error, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        return f" ({os.strerror(number)})"
    return ""


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body as httpx streams it, with aiohttp's errors in this module's
    words."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        exchange: _Exchange,
        timeouts: dict[str, float | None],
    ) -> None:
        self._response = response
        self._exchange = exchange
        self._timeouts = timeouts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except aiohttp.ClientError as error:
            raise _in_own_words(error, self._exchange, self._timeouts) from None

    async def aclose(self) -> None:
        """Back to the pool if it was read to its end, else closed."""
        self._response.release()
        self._exchange.finish()
