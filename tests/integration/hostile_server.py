"""A deliberately hostile HTTP/1.1 server on loopback, to prove what the EGP client survives.

It speaks raw HTTP on a socket (`asyncio.start_server` on 127.0.0.1, port 0) from a background
thread with its own event loop, so a behaviour can do what no well-behaved framework would:
stream half a gigabyte, announce a body it never sends, trickle bytes forever, never end a chunked
body, flood interim answers, chunk extensions, trailers or header fields, redirect to a metadata
address, or echo the request's API key back.

A behaviour is any `async (request, reply) -> None`: a coroutine function, or one of the small
declarative objects below (`Respond`, `Stream`, `TrickleHead`, and for the bytes around a
body, `InterimFlood`, `Chunked` with its extensions and trailers, `HeaderFlood`). It is called
once per request and writes the answer with `reply`. Every request is recorded (method, path,
query, headers) so a test can assert what the client did and did not send.

Nothing runs forever: a behaviour writes one bounded chunk at a time and stops as soon as the
client hangs up, every connection has a deadline, and leaving the context manager closes every
connection and stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final
from urllib.parse import parse_qs, urlsplit

HOST: Final = "127.0.0.1"
CHUNK: Final = 64 * 1024
#: The most a request head may hold; the client's heads are a few hundred bytes.
MAX_HEAD_BYTES: Final = 64 * 1024
#: Whatever a behaviour asks, no connection lasts longer than this.
MAX_CONNECTION_SECONDS: Final = 60.0
MAX_REQUESTS_PER_CONNECTION: Final = 100
#: The server stops by itself after this long even if nobody stops it.
MAX_SERVER_SECONDS: Final = 600.0
START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 10.0

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server read it. Header names are lower-case."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class PeerGone(Exception):
    """The client closed the connection: the behaviour has nobody left to write to."""


class Reply:
    """The connection of one request, as a behaviour writes its answer on it."""

    def __init__(self, writer: asyncio.StreamWriter, server: HostileServer) -> None:
        self._writer = writer
        self._server = server
        #: Set when the answer leaves the connection unusable for another request.
        self.close_connection = False

    async def write(self, data: bytes) -> None:
        """Send `data` and wait until the socket took it; PeerGone once the client left."""
        if self._writer.is_closing():
            raise PeerGone
        try:
            self._writer.write(data)
            await self._writer.drain()
        except ConnectionError as error:
            raise PeerGone from error
        self._server.count_sent(len(data))

    async def head(self, status: int, headers: Iterable[tuple[str, str]] = ()) -> None:
        """The status line and headers, written as given (no header is added)."""
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Hostile"
        lines = [f"HTTP/1.1 {status} {phrase}", *(f"{name}: {value}" for name, value in headers)]
        await self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def respond(self, status: int, body: bytes = b"", headers: Headers = ()) -> None:
        """A whole answer with its Content-Length: the connection stays usable."""
        await Respond(status, body, headers)(_NO_REQUEST, self)


Behaviour = Callable[[RecordedRequest, Reply], Awaitable[None]]

_NO_REQUEST: Final = RecordedRequest("", "", "", {}, {})
JSON: Final[Headers] = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Respond:
    """A complete answer: `status`, `headers` and `body`, with the body's Content-Length."""

    status: int = 200
    body: bytes = b""
    headers: Headers = JSON

    async def __call__(self, request: RecordedRequest, reply: Reply) -> None:
        await reply.head(self.status, [*self.headers, ("Content-Length", str(len(self.body)))])
        await reply.write(self.body)


def redirect(location: str, status: int = 302) -> Respond:
    """A redirect with an empty body."""
    return Respond(status, b"", (("Location", location),))


