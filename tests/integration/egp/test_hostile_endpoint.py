"""The real EGP client against a hostile endpoint over real HTTP on loopback.

A tenant chooses the `baseURL`, so whatever answers there may be hostile. Each case proves the
client ends with a typed error and its `reason`, never repeats the API key or what the endpoint
served, and stays bounded in memory and time. Memory is the peak traced by `tracemalloc` in this
process (the server's thread included, so it is an upper bound on the client's), time is wall
time; both are printed per case (`HOSTILE <case>: ...`) and as a table at the end of the module,
for `pytest -s` to collect. CPU is the client's own: the time its thread (the event loop's)
spent, which the server's thread does not add to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, quote_plus

import pytest

from egp_operator.egp import (
    EGPClient,
    EGPError,
    EndpointRefusedError,
    MalformedResponseError,
    RequestError,
    ResponseTooLargeError,
    ServerError,
    TooManyModelsError,
    TransportError,
)
from egp_operator.egp.client import HEAD_ALLOWANCE_BYTES, ReadLimits, RetryPolicy
from egp_operator.egp.endpoint import EndpointPolicy
from egp_operator.egp.rate_limits import RateLimits
from egp_operator.egp.transport import MAX_INTERIM_ANSWERS
from tests.integration.conftest import ACCOUNT, RecordedSleep, client_maker
from tests.integration.hostile_server import (
    EMPTY_PAGE,
    Chunked,
    HeaderFlood,
    HostileServer,
    InterimFlood,
    RecordedRequest,
    Reply,
    Respond,
    Stream,
    TrickleHead,
    redirect,
)

pytestmark = pytest.mark.timeout(60)

#: Visible ASCII, with the characters that repr, JSON and URLs escape, so each escaped form of
#: the key differs from the raw one.
API_KEY: Final = 'sk-hostile"\\key/+&=5f3c9a1e7d2b'
INTERNAL_TEXT: Final = "root:x:0:0 internal-secret-token-XYZ"
MIB: Final = 1024 * 1024
PAGE_CAP: Final = 1 * MIB
DEADLINE: Final = 2.0
LIMITS: Final = ReadLimits(max_page_bytes=PAGE_CAP, request_deadline=DEADLINE, max_models=1000)
HUGE: Final = 500 * MIB
#: Generous bounds that still catch a client holding a hostile body or waiting on it forever.
PEAK_BOUND_MIB: Final = 64.0
WALL_BOUND: Final = 30.0
#: How long a case may run before it counts as a hang rather than a slow answer.
HANG_LIMIT: Final = 45.0
DEADLINE_MESSAGE: Final = f"did not send a whole response within the {DEADLINE:g}s deadline"
#: Said by a body over its cap and by a response over its byte budget (the cap and the head's
#: allowance), whichever the client meets first: the connection reads ahead of the body.
PAGE_CAP_NAMED: Final = "bytes (EGP_OPERATOR_MAX_PAGE_BYTES)"


def key_forms(key: str) -> set[str]:
    """The key as any message or log could carry it: raw, repr-, JSON- and URL-escaped."""
    return {key, repr(key)[1:-1], json.dumps(key)[1:-1], quote(key, safe=""), quote_plus(key)}


SECRETS: Final = (*sorted(key_forms(API_KEY)), INTERNAL_TEXT, "internal-secret-token")


# --- Figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    case: str
    outcome: str
    peak_mib: float
    wall: float
    cpu: float


FIGURES: list[Figure] = []


@pytest.fixture(scope="module", autouse=True)
def figures_table() -> Iterator[None]:
    """At the end of the module, the figures of every case as one table."""
    yield
    if not FIGURES:
        return
    width = max(len(figure.case) for figure in FIGURES)
    print(f"\nHOSTILE figures ({len(FIGURES)} cases; peak = tracemalloc peak, both threads)")
    print(f"{'case':<{width}}  {'outcome':<24}  {'peak MiB':>8}  {'wall s':>6}  {'CPU s':>6}")
    for figure in FIGURES:
        print(
            f"{figure.case:<{width}}  {figure.outcome:<24}  "
            f"{figure.peak_mib:>8.1f}  {figure.wall:>6.2f}  {figure.cpu:>6.2f}"
        )


async def provoke(case: str, call: Coroutine[Any, Any, object]) -> EGPError:
    """Run `call`, which must fail with a typed error; trace its peak memory and wall time,
    print and record them, and assert they stay within the generous bounds."""
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.monotonic()
    cpu_started = time.thread_time()
    outcome: BaseException | None = None
    returned: object = None
    try:
        async with asyncio.timeout(HANG_LIMIT):
            returned = await call
    except Exception as error:
        outcome = error
    finally:
        wall = time.monotonic() - started
        cpu = time.thread_time() - cpu_started
        peak_mib = tracemalloc.get_traced_memory()[1] / MIB
        if not already_tracing:
            tracemalloc.stop()
    name = type(outcome).__name__ if outcome is not None else "returned"
    FIGURES.append(Figure(case, name, peak_mib, wall, cpu))
    print(f"HOSTILE {case}: peak={peak_mib:.1f} MiB wall={wall:.2f} s cpu={cpu:.2f} s ({name})")
    assert outcome is not None, f"{case}: the client accepted the answer: {returned!r:.200}"
    assert not isinstance(outcome, TimeoutError), f"{case}: still running after {HANG_LIMIT}s"
    assert isinstance(outcome, EGPError), f"{case}: not a typed EGP error: {outcome!r:.500}"
    assert peak_mib < PEAK_BOUND_MIB, f"{case}: {peak_mib:.1f} MiB traced"
    assert wall < WALL_BOUND, f"{case}: {wall:.1f}s"
    return outcome


def assert_discreet(error: EGPError, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the error nor anything logged repeats the key or what the endpoint served."""
    texts = {
        "str(error)": str(error),
        "repr(error)": repr(error),
        "error.message": error.message,
        "logs": "\n".join(record.getMessage() for record in caplog.records),
    }
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} appears in {where}: {text!r:.600}"


