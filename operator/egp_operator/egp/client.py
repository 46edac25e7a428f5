"""Async client for `GET /v5/models` that returns a listing only when it is complete.

It walks cursor pages exactly as the official SDK does (egp-api.md section 4.1), retries what is
worth retrying with capped exponential backoff and jitter while honouring `Retry-After` and
`retry-after-ms`, guards the walk against server-side loops, and raises typed errors
(`egp_operator.egp.errors`).

Whatever answers at a `baseURL` may be hostile, so reading is bounded: only allowed addresses
are called (`endpoint.py`), each response is streamed under a byte cap with a deadline for the
whole request (every byte on the wire counted: its head, chunk framing and trailers within
`HEAD_ALLOWANCE_BYTES` more), JSON may nest only so deep, a page may hold at most the items
asked for, and a listing at most `max_models`. A body that is not JSON is never quoted, nor is
what a transport failure's library says of the server's bytes. The API key lives in a
`SecretStr` and is scrubbed, in its escaped forms too, out of every message the client builds
before the message is cut to length.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import math
import os
import random
import re
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Generic, Protocol, TypeVar
from urllib.parse import quote, quote_plus

import httpx
import pydantic
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from egp_operator.bounds import (
    MAX_JSON_DEPTH,
    MAX_MESSAGE_LENGTH,
    MAX_QUOTED_LENGTH,
    cut,
    json_depth,
)
from egp_operator.egp.endpoint import EndpointPolicy
from egp_operator.egp.errors import (
    AuthenticationError,
    EGPError,
    IncompleteListingError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestBudgetExceededError,
    RequestError,
    ResponseTooLargeError,
    ServerError,
    TooManyModelsError,
    TransportError,
    ValidationError,
)
from egp_operator.egp.models import MAX_PAGE_SIZE, InferenceModel, InferenceModelList
from egp_operator.egp.rate_limits import RateLimits
from egp_operator.egp.transport import (
    MAX_INTERIM_ANSWERS,
    ON_CONNECTION,
    RESPONSE_BUDGET,
    ByteBudget,
    GuardedTransport,
    OwnWords,
    PoolWaitTimeout,
    ResponseOverBudget,
)

DEFAULT_BASE_URL: Final = "https://api.egp.scale.com"
MODELS_PATH: Final = "v5/models"
REDACTED: Final = "***"
_MAX_BODY_IN_MESSAGE: Final = 300

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class HeldBytes(Protocol):
    """A budget the bytes of a body in flight are held against (`sync.memory.CycleHold`):
    `add` raises when there is no room, and ends the request."""

    def add(self, size: int) -> None: ...

    def give_back(self, size: int) -> None: ...


Parsed = TypeVar("Parsed", bound=pydantic.BaseModel)
Kept = TypeVar("Kept")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request. Defaults follow the official SDK's constants."""

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0


@dataclass(frozen=True)
class ReadLimits:
    """How much one endpoint may make the client read; the settings' defaults are these.

    A page of 1,000 real models is 1-2 MiB. Parsed, JSON takes up to ~25 times its size (a
    page of tiny items, measured by the hostile-endpoint suite), so the cap also bounds the
    parsed page to ~100 MiB."""

    max_page_bytes: int = 4 * 1024 * 1024
    #: All the pages of one listing together: 20,000 real models are ~20 MiB.
    max_listing_bytes: int = 32 * 1024 * 1024
    request_deadline: float = 60.0
    max_models: int = 20_000
    #: Requests one client (a cycle) may send, retries included: a listing of `max_models`
    #: in pages of 100 (the least a source is served) is 200, with room for retries.
    max_requests: int = 400


