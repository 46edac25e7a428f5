"""Async client for `GET /v5/models` that returns a listing only when it is complete.

It walks cursor pages exactly as the official SDK does (egp-api.md section 4.1), retries what is
worth retrying with capped exponential backoff and jitter while honouring `Retry-After` and
`retry-after-ms`, guards the walk against server-side loops, and raises typed errors
(`egp_operator.egp.errors`). The API key lives in a `SecretStr` and is scrubbed out of every
message the client builds, since bodies and URLs come from outside.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import os
import random
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
import pydantic
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from egp_operator.egp.errors import (
    AuthenticationError,
    EGPError,
    IncompleteListingError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestError,
    ServerError,
    TransportError,
    ValidationError,
)
from egp_operator.egp.models import MAX_PAGE_SIZE, InferenceModel, InferenceModelList

DEFAULT_BASE_URL: Final = "https://api.egp.scale.com"
MODELS_PATH: Final = "v5/models"
REDACTED: Final = "***"
_MAX_BODY_IN_MESSAGE: Final = 300

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Parsed = TypeVar("Parsed", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request. Defaults follow the official SDK's constants."""

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0


@dataclass(frozen=True)
class ModelListing:
    """A complete walk of `/v5/models`: every model once, keyed order kept as served."""

    models: tuple[InferenceModel, ...]
    pages: int
    requests: int
    total: int | None

    @property
    def by_id(self) -> dict[str, InferenceModel]:
        return {model.id: model for model in self.models}


def _tls_context(verify: bool | str) -> ssl.SSLContext:
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
        max_models: int = 100_000,
        verify: bool | str = True,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not self._api_key.get_secret_value():
            raise ValueError("the EGP API key is empty")
        self.base_url = _with_trailing_slash(base_url)
        self.account_id = account_id
        self.retry = retry or RetryPolicy()
        self.max_models = max_models
        self._sleep = sleep
        self.requests_sent = 0
        #: Answers by HTTP status code, or `transport_error`: what metrics count.
        self.status_counts: Counter[str] = Counter()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            verify=_tls_context(verify),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "egp-operator"},
        )

    def __repr__(self) -> str:
        return f"EGPClient(base_url={self.base_url!r}, account_id={self.account_id!r})"

    async def __aenter__(self) -> EGPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_models(
        self,
        *,
        page_size: int = 500,
        model_vendor: str | None = None,
        name: str | None = None,
    ) -> ModelListing:
        """Walk every page; return the listing only if the walk reached its end.

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
        max_pages = self.max_models // page_size + 2
        seen: dict[str, InferenceModel] = {}
        pages = 0
        requests_before = self.requests_sent

        def incomplete(why: str, cause: EGPError | None = None) -> IncompleteListingError:
            return IncompleteListingError(
                f"listing incomplete after {pages} page(s) and {len(seen)} model(s): {why}",
                pages=pages,
                models_seen=len(seen),
                cause=cause,
            )

        while True:
            if pages >= max_pages:
                raise incomplete(f"more than {max_pages} pages; the cursor may be looping")
            try:
                page = await self._get_page(params)
            except EGPError as error:
                if pages == 0:
                    raise
                raise incomplete(error.message, error) from error
            pages += 1
            if not page.items:
                if page.has_more:
                    raise incomplete("an empty page claims has_more=true")
                break
            for model in page.items:
                if model.id in seen:
                    raise incomplete(f"model id {model.id!r} was listed twice")
                seen[model.id] = model
            if page.has_more is False:
                break
            params["starting_after"] = page.items[-1].id
        if page.total is not None and len(seen) < page.total:
            raise incomplete(f"the server reports {page.total} models but listed {len(seen)}")
        log.debug("listed %d EGP models in %d page(s)", len(seen), pages)
        return ModelListing(
            models=tuple(seen.values()),
            pages=pages,
            requests=self.requests_sent - requests_before,
            total=page.total,
        )

    async def get_model(self, model_id: str) -> InferenceModel:
        """Fetch one model record (`GET /v5/models/{id}`)."""
        body = await self._get_json(f"{MODELS_PATH}/{quote(model_id, safe='')}", {})
        return self._parse(InferenceModel, body)

    async def _get_page(self, params: Mapping[str, str | int]) -> InferenceModelList:
        body = await self._get_json(MODELS_PATH, params)
        return self._parse(InferenceModelList, body)

    def _parse(self, model: type[Parsed], body: Any) -> Parsed:
        try:
            return model.model_validate(body)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            raise MalformedResponseError(
                self._scrub(
                    f"EGP sent a response of the wrong shape ({error.error_count()} problem(s); "
                    f"{where}: {first['msg']})"
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
        headers = {"x-api-key": self._api_key.get_secret_value()}
        if self.account_id:
            headers["x-selected-account-id"] = self.account_id
        self.requests_sent += 1
        try:
            response = await self._http.get(path, params=params, headers=headers)
        except httpx.TimeoutException as error:
            self.status_counts["transport_error"] += 1
            message = f"EGP timed out ({type(error).__name__})"
            raise _retryable(TransportError(message)) from None
        except httpx.TransportError as error:
            self.status_counts["transport_error"] += 1
            raise _retryable(
                TransportError(self._scrub(f"could not reach EGP: {type(error).__name__}: {error}"))
            ) from None
        self.status_counts[str(response.status_code)] += 1
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise MalformedResponseError(
                    self._scrub(
                        f"EGP answered {response.status_code} with a body that is not JSON: "
                        f"{_excerpt(response.text)!r}"
                    )
                ) from None
        raise self._status_error(response)

    def _status_error(self, response: httpx.Response) -> EGPError:
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        detail = body.get("detail", body) if isinstance(body, dict) else body
        text = detail if isinstance(detail, str) else json.dumps(detail, separators=(",", ":"))
        message = self._scrub(
            f"EGP answered {status} to GET /{response.request.url.path.lstrip('/')}: "
            f"{_excerpt(text)}"
        )
        error: RequestError
        if status == 401:
            error = AuthenticationError(message, status_code=status)
        elif status == 403:
            error = PermissionDeniedError(message, status_code=status)
        elif status == 404:
            error = NotFoundError(message, status_code=status)
        elif status == 422:
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
        return error

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
        secret = self._api_key.get_secret_value()
        return text.replace(secret, REDACTED) if secret else text


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
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _with_trailing_slash(base_url: str) -> str:
    """Keep a path prefix such as `/public`: httpx joins relative paths after the last slash."""
    return base_url if base_url.endswith("/") else base_url + "/"


def _excerpt(text: str) -> str:
    return text if len(text) <= _MAX_BODY_IN_MESSAGE else text[:_MAX_BODY_IN_MESSAGE] + "..."