# --- Fixtures ------------------------------------------------------------------------------


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _capture_client_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="egp_operator")


@pytest.fixture
async def connect(
    hostile: HostileServer, sleeps: RecordedSleep
) -> AsyncIterator[Callable[..., EGPClient]]:
    """A real client of the hostile server: small limits, no waiting between retries."""
    async with client_maker(
        base_url=hostile.url,
        api_key=API_KEY,
        account_id=ACCOUNT,
        sleep=sleeps,
        rate_limits=RateLimits(clock=sleeps.clock),
        timeout=10.0,
        limits=LIMITS,
    ) as make:

        def connect(*, retries: int = 0, **overrides: Any) -> EGPClient:
            return make(retry=RetryPolicy(max_retries=retries), **overrides)

        yield connect


Connect = Callable[..., EGPClient]


async def hung_up(server: HostileServer) -> bool:
    """Whether the client closed its connections (waits a bounded time for the server to see)."""
    return await asyncio.to_thread(server.wait_until_idle, 10.0)


def served(case: str, server: HostileServer) -> int:
    """How much the server wrote before the client hung up; printed beside the figures."""
    sent = server.bytes_sent
    print(f"HOSTILE {case}: the server wrote {sent / MIB:.1f} MiB before the client hung up")
    return sent


# --- Bodies too big to hold ----------------------------------------------------------------


