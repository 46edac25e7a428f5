"""The Kubernetes words of our statuses, in one place: condition types, every reason a
condition or an Event can give, Event types, an EGPModel's phases, building a condition, and
timestamps as the API server writes them.

Reasons are what users alert and route on (`kubectl get -o jsonpath`, kstatus, Argo CD, the
`reason` label of the metrics), so each is a stable CamelCase word, listed once here and
explained in docs/troubleshooting.md (a test ties the two). An EGPModel's `Ready` condition,
and the Event of a model that changed phase, use its phase as the reason (`ModelPhase`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

# Condition types. Ready and Synced are ours; Reconciling and Stalled are kstatus' (Flux, kpt,
# the cli-utils applier); Truncated says a model's status lost a free-form field to its size.
READY: Final = "Ready"
SYNCED: Final = "Synced"
TRUNCATED: Final = "Truncated"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"
#: An EGPModel that changes phase too often (sync/phase_history.py); present only while it does.
FLAPPING: Final = "Flapping"
CONDITION_TYPES: Final = (READY, SYNCED, RECONCILING, STALLED, TRUNCATED, FLAPPING)

#: What an EGPModel's `status.phase` can be, and so the reason of its Ready condition.
Phase = Literal["Ready", "Deploying", "Failed", "DeploymentTimeout", "Unknown", "Missing"]


class ModelPhase:
    """Each phase by name, for code that means one phase."""

    READY: Final = "Ready"
    DEPLOYING: Final = "Deploying"
    FAILED: Final = "Failed"
    DEPLOYMENT_TIMEOUT: Final = "DeploymentTimeout"
    UNKNOWN: Final = "Unknown"
    #: Not in the last complete listing (kept for the grace period, or by the Retain policy).
    MISSING: Final = "Missing"


PHASES: Final[tuple[Phase, ...]] = (
    ModelPhase.READY,
    ModelPhase.DEPLOYING,
    ModelPhase.FAILED,
    ModelPhase.DEPLOYMENT_TIMEOUT,
    ModelPhase.UNKNOWN,
    ModelPhase.MISSING,
)


class EventType(StrEnum):
    """The two types of a Kubernetes Event."""

    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(StrEnum):
    """Every reason an EGPSource condition, an Event or the `reason` metric label gives."""

    # A cycle that completed, or did not run.
    SYNCED = "Synced"
    ACCOUNT_REACHABLE = "AccountReachable"
    SUSPENDED = "Suspended"
    PROGRESSING = "Progressing"
    # The source itself, or its Secret.
    INVALID_SPEC = "InvalidSpec"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_UNREADABLE = "SecretUnreadable"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    SECRET_KEY_INVALID = "SecretKeyInvalid"
    # What EGP, or the way to it, answered (egp/errors.py).
    TRANSPORT_ERROR = "TransportError"
    REQUEST_ERROR = "RequestError"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    PERMISSION_DENIED = "PermissionDenied"
    NOT_FOUND = "NotFound"
    VALIDATION_FAILED = "ValidationFailed"
    RATE_LIMITED = "RateLimited"
    SERVER_ERROR = "ServerError"
    ENDPOINT_REFUSED = "EndpointRefused"
    RESPONSE_TOO_LARGE = "ResponseTooLarge"
    TOO_MANY_MODELS = "TooManyModels"
    MALFORMED_RESPONSE = "MalformedResponse"
    INCOMPLETE_LISTING = "IncompleteListing"
    REQUEST_BUDGET_EXCEEDED = "RequestBudgetExceeded"
    # The cycle itself.
    WRITE_FAILED = "WriteFailed"
    QUOTA_EXCEEDED = "QuotaExceeded"
    MEMORY_BUDGET_EXHAUSTED = "MemoryBudgetExhausted"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    INTERNAL_ERROR = "InternalError"
    # An EGPModel's Truncated condition.
    STATUS_TOO_LARGE = "StatusTooLarge"
    # An EGPModel's Flapping condition, and the one Warning Event as it starts.
    PHASE_FLAPPING = "PhaseFlapping"
    # Events on the source about its objects.
    MISSING_PRUNED = "MissingPruned"
    UNOWNED_MODELS_IGNORED = "UnownedModelsIgnored"
    PHASE_CHANGES = "PhaseChanges"


#: Outcomes that no retry will change: a human must fix the credentials, the spec, the
#: endpoint or a setting. kstatus reads them as Failed; every other failure is retried, and
#: reads as InProgress (Reconciling) while it is.
STALLED_REASONS: Final = frozenset(
    {
        Reason.AUTHENTICATION_FAILED,
        Reason.PERMISSION_DENIED,
        Reason.VALIDATION_FAILED,
        Reason.ENDPOINT_REFUSED,
        Reason.MALFORMED_RESPONSE,
        Reason.RESPONSE_TOO_LARGE,
        Reason.TOO_MANY_MODELS,
        Reason.SECRET_NOT_FOUND,
        Reason.SECRET_UNREADABLE,
        Reason.SECRET_KEY_NOT_FOUND,
        Reason.SECRET_KEY_INVALID,
        Reason.INVALID_SPEC,
        Reason.QUOTA_EXCEEDED,
    }
)


def condition(
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: str,
    previous: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A metav1.Condition whose lastTransitionTime is kept while its status is unchanged."""
    value = "True" if status else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    unchanged = before is not None and before.get("status") == value
    since = before.get("lastTransitionTime") if unchanged and before else None
    return {
        "type": type_,
        "status": value,
        "reason": str(reason),  # a plain str: a Reason must serialise like any other
        "message": message,
        "lastTransitionTime": since or now,
    }


def timestamp(now: datetime) -> str:
    """RFC 3339 to the second, as Kubernetes writes metav1.Time."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: object) -> datetime:
    """A metav1.Time (`...Z`) as an aware datetime."""
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