@dataclass(frozen=True)
class Stream:
    """A body that does not end: `prefix`, then `chunk` again and again, `interval` seconds
    apart, until `total` bytes are sent, the client hangs up, or the connection's deadline.

    Framing: chunked encoding (never sending the last chunk), or an announced `content_length`
    (never reached), or else none (the body would end when the connection closes). Only the one
    chunk is ever held in memory, however much is sent.
    """

    status: int = 200
    headers: Headers = JSON
    prefix: bytes = b""
    chunk: bytes = b" " * CHUNK
    total: int = 500 * 1024 * 1024
    interval: float = 0.0
    chunked: bool = False
    content_length: int | None = None

    async def __call__(self, request: RecordedRequest, reply: Reply) -> None:
        reply.close_connection = True
        framing: list[tuple[str, str]]
        if self.chunked:
            framing = [("Transfer-Encoding", "chunked")]
        elif self.content_length is not None:
            framing = [("Content-Length", str(self.content_length))]
        else:
            framing = [("Connection", "close")]
        await reply.head(self.status, [*self.headers, *framing])
        if self.prefix:
            await reply.write(self._framed(self.prefix))
        chunk = self._framed(self.chunk)
        sent = len(self.prefix)
        while sent < self.total:
            await reply.write(chunk)
            sent += len(self.chunk)
            if self.interval:
                await asyncio.sleep(self.interval)  # the trickle; the deadline ends it

    def _framed(self, data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data


@dataclass(frozen=True)
class TrickleHead:
    """A status line, then one header trickled a byte every `interval` seconds, never ending
    the head (at most `total` bytes)."""

    interval: float = 0.2
    total: int = 10_000

    async def __call__(self, request: RecordedRequest, reply: Reply) -> None:
        reply.close_connection = True
        await reply.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(self.total):
            await reply.write(b"a")
            await asyncio.sleep(self.interval)  # the trickle; the deadline ends it


#: The smallest complete listing: what a flood is followed by, to show it was not accepted.
EMPTY_PAGE: Final = b'{"items":[],"has_more":false}'


async def _write_repeated(reply: Reply, unit: bytes, count: int) -> None:
    """`unit` `count` times, in writes of about CHUNK bytes: only one write is held."""
    per_write = max(1, CHUNK // len(unit))
    block = unit * per_write
    left = count
    while left >= per_write:
        await reply.write(block)
        left -= per_write
    if left:
        await reply.write(unit * left)


@dataclass(frozen=True)
class InterimFlood:
    """`count` interim answers (`100 Continue`, though the client never sent
    `Expect: 100-continue`), then `then`'s answer."""

    count: int = 1_000_000
    then: Behaviour = Respond(200, EMPTY_PAGE)
    interim: bytes = b"HTTP/1.1 100 Continue\r\n\r\n"

    async def __call__(self, request: RecordedRequest, reply: Reply) -> None:
        reply.close_connection = True
        await _write_repeated(reply, self.interim, self.count)
        await self.then(request, reply)


@dataclass(frozen=True)
class Chunked:
    """`body` in chunked encoding, `chunk_size` bytes a chunk, each size line carrying a chunk
    extension of `extension_bytes`; then `trailers` trailer fields of `trailer_bytes` each.
    Framing may dwarf the body: 1-byte chunks with 4 KiB extensions send 4 KiB a body byte."""

    body: bytes = EMPTY_PAGE
    chunk_size: int = CHUNK
    extension_bytes: int = 0
    trailers: int = 0
    trailer_bytes: int = 64

    async def __call__(self, request: RecordedRequest, reply: Reply) -> None:
        reply.close_connection = True
        await reply.head(200, [*JSON, ("Transfer-Encoding", "chunked")])
        extension = b";x=" + b"e" * (self.extension_bytes - 3) if self.extension_bytes else b""
        pending = bytearray()
        for start in range(0, len(self.body), self.chunk_size):
            data = self.body[start : start + self.chunk_size]
            pending += b"%x%s\r\n%s\r\n" % (len(data), extension, data)
            if len(pending) >= CHUNK:
                await reply.write(bytes(pending))
                pending.clear()
        await reply.write(bytes(pending) + b"0\r\n")
        trailer = b"X-Trailer: " + b"t" * max(0, self.trailer_bytes - 13) + b"\r\n"
        await _write_repeated(reply, trailer, self.trailers)
        await reply.write(b"\r\n")


@dataclass(frozen=True)
class HeaderFlood:
    """A status line, then `count` header fields of `field_bytes` each, then (if the client is
    still there) the end of the head and a complete listing."""

    count: int = 1_000_000
    field_bytes: int = 4096

    async def __call__(self, request: RecordedRequest, reply: Reply) -> None:
        reply.close_connection = True
        await reply.write(b"HTTP/1.1 200 OK\r\n")
        field = b"X-Flood: " + b"f" * max(0, self.field_bytes - 11) + b"\r\n"
        await _write_repeated(reply, field, self.count)
        end = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(EMPTY_PAGE)
        await reply.write(end + EMPTY_PAGE)


NOT_FOUND: Final = Respond(404, b'{"detail":"Not Found"}')


class HostileServer:
    """`with HostileServer(behaviour) as server:` serves on `server.url` until the block ends.

    `behaviour` may be replaced while the server runs; `requests` is what the server was asked,
    `connections` how many connections it accepted, `bytes_sent` how much it wrote.
    """

    def __init__(
        self,
        behaviour: Behaviour = NOT_FOUND,
        *,
        max_connection_seconds: float = MAX_CONNECTION_SECONDS,
    ) -> None:
        self.behaviour = behaviour
        self.max_connection_seconds = max_connection_seconds
        self.port = 0
        self._requests: list[RecordedRequest] = []
        self._connections = 0
        self._open = 0
        self._bytes_sent = 0
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._changed:
            return list(self._requests)

    @property
    def connections(self) -> int:
        with self._changed:
            return self._connections

    @property
    def bytes_sent(self) -> int:
        with self._changed:
            return self._bytes_sent

    def count_sent(self, size: int) -> None:
        with self._changed:
            self._bytes_sent += size

    def wait_until_idle(self, timeout: float) -> bool:
        """Block until no connection is open (the client hung up); False after `timeout`."""
        with self._changed:
            return self._changed.wait_for(lambda: self._open == 0, timeout)

    def __enter__(self) -> HostileServer:
        self._thread = threading.Thread(target=self._run, name="hostile-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the hostile server did not start")
        if self._startup_error is not None:
            raise RuntimeError("the hostile server did not start") from self._startup_error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Close every connection and stop the loop; returns once the thread ended."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError("the hostile server did not stop")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:  # __enter__ reports it if the server never started
            self._startup_error = error
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, HOST, 0, limit=MAX_HEAD_BYTES)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MAX_SERVER_SECONDS):
                    await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._changed:
            self._connections += 1
            self._open += 1
        try:
            async with asyncio.timeout(self.max_connection_seconds):
                for _ in range(MAX_REQUESTS_PER_CONNECTION):
                    request = await _read_request(reader)
                    if request is None:
                        break
                    with self._changed:
                        self._requests.append(request)
                    reply = Reply(writer, self)
                    await self.behaviour(request, reply)
                    if reply.close_connection:
                        break
        except (PeerGone, ConnectionError, TimeoutError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            try:
                writer.close()  # flushes a complete answer; bounded when nobody reads it
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await writer.wait_closed()
            finally:
                writer.transport.abort()
                self._tasks.discard(task)
            with self._changed:
                self._open -= 1
                self._changed.notify_all()


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    """The next request head, or None when the client closed the connection between requests.
    A request body (the client sends none) is read and dropped, up to MAX_HEAD_BYTES."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise ValueError("the connection closed in the middle of a request head") from None
        return None
    request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "0")
    if length.isdigit() and 0 < int(length) <= MAX_HEAD_BYTES:
        await reader.readexactly(int(length))
    parts = urlsplit(target)
    return RecordedRequest(
        method=method,
        target=target,
        path=parts.path,
        query=parse_qs(parts.query),
        headers=headers,
    )