async def test_a_500_mib_body_is_refused_at_the_page_cap_without_being_held(
    hostile: HostileServer,
    connect: Connect,
    sleeps: RecordedSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hostile.behaviour = Stream(prefix=b'{"items":[', total=HUGE)

    error = await provoke("500 MiB body, no length", connect(retries=1).list_models())

    assert isinstance(error, ResponseTooLargeError)
    assert error.reason == "ResponseTooLarge"
    assert PAGE_CAP_NAMED in error.message
    assert await hung_up(hostile)
    assert served("500 MiB body, no length", hostile) < 100 * MIB, "it read past the cap"
    assert len(hostile.requests) == 1, "a body too large to read is not asked for again"
    assert sleeps.delays == []
    assert_discreet(error, caplog)


async def test_an_announced_500_gb_content_length_is_refused_before_the_body_is_read(
    hostile: HostileServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.behaviour = Stream(content_length=500 * 10**9, total=HUGE)

    error = await provoke("Content-Length 500 GB", connect().list_models())

    assert isinstance(error, ResponseTooLargeError)
    assert error.reason == "ResponseTooLarge"
    assert "announced a body of 500000000000 bytes" in error.message
    assert await hung_up(hostile)
    assert served("Content-Length 500 GB", hostile) < 100 * MIB
    assert_discreet(error, caplog)


async def test_a_chunked_body_that_never_ends_is_refused_at_the_page_cap(
    hostile: HostileServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.behaviour = Stream(prefix=b'{"items":[', chunked=True, total=HUGE)

    error = await provoke("chunked, never ends", connect().list_models())

    assert isinstance(error, ResponseTooLargeError)
    assert error.reason == "ResponseTooLarge"
    assert PAGE_CAP_NAMED in error.message
    assert await hung_up(hostile)
    assert served("chunked, never ends", hostile) < 100 * MIB
    assert_discreet(error, caplog)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """256 MiB of JSON whitespace, gzipped to about 260 KiB: well under the page cap."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b" " * MIB
    parts = [packer.compress(b'{"items":[')]
    parts += [packer.compress(zeros) for _ in range(256)]
    parts += [packer.compress(b"]}"), packer.flush()]
    return b"".join(parts)


async def test_a_gzip_bomb_is_refused_without_being_inflated(
    hostile: HostileServer, connect: Connect, gzip_bomb: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(gzip_bomb) < PAGE_CAP
    hostile.behaviour = Respond(
        200, gzip_bomb, (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
    )

    error = await provoke("gzip bomb (256 MiB inflated)", connect().list_models())

    assert isinstance(error, MalformedResponseError)
    assert error.reason == "MalformedResponse"
    assert "Content-Encoding 'gzip'" in error.message
    [request] = hostile.requests
    assert request.headers["accept-encoding"] == "identity"
    assert_discreet(error, caplog)


# --- Answers that never finish -------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "behaviour"),
    [
        pytest.param(
            "body trickled 1 B / 0.2 s",
            Stream(chunk=b" ", interval=0.2, content_length=10_000, total=10_000),
            id="body-with-length",
        ),
        pytest.param(
            "chunked body trickled 1 B / 0.2 s",
            Stream(chunk=b" ", interval=0.2, chunked=True, total=10_000),
            id="chunked-body",
        ),
        pytest.param("headers trickled 1 B / 0.2 s", TrickleHead(interval=0.2), id="headers"),
    ],
)
async def test_an_answer_trickled_forever_ends_at_the_request_deadline(
    hostile: HostileServer,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    case: str,
    behaviour: Stream | TrickleHead,
) -> None:
    hostile.behaviour = behaviour

    error = await provoke(case, connect().list_models())

    assert isinstance(error, TransportError)
    assert error.reason == "TransportError"
    assert DEADLINE_MESSAGE in error.message
    assert await hung_up(hostile)
    assert_discreet(error, caplog)


async def test_a_trickle_is_retried_once_and_each_attempt_ends_at_the_deadline(
    hostile: HostileServer,
    connect: Connect,
    sleeps: RecordedSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hostile.behaviour = Stream(chunk=b" ", interval=0.2, content_length=10_000, total=10_000)

    error = await provoke("body trickled, 1 retry", connect(retries=1).list_models())

    assert isinstance(error, TransportError)
    assert DEADLINE_MESSAGE in error.message
    assert len(hostile.requests) == 2
    assert len(sleeps.delays) == 1
    assert_discreet(error, caplog)


# --- Bytes that are not the body -----------------------------------------------------------


def padded_page(size: int) -> bytes:
    """A complete, empty listing of exactly `size` bytes (JSON whitespace inside)."""
    return EMPTY_PAGE[:-1] + b" " * (size - len(EMPTY_PAGE)) + b"}"


def ended_by_the_budget(case: str) -> None:
    """The case just provoked ended before the request deadline, its CPU too: the budget ended
    it, not the clock."""
    figure = FIGURES[-1]
    assert figure.case == case
    assert figure.wall < DEADLINE, f"{case}: {figure.wall:.2f} s, the deadline is {DEADLINE}s"
    assert figure.cpu < DEADLINE, f"{case}: {figure.cpu:.2f} s of CPU"


async def test_a_flood_of_interim_answers_is_refused_after_a_handful(
    hostile: HostileServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    # A million `100 Continue` (24 MiB), then a listing: once taken as the listing, after 16 s
    # of CPU.
    hostile.behaviour = InterimFlood(count=1_000_000)
    case = "1,000,000 x 100 Continue, then 200"

    error = await provoke(case, connect(retries=1).list_models())

    assert isinstance(error, ResponseTooLargeError)
    assert error.reason == "ResponseTooLarge"
    assert f"more than {MAX_INTERIM_ANSWERS} interim (1xx) answers" in error.message
    ended_by_the_budget(case)
    assert len(hostile.requests) == 1, "a refused answer is not asked for again"
    assert await hung_up(hostile)
    served(case, hostile)
    assert_discreet(error, caplog)


async def test_a_handful_of_interim_answers_is_read_past(
    hostile: HostileServer, connect: Connect
) -> None:
    # As many interim answers as the client reads, of two kinds a server may send unasked.
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    hostile.behaviour = InterimFlood(count=MAX_INTERIM_ANSWERS // 2, interim=interim)

    listing = await connect().list_models()

    assert listing.models == ()


@pytest.mark.parametrize(
    ("case", "behaviour"),
    [
        pytest.param(
            # 8 MiB on the wire for a 2 KiB page: once taken as the listing.
            "2 KiB page in 1-byte chunks, 4 KiB extensions",
            Chunked(body=padded_page(2048), chunk_size=1, extension_bytes=4096),
            id="chunk-extensions",
        ),
        pytest.param(
            "endless 1-byte chunks, 4 KiB extensions",
            Chunked(body=b" " * 1_000_000, chunk_size=1, extension_bytes=4096),
            id="endless-chunk-extensions",
        ),
        pytest.param(
            # Under aiohttp's 128 fields: once taken as the listing.
            "1 MiB page, then 100 trailers of 4 KiB",
            Chunked(body=padded_page(PAGE_CAP - 4096), trailers=100, trailer_bytes=4096),
            id="trailers",
        ),
        pytest.param(
            "1 MiB page, then endless trailers of 4 KiB",
            Chunked(body=padded_page(PAGE_CAP - 4096), trailers=10**6, trailer_bytes=4096),
            id="endless-trailers",
        ),
        pytest.param(
            # Under aiohttp's 128 fields: once taken as the listing.
            "100 header fields of 4 KiB, then 200",
            HeaderFlood(count=100, field_bytes=4096),
            id="header-flood",
        ),
        pytest.param(
            "endless header fields of 4 KiB",
            HeaderFlood(count=10**6, field_bytes=4096),
            id="endless-header-flood",
        ),
    ],
)
async def test_framing_trailers_and_headers_count_toward_the_response_budget(
    hostile: HostileServer,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    case: str,
    behaviour: Chunked | HeaderFlood,
) -> None:
    hostile.behaviour = behaviour

    error = await provoke(case, connect(retries=1).list_models())

    assert isinstance(error, ResponseTooLargeError)
    assert error.reason == "ResponseTooLarge"
    if isinstance(behaviour, HeaderFlood):
        assert f"a response head of more than {HEAD_ALLOWANCE_BYTES} bytes" in error.message
    else:
        assert f"more than {PAGE_CAP + HEAD_ALLOWANCE_BYTES} bytes for one" in error.message
        assert PAGE_CAP_NAMED in error.message
    ended_by_the_budget(case)
    assert len(hostile.requests) == 1, "a refused answer is not asked for again"
    assert await hung_up(hostile)
    assert served(case, hostile) < 100 * MIB
    assert_discreet(error, caplog)


# --- Bodies small enough to read, built to hurt --------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("case", "status", "body", "expected", "says"),
    [
        pytest.param(
            "200, JSON nested 100,000 deep",
            200,
            nested(100_000),
            MalformedResponseError,
            "JSON nested too deeply to read",
            id="200-too-deep-to-parse",
        ),
        pytest.param(
            "500, JSON nested 100,000 deep",
            500,
            nested(100_000),
            ServerError,
            "JSON nested too deeply to read",
            id="500-too-deep-to-parse",
        ),
        pytest.param(
            "400, detail nested 500 deep",
            400,
            b'{"detail":' + nested(500) + b"}",
            RequestError,
            "a JSON detail nested deeper than 64 levels",
            id="400-detail-too-deep-to-quote",
        ),
    ],
)
async def test_deeply_nested_json_is_a_typed_error_not_a_crash(
    hostile: HostileServer,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    case: str,
    status: int,
    body: bytes,
    expected: type[EGPError],
    says: str,
) -> None:
    hostile.behaviour = Respond(status, body)

    error = await provoke(case, connect().list_models())

    assert type(error) is expected
    assert error.status_code == (None if status == 200 else status)
    assert says in error.message
    assert_discreet(error, caplog)


async def test_a_page_of_300000_tiny_items_is_refused_as_more_than_was_asked_for(
    hostile: HostileServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"items":[' + b",".join([b"{}"] * 300_000) + b'],"has_more":false}'
    assert len(body) < PAGE_CAP
    hostile.behaviour = Respond(200, body)

    error = await provoke("300,000 tiny items in 0.9 MiB", connect().list_models(page_size=500))

    assert isinstance(error, MalformedResponseError)
    assert error.reason == "MalformedResponse"
    assert "a page of 300000 models, more than the 500 asked for" in error.message
    assert_discreet(error, caplog)


async def test_a_total_of_a_trillion_models_stops_the_walk_at_the_first_page(
    hostile: HostileServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    page = {"items": [{"id": "m-1"}], "total": 10**12, "has_more": True, "limit": 500}
    hostile.behaviour = Respond(200, json.dumps(page).encode())

    error = await provoke("total = 10**12", connect().list_models())

    assert isinstance(error, TooManyModelsError)
    assert error.reason == "TooManyModels"
    assert "1000000000000 models, more than the 1000" in error.message
    assert len(hostile.requests) == 1
    assert_discreet(error, caplog)


# --- What the endpoint says must not be repeated -------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, MalformedResponseError), (500, ServerError), (404, RequestError)],
)
async def test_a_body_that_is_not_json_is_described_never_quoted(
    hostile: HostileServer,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    status: int,
    expected: type[EGPError],
) -> None:
    body = f"<pre>{INTERNAL_TEXT}\ndaemon:x:1:1</pre>".encode()
    hostile.behaviour = Respond(status, body, (("Content-Type", "text/html"),))

    # One retry, so a retried 500 is logged too.
    error = await provoke(f"{status}, not JSON", connect(retries=1).list_models())

    assert isinstance(error, expected)
    assert f"a body that is not JSON ({len(body)} bytes of 'text/html')" in error.message
    if status >= 500:
        assert any("retry 1/1" in record.getMessage() for record in caplog.records)
    assert_discreet(error, caplog)


async def echo_key(request: RecordedRequest, reply: Reply, *, status: int, form: str) -> None:
    """Answer `status` with the request's own x-api-key in the JSON error detail."""
    key = request.headers.get("x-api-key", "")
    detail: object
    if form == "raw":
        detail = f"invalid key {key}"
    elif form == "json-escaped":
        detail = f"invalid key {json.dumps(key)}"
    elif form == "url-quoted":
        detail = f"GET /v5/models?key={quote(key, safe='')}"
    elif form == "in-an-object":
        detail = {"error": "invalid key", "key": key}
    else:  # "past-the-cut": where the message is cut, after the scrub
        detail = "x" * 290 + key
    await reply.respond(status, json.dumps({"detail": detail}).encode(), (("X-Echo", form),))


@pytest.mark.parametrize(
    "form", ["raw", "json-escaped", "url-quoted", "in-an-object", "past-the-cut"]
)
@pytest.mark.parametrize(("status", "expected"), [(400, RequestError), (500, ServerError)])
async def test_a_key_echoed_in_an_error_detail_is_redacted(
    hostile: HostileServer,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    status: int,
    expected: type[EGPError],
    form: str,
) -> None:
    async def behaviour(request: RecordedRequest, reply: Reply) -> None:
        await echo_key(request, reply, status=status, form=form)

    hostile.behaviour = behaviour

    error = await provoke(f"{status}, key echoed {form}", connect(retries=1).list_models())

    assert type(error) is expected
    assert error.status_code == status
    assert "***" in error.message
    assert hostile.requests[0].headers["x-api-key"] == API_KEY, "the echo is of the real key"
    assert_discreet(error, caplog)


@pytest.mark.parametrize(
    "header", ["Content-Type", "Content-Encoding"], ids=["content-type", "content-encoding"]
)
async def test_a_key_echoed_in_a_response_header_is_redacted(
    hostile: HostileServer, connect: Connect, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    async def behaviour(request: RecordedRequest, reply: Reply) -> None:
        key = request.headers.get("x-api-key", "")
        await reply.respond(200, INTERNAL_TEXT.encode(), ((header, f"text/x-{key}"),))

    hostile.behaviour = behaviour

    error = await provoke(f"200, key echoed in {header}", connect().list_models())

    assert isinstance(error, MalformedResponseError)
    assert_discreet(error, caplog)


#: Pieces of the key without characters that escaping doubles: a cut key still shows them.
KEY_PIECES: Final = ("sk-hostile", "5f3c9a1e7d2b")
#: aiohttp quotes the first 100 bytes of a header line over its limit.
AIOHTTP_QUOTE_CUT: Final = 100


def malformed_head(shape: str, key: str) -> bytes:
    """An answer that is not valid HTTP, carrying `key` and INTERNAL_TEXT where aiohttp's
    error would quote them."""
    status, end = "HTTP/1.1 200 OK\r\n", "Content-Length: 2\r\n\r\n{}"
    if shape == "status-line":
        return f"HTTP/1.1 2x0 {key} {INTERNAL_TEXT}\r\n\r\n".encode()
    if shape == "header-without-colon":
        return f"{status}X-Bad {key} {INTERNAL_TEXT}\r\n{end}".encode()
    if shape == "header-line-too-long":  # the key across the cut, the internal text past it
        lead = "x" * (AIOHTTP_QUOTE_CUT - len(key) // 2)
        return f"{status}X-Long: {lead}{key} {INTERNAL_TEXT} {'a' * 9000}\r\n{end}".encode()
    # "chunk-size-line"
    return f"{status}Transfer-Encoding: chunked\r\n\r\nzz{key} {INTERNAL_TEXT}\r\n".encode()


@pytest.mark.parametrize(
    "shape", ["status-line", "header-without-colon", "header-line-too-long", "chunk-size-line"]
)
async def test_an_answer_that_is_not_http_is_described_in_our_words_only(
    hostile: HostileServer, connect: Connect, caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    async def behaviour(request: RecordedRequest, reply: Reply) -> None:
        reply.close_connection = True
        await reply.write(malformed_head(shape, request.headers.get("x-api-key", "")))

    hostile.behaviour = behaviour

    # One retry, so the retry's log line is checked too.
    error = await provoke(f"not HTTP: {shape}", connect(retries=1).list_models())

    assert isinstance(error, TransportError)
    assert hostile.requests[0].headers["x-api-key"] == API_KEY, "the echo is of the real key"
    assert any("retry 1/1" in record.getMessage() for record in caplog.records)
    assert_discreet(error, caplog)
    shown = "\n".join([str(error), repr(error), caplog.text])
    for piece in KEY_PIECES:
        assert piece not in shown, f"a piece of the key, {piece!r}, is shown: {shown!r:.600}"
    assert error.message in (
        f"could not reach EGP: 127.0.0.1:{hostile.port} sent an answer that is not valid HTTP",
        f"could not reach EGP: 127.0.0.1:{hostile.port} sent a body that ended early or was"
        " not validly framed",
    )


# --- Where the client may go ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "location"),
    [
        (302, "http://169.254.169.254/latest/meta-data/iam/security-credentials/"),
        (307, "{url}/elsewhere"),
        (301, "{url}/v5/models?stolen=1"),
    ],
    ids=["302-to-metadata", "307-same-host-other-path", "301-same-path"],
)
async def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(
    hostile: HostileServer,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    status: int,
    location: str,
) -> None:
    hostile.behaviour = redirect(location.format(url=hostile.url), status)

    error = await provoke(f"{status} redirect", connect(retries=1).list_models())

    assert type(error) is RequestError
    assert error.reason == "RequestError"
    assert error.status_code == status
    assert "169.254" not in error.message
    [request] = hostile.requests
    assert (request.path, request.query) == ("/v5/models", {"limit": ["500"]})
    assert hostile.connections == 1
    assert_discreet(error, caplog)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/latest/",
        "http://metadata.google.internal/",
    ],
)
def test_a_metadata_base_url_is_refused_before_any_request(base_url: str) -> None:
    with pytest.raises(EndpointRefusedError) as raised:
        EGPClient(api_key=API_KEY, base_url=base_url, limits=LIMITS)

    assert raised.value.reason == "EndpointRefused"
    assert all(secret not in str(raised.value) for secret in SECRETS)


def test_a_host_outside_the_allowed_hosts_is_refused_before_any_connection(
    hostile: HostileServer,
) -> None:
    policy = EndpointPolicy.from_patterns(["api.egp.scale.com"])

    with pytest.raises(EndpointRefusedError, match="localhost is not in EGP_OPERATOR_ALLOWED"):
        EGPClient(
            api_key=API_KEY, base_url=f"http://localhost:{hostile.port}/", endpoint_policy=policy
        )

    assert hostile.connections == 0
    assert hostile.requests == []


async def test_a_name_resolving_outside_the_allowed_networks_is_refused_at_connect_time(
    hostile: HostileServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    # Names outside the allowed names are judged by the addresses they resolve to; localhost's
    # are 127.0.0.1 (and ::1), not the one network allowed.
    client = connect(
        base_url=f"http://localhost:{hostile.port}/",
        endpoint_policy=EndpointPolicy.from_patterns(["127.0.0.2/32"]),
    )

    error = await provoke("name outside the allowed networks", client.list_models())

    assert isinstance(error, EndpointRefusedError)
    assert "is not in EGP_OPERATOR_ALLOWED_HOSTS" in error.message
    assert hostile.connections == 0
    assert hostile.requests == []
    assert_discreet(error, caplog)


async def test_a_legacy_numeric_host_is_judged_as_the_address_it_resolves_to(
    hostile: HostileServer,
    connect: Connect,
    sleeps: RecordedSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # "0" looks like a name, and resolves to 0.0.0.0, which on Linux reaches this host: the URL
    # check reads it as the address the resolver would give.
    resolved = {info[4][0] for info in socket.getaddrinfo("0", hostile.port, socket.AF_INET)}
    assert resolved == {"0.0.0.0"}  # noqa: S104 - an address under test, not one bound
    with pytest.raises(EndpointRefusedError) as raised:
        connect(base_url=f"http://0:{hostile.port}/", retries=1)

    error = raised.value
    assert error.reason == "EndpointRefused"
    assert "resolves to 0.0.0.0" in error.message
    assert sleeps.delays == [], "a refused endpoint is not tried again"
    assert hostile.connections == 0
    assert hostile.requests == []
    assert_discreet(error, caplog)