#: What a response may take on the wire beyond its body's cap (`max_page_bytes`): its head
#: (interim answers, status line, headers) at most this, and its chunk framing and trailers
#: within it too. EGP's heads are under 2 KiB, and a 4 MiB body in 8 KiB chunks has 4 KiB of
#: framing; a server that needs more is sending something else.
HEAD_ALLOWANCE_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class ModelListing(Generic[Kept]):
    """A complete walk of `/v5/models`: every model once, in the order served, as what the
    walk was told to keep of each (`walk_models`), or as parsed (`list_models`)."""

    models: tuple[Kept, ...]
    requests: int


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """One context per setting (and CA file version) for the process: loading a CA bundle costs
    ~40 ms of CPU, which a client made per sync cycle would otherwise pay every cycle."""
    ca_file_version = os.stat(verify).st_mtime_ns if isinstance(verify, str) else 0
    return _cached_tls_context(verify, ca_file_version)


@functools.lru_cache(maxsize=8)
def _cached_tls_context(verify: bool | str, ca_file_version: int) -> ssl.SSLContext:
    """`ca_file_version` is only a cache key: a rotated CA file is read again."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


#: Sent with every request, beside the key and account.
_HEADERS: Final = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "User-Agent": "egp-operator",
}


class EGPClient:
    """One connection to one EGP account. Use as an async context manager."""

    def __init__(
        self,
        *,
        api_key: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        account_id: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        limits: ReadLimits | None = None,
        endpoint_policy: EndpointPolicy | None = None,
        verify: bool | str = True,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        rate_limits: RateLimits | None = None,
        memory: HeldBytes | None = None,
    ) -> None:
        """Raises `EndpointRefusedError` for a `base_url` the policy refuses, and ValueError
        for a key that is empty or not visible ASCII (a header could not carry it as is).
        `rate_limits`: shared with the other clients of the process, so that a 429 holds every
        client of this key and account (egp/rate_limits.py). `transport`: connections shared by
        the process (`connections.SharedConnections`), which `aclose` leaves open; without one,
        the client opens its own. `memory`: what the bytes of each body in flight are held
        against until it is parsed, so that many slow bodies at once are budgeted too.
        Requests go straight to the transport: no redirect is
        followed and no cookie kept, and an `httpx.AsyncClient` would cost a source's cycle
        more CPU than the request itself (bench/FINDINGS.md section 9)."""
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        check_api_key(self._api_key.get_secret_value())
        policy = endpoint_policy or EndpointPolicy()
        policy.check_url(base_url)
        self.base_url = _with_trailing_slash(base_url)
        self.account_id = account_id
        self.retry = retry or RetryPolicy()
        self.limits = limits or ReadLimits()
        self._sleep = sleep
        self._secret_forms = _secret_forms(self._api_key.get_secret_value())
        self._rate_limits = rate_limits or RateLimits()
        self._limit_key = self._rate_limits.key(
            self.base_url, account_id, self._api_key.get_secret_value()
        )
        self.requests_sent = 0
        self.bytes_read = 0
        #: Answers by HTTP status code, or `transport_error`: what metrics count.
        self.status_counts: Counter[str] = Counter()
        self._timeouts = httpx.Timeout(timeout).as_dict()
        self._memory = memory
        #: Bytes of the body in flight held against `memory`, given back when it is parsed.
        self._body_held = 0
        self._owns_transport = transport is None
        self._transport = transport or GuardedTransport(policy, tls_context(verify))

    def __repr__(self) -> str:
        return f"EGPClient(base_url={self.base_url!r}, account_id={self.account_id!r})"

    async def __aenter__(self) -> EGPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_transport:
            await self._transport.aclose()

    async def list_models(
        self,
        *,
        page_size: int = 500,
        model_vendor: str | None = None,
        name: str | None = None,
    ) -> ModelListing[InferenceModel]:
        """Walk every page and keep every model as parsed (`walk_models` keeps less)."""
        return await self.walk_models(
            _as_parsed, page_size=page_size, model_vendor=model_vendor, name=name
        )

    async def walk_models(
        self,
        keep: Callable[[InferenceModel], Kept],
        *,
        page_size: int = 500,
        model_vendor: str | None = None,
        name: str | None = None,
    ) -> ModelListing[Kept]:
        """Walk every page; return the listing only if the walk reached its end.

        Each page is parsed, each of its models handed to `keep`, and the page dropped before
        the next one is asked for: the walk holds what `keep` returns, not what a page's bytes
        became once parsed. `keep` may raise to end the walk (its own budget).

        A failure on the first page raises its own typed error; a failure after it, or a loop
        guard (an id seen twice, an empty page that claims more, too many pages, fewer models
        than `total`), raises `IncompleteListingError`, so a caller can never prune on a short
        listing.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        params: dict[str, str | int] = {"limit": page_size}
        if model_vendor is not None:
            params["model_vendor"] = model_vendor
        if name is not None:
            params["name"] = name
        max_models = self.limits.max_models
        max_pages = max_models // page_size + 2
        kept: dict[str, Kept] = {}
        pages = 0
        total: int | None = None
        requests_before = self.requests_sent
        bytes_before = self.bytes_read

        def incomplete(why: str, cause: EGPError | None = None) -> IncompleteListingError:
            return IncompleteListingError(
                self._message(
                    f"listing incomplete after {pages} page(s) and {len(kept)} model(s): {why}"
                ),
                pages=pages,
                models_seen=len(kept),
                cause=cause,
            )

        while True:
            if pages >= max_pages:
                raise incomplete(f"more than {max_pages} pages; the cursor may be looping")
            try:
                page = await self._get_page(params, page_size)
            except EGPError as error:
                if pages == 0 or isinstance(error, TooManyModelsError | ResponseTooLargeError):
                    raise
                raise incomplete(error.message, error) from error
            pages += 1
            if self.bytes_read - bytes_before > self.limits.max_listing_bytes:
                raise ResponseTooLargeError(
                    f"EGP's pages add up to more than {self.limits.max_listing_bytes} bytes"
                    " (EGP_OPERATOR_MAX_LISTING_BYTES); nothing was changed"
                )
            total = page.total
            if total is not None and total > max_models:
                raise TooManyModelsError(
                    f"EGP reports {total} models, more than the {max_models} a source may"
                    " mirror (EGP_OPERATOR_MAX_MODELS_PER_SOURCE); nothing was changed"
                )
            if not page.items:
                if page.has_more:
                    raise incomplete("an empty page claims has_more=true")
                break
            for model in page.items:
                if model.id in kept:
                    raise incomplete(f"model id {_quoted(model.id)} was listed twice")
                kept[model.id] = keep(model)
            if len(kept) > max_models:
                raise TooManyModelsError(
                    f"EGP listed more than the {max_models} models a source may mirror"
                    " (EGP_OPERATOR_MAX_MODELS_PER_SOURCE); nothing was changed"
                )
            if page.has_more is False:
                break
            params["starting_after"] = page.items[-1].id
            del page, model  # the parsed page goes before the next one is read
        if total is not None and len(kept) < total:
            raise incomplete(f"the server reports {total} models but listed {len(kept)}")
        log.debug("listed %d EGP models in %d page(s)", len(kept), pages)
        return ModelListing(
            models=tuple(kept.values()), requests=self.requests_sent - requests_before
        )

    async def _get_page(
        self, params: Mapping[str, str | int], page_size: int
    ) -> InferenceModelList:
        body = await self._get_json(MODELS_PATH, params)
        items = body.get("items") if isinstance(body, dict) else None
        if isinstance(items, list) and len(items) > page_size:
            raise MalformedResponseError(
                f"EGP sent a page of {len(items)} models, more than the {page_size} asked for"
            )
        return self._parse(InferenceModelList, body)

    def _parse(self, model: type[Parsed], body: Any) -> Parsed:
        try:
            return model.model_validate(body)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            raise MalformedResponseError(
                self._message(
                    f"EGP sent a response of the wrong shape ({error.error_count()} problem(s); "
                    f"{_quoted(where)}: {first['msg']})"
                )
            ) from None

    async def _get_json(self, path: str, params: Mapping[str, str | int]) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_retries + 1),
            wait=self._delay_before_retry,
            retry=retry_if_exception(lambda error: getattr(error, "should_retry", False)),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get_json_once(path, params)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _get_json_once(self, path: str, params: Mapping[str, str | int]) -> Any:
        """One request. Every error it raises leaves through `_redacted`: its message may
        quote anything the endpoint sent (a detail, a header), so the scrub is done here,
        once, for all of them."""
        if self.requests_sent >= self.limits.max_requests:
            raise RequestBudgetExceededError(
                f"the cycle sent the {self.limits.max_requests} requests to EGP it may send"
                " (EGP_OPERATOR_EGP_MAX_REQUESTS_PER_CYCLE); nothing was changed"
            )
        try:
            return await self._request_json(path, params)
        except EGPError as error:
            raise self._redacted(error) from None
        finally:  # the body is parsed, or dropped: its bytes are no longer held
            if self._memory is not None and self._body_held:
                self._memory.give_back(self._body_held)
            self._body_held = 0

    def _redacted(self, error: EGPError) -> EGPError:
        error.message = self._message(error.message)
        error.args = (error.message,)
        return error

    async def _request_json(self, path: str, params: Mapping[str, str | int]) -> Any:
        """One request. Its deadline starts when it has a connection: a wait for the shared
        pool is bounded apart (the pool timeout), so that a request queued behind other
        tenants' slow endpoints still gives its own endpoint the whole deadline, and a deadline
        missed is the endpoint's doing."""
        headers = _HEADERS | {"x-api-key": self._api_key.get_secret_value()}
        if self.account_id:
            headers["x-selected-account-id"] = self.account_id
        held = self._rate_limits.wait(self._limit_key)
        if held:
            await self._sleep(held)  # another client of this key and account was told to wait
        self.requests_sent += 1
        deadline = self.limits.request_deadline
        pool_wait = self._timeouts.get("pool") or 0.0
        budget = ByteBudget(
            head=HEAD_ALLOWANCE_BYTES, total=self.limits.max_page_bytes + HEAD_ALLOWANCE_BYTES
        )
        answered = False
        try:
            async with asyncio.timeout(pool_wait + deadline) as clock:
                loop = asyncio.get_running_loop()

                def start_the_deadline() -> None:
                    clock.reschedule(loop.time() + deadline)

                request = httpx.Request(
                    "GET",
                    self.base_url + path,
                    params=params,
                    headers=headers,
                    extensions={
                        "timeout": self._timeouts,
                        RESPONSE_BUDGET: budget,
                        ON_CONNECTION: start_the_deadline,
                    },
                )
                response = await self._transport.handle_async_request(request)
                answered = True
                try:
                    self.status_counts[str(response.status_code)] += 1
                    body = await self._read_body(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            self.status_counts["transport_error"] += 1
            message = f"EGP did not send a whole response within the {deadline:g}s deadline"
            raise _retryable(TransportError(message)) from None
        except ResponseOverBudget as error:
            if not answered:
                self.status_counts["transport_error"] += 1
            raise ResponseTooLargeError(_over_budget_message(error)) from None
        except PoolWaitTimeout as error:
            self.status_counts["transport_error"] += 1
            raise _retryable(TransportError(str(error))) from None
        except httpx.TimeoutException as error:
            self.status_counts["transport_error"] += 1
            raise _retryable(TransportError(f"EGP timed out: {_described(error)}")) from None
        except httpx.TransportError as error:
            self.status_counts["transport_error"] += 1
            raise _retryable(TransportError(f"could not reach EGP: {_described(error)}")) from None
        if response.is_success:
            return self._decode(response, body)
        raise self._status_error(response, body, path)

    async def _read_body(self, response: httpx.Response) -> bytes:
        """The whole body, refused early when it is bigger than a page may be."""
        cap = self.limits.max_page_bytes
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise MalformedResponseError(
                f"EGP sent a body in Content-Encoding {_quoted(encoding)}, which the operator"
                " did not ask for"
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise ResponseTooLargeError(
                f"EGP announced a body of {int(declared)} bytes; a page may have {cap}"
                " (EGP_OPERATOR_MAX_PAGE_BYTES)"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():  # in the transport's chunks
            size += len(chunk)
            if size > cap:
                raise ResponseTooLargeError(
                    f"EGP sent a body of more than {cap} bytes (EGP_OPERATOR_MAX_PAGE_BYTES)"
                )
            if self._memory is not None:
                self._memory.add(len(chunk))
                self._body_held += len(chunk)
            chunks.append(chunk)
        self.bytes_read += size
        return b"".join(chunks)

    def _decode(self, response: httpx.Response, body: bytes) -> Any:
        """Parsed JSON. A body that is not JSON is described, never quoted: the endpoint may
        be anything a tenant points the operator at. JSON nested past what the parser can
        recurse through is malformed; rendering bounds the depth of what it mirrors."""
        try:
            return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError:
            raise MalformedResponseError(
                f"EGP answered {response.status_code} with JSON nested too deeply to read"
            ) from None
        except ValueError:
            content_type = response.headers.get("content-type", "no type")
            raise MalformedResponseError(
                f"EGP answered {response.status_code} with a body that is not JSON"
                f" ({len(body)} bytes of {_quoted(content_type)})"
            ) from None

    def _status_error(self, response: httpx.Response, body: bytes, path: str) -> EGPError:
        status = response.status_code
        try:
            parsed: Any = self._decode(response, body)
        except MalformedResponseError as not_json:
            parsed, detail_text = None, not_json.message
        else:
            detail = parsed.get("detail", parsed) if isinstance(parsed, dict) else parsed
            detail_text = detail if isinstance(detail, str) else _json_excerpt(detail)
        detail_excerpt = cut(self._scrub(detail_text), _MAX_BODY_IN_MESSAGE)
        # Scrubbed before the cut above; the whole message is scrubbed again by `_redacted`.
        prefix = httpx.URL(self.base_url).path  # `/`, or a path prefix of the base URL
        message = f"EGP answered {status} to GET {prefix}{path}: {detail_excerpt}"
        error: RequestError
        if status == 401:
            error = AuthenticationError(message, status_code=status)
        elif status == 403:
            error = PermissionDeniedError(message, status_code=status)
        elif status == 404:
            error = NotFoundError(message, status_code=status)
        elif status == 422:
            detail = parsed.get("detail") if isinstance(parsed, dict) else None
            items = detail if isinstance(detail, list) else []
            error = ValidationError(
                message,
                status_code=status,
                detail=[item for item in items if isinstance(item, dict)],
            )
        elif status == 429:
            error = RateLimitedError(message, status_code=status)
        elif status in (408, 409) or status >= 500:
            error = ServerError(message, status_code=status)
        else:
            error = RequestError(message, status_code=status)
        error.should_retry = _should_retry(response, default=error.retryable)
        error.retry_after = _retry_after_seconds(response.headers)
        if isinstance(error, RateLimitedError):
            self._hold_every_client(error.retry_after)
        return error

    def _hold_every_client(self, retry_after: float | None) -> None:
        """A 429 is about the key and account: every client of them waits as this one does
        (the delay EGP asked for, or the first retry delay)."""
        valid = retry_after is not None and 0 < retry_after <= self.retry.max_retry_after
        delay = retry_after if valid and retry_after is not None else self.retry.initial_delay
        self._rate_limits.hold(self._limit_key, delay)

    def _delay_before_retry(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hint = getattr(error, "retry_after", None)
        if hint is not None and 0 < hint <= self.retry.max_retry_after:
            return float(hint)
        exponential: float = self.retry.initial_delay * 2.0 ** (state.attempt_number - 1)
        return min(exponential, self.retry.max_delay) * (1 - 0.25 * random.random())

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "EGP request failed (%s); retry %d/%d in %.2fs",
            error,
            state.attempt_number,
            self.retry.max_retries,
            delay,
        )

    def _scrub(self, text: str) -> str:
        for form in self._secret_forms:
            text = text.replace(form, REDACTED)
        return text

    def _message(self, text: str, *, limit: int = MAX_MESSAGE_LENGTH) -> str:
        """Scrubbed first, then cut: a key cut in half by the limit would survive a scrub."""
        return cut(self._scrub(text), limit)


_TOO_DEEP: Final = object()
#: Visible ASCII: what an HTTP header can carry as it is, and what every key EGP issues is.
_API_KEY = re.compile(r"[\x21-\x7e]+")


def check_api_key(key: str) -> None:
    """ValueError unless `key` is a usable API key; the message never contains it."""
    if not key:
        raise ValueError("the EGP API key is empty")
    if not _API_KEY.fullmatch(key):
        raise ValueError("the EGP API key holds characters other than visible ASCII")


def _secret_forms(secret: str) -> tuple[str, ...]:
    """The key as it may appear in text: raw, and as repr, JSON and URLs escape it."""
    forms = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    }
    return tuple(sorted((form for form in forms if form), key=len, reverse=True))


def _json_excerpt(value: Any) -> str:
    """A short JSON rendering of an error detail; a detail too deep to render is named."""
    if json_depth(value) > MAX_JSON_DEPTH:
        return f"a JSON detail nested deeper than {MAX_JSON_DEPTH} levels"
    return json.dumps(value, separators=(",", ":"))


def _quoted(value: str) -> str:
    """An upstream value as a message may quote it: with its escapes visible, then short."""
    return cut(repr(value), MAX_QUOTED_LENGTH)


def _refuse_constant(name: str) -> float:
    """NaN and Infinity are not JSON, and no Kubernetes object can hold them."""
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A number too big for a float (1e999) would read as infinity: refused like Infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range is not a finite JSON number")
    return value


def _described(error: httpx.TransportError) -> str:
    """A transport failure as a message may say it: the transport's own words
    (`transport.OwnWords`), else the class name only, since its text may quote the server."""
    return str(error) if isinstance(error, OwnWords) else type(error).__name__


def _over_budget_message(error: ResponseOverBudget) -> str:
    if error.interim_answers is not None:
        return (
            f"EGP sent more than {MAX_INTERIM_ANSWERS} interim (1xx) answers before its"
            " response; the operator asks for none"
        )
    budget = error.budget
    if budget is not None and error.in_head:
        return f"EGP sent a response head of more than {budget.head} bytes"
    total = budget.total if budget is not None else 0
    return (
        f"EGP sent more than {total} bytes for one response: a body of at most"
        f" {total - HEAD_ALLOWANCE_BYTES} bytes (EGP_OPERATOR_MAX_PAGE_BYTES) and"
        f" {HEAD_ALLOWANCE_BYTES} for its head, chunk framing and trailers"
    )


def _as_parsed(model: InferenceModel) -> InferenceModel:
    return model


def _retryable(error: EGPError) -> EGPError:
    error.should_retry = True
    return error


def _should_retry(response: httpx.Response, *, default: bool) -> bool:
    override = str(response.headers.get("x-should-retry", "")).strip().lower()
    if override in ("true", "false"):
        return override == "true"
    return default


def _retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The server's requested delay, from `retry-after-ms` or `Retry-After` (seconds or date)."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):  # a year past datetime's is an overflow
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _with_trailing_slash(base_url: str) -> str:
    """Keep a path prefix such as `/public`: request paths are appended to it."""
    return base_url if base_url.endswith("/") else base_url + "/"
