"""The EGP API as this operator uses it: pydantic models, an async client, typed errors."""

from egp_operator.egp.client import DEFAULT_BASE_URL, EGPClient, ModelListing
from egp_operator.egp.errors import (
    AuthenticationError,
    EGPError,
    EndpointRefusedError,
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
from egp_operator.egp.models import InferenceModel, InferenceModelList

__all__ = [
    "DEFAULT_BASE_URL",
    "AuthenticationError",
    "EGPClient",
    "EGPError",
    "EndpointRefusedError",
    "IncompleteListingError",
    "InferenceModel",
    "InferenceModelList",
    "MalformedResponseError",
    "ModelListing",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestBudgetExceededError",
    "RequestError",
    "ResponseTooLargeError",
    "ServerError",
    "TooManyModelsError",
    "TransportError",
    "ValidationError",
]
