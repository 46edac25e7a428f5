"""Typed errors of the EGP client.

Each error has a short, stable `reason` (vocabulary.Reason: status conditions, events and
metric labels)
and a message that never contains the API key: the client scrubs the key out of any text it
puts in an error, because response bodies and URLs come from outside.
"""

from __future__ import annotations

from typing import Any, ClassVar

from egp_operator.vocabulary import Reason


class EGPError(Exception):
    """Any failure to get a complete answer from EGP."""

    reason: ClassVar[Reason] = Reason.REQUEST_ERROR
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.should_retry = self.retryable
        self.retry_after: float | None = None


class TransportError(EGPError):
    """The request did not get an HTTP answer: connection refused or reset, or a timeout."""

    reason = Reason.TRANSPORT_ERROR
    retryable = True


class RequestError(EGPError):
    """An HTTP error status that no more specific class covers (400, 404 on a list, ...)."""

    reason = Reason.REQUEST_ERROR


class AuthenticationError(RequestError):
    """401: the API key is missing, wrong or revoked."""

    reason = Reason.AUTHENTICATION_FAILED


class PermissionDeniedError(RequestError):
    """403: the key is valid but may not read the selected account."""

    reason = Reason.PERMISSION_DENIED


class NotFoundError(RequestError):
    """404: on a list walk this means the cursor model vanished under us."""

    reason = Reason.NOT_FOUND


class ValidationError(RequestError):
    """422: EGP rejected the query; `detail` is FastAPI's list of pydantic errors."""

    reason = Reason.VALIDATION_FAILED

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 422,
        detail: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.detail: list[dict[str, Any]] = detail or []


class RateLimitedError(RequestError):
    """429 after the client's retries ran out."""

    reason = Reason.RATE_LIMITED
    retryable = True


class ServerError(RequestError):
    """408, 409 or 5xx after the client's retries ran out."""

    reason = Reason.SERVER_ERROR
    retryable = True


class EndpointRefusedError(EGPError):
    """The baseURL, or an address it resolves to, is one the operator may not call."""

    reason = Reason.ENDPOINT_REFUSED


class ResponseTooLargeError(EGPError):
    """A response bigger than the operator reads (EGP_OPERATOR_MAX_PAGE_BYTES)."""

    reason = Reason.RESPONSE_TOO_LARGE


class TooManyModelsError(EGPError):
    """More models than a source may mirror (EGP_OPERATOR_MAX_MODELS_PER_SOURCE)."""

    reason = Reason.TOO_MANY_MODELS


class RequestBudgetExceededError(EGPError):
    """A cycle sent as many requests as it may (EGP_OPERATOR_EGP_MAX_REQUESTS_PER_CYCLE)."""

    reason = Reason.REQUEST_BUDGET_EXCEEDED


class MalformedResponseError(EGPError):
    """A 2xx whose body is not JSON or not the documented shape."""

    reason = Reason.MALFORMED_RESPONSE


class IncompleteListingError(EGPError):
    """A list walk that did not reach its end; nothing may be pruned on it.

    `cause` is the error that stopped the walk (None for a loop guard), `pages` how many pages
    were read before it, `models_seen` how many models they held.
    """

    reason = Reason.INCOMPLETE_LISTING

    def __init__(
        self,
        message: str,
        *,
        pages: int,
        models_seen: int,
        cause: EGPError | None = None,
    ) -> None:
        super().__init__(message, status_code=cause.status_code if cause else None)
        self.pages = pages
        self.models_seen = models_seen
        self.cause = cause
