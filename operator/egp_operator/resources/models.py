"""Pydantic models of the `egp-operator.io/v1alpha1` resources: one source of truth for the
CRD schemas (`resources/crds.py`), for reading specs and for writing status.

Field names are Python's; aliases are the Kubernetes (camelCase) names. Dump with
`by_alias=True, exclude_none=True` to get what the API server stores.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from egp_operator.egp.client import DEFAULT_BASE_URL

GROUP: Final = "egp-operator.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
SOURCE_KIND: Final = "EGPSource"
SOURCE_PLURAL: Final = "egpsources"
MODEL_KIND: Final = "EGPModel"
MODEL_PLURAL: Final = "egpmodels"

MIN_REFRESH_INTERVAL: Final = timedelta(seconds=10)

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta:
    """A Kubernetes-style duration such as `90s`, `5m` or `1h30m` (hours, minutes, seconds)."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _is_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_is_duration)]
DeletionPolicy = Literal["Retain", "Delete"]
Phase = Literal["Ready", "Deploying", "Failed", "DeploymentTimeout", "Unknown", "Missing"]
PHASES: Final[tuple[Phase, ...]] = (
    "Ready",
    "Deploying",
    "Failed",
    "DeploymentTimeout",
    "Unknown",
    "Missing",
)


class _Resource(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    def to_k8s(self) -> dict[str, Any]:
        """The dict the API server stores: camelCase names, no nulls."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SecretKeyRef(_Resource):
    """A key of a Secret in the EGPSource's own namespace."""

    name: str = Field(min_length=1, max_length=253)
    key: str = Field(default="apiKey", min_length=1, max_length=253)


class EGPSourceSpec(_Resource):
    """One connection to one EGP account: the anchor of a sync loop."""

    base_url: str = Field(default=DEFAULT_BASE_URL, alias="baseURL", pattern=r"^https?://")
    account_id: str | None = Field(default=None, alias="accountID")
    credentials_secret_ref: SecretKeyRef = Field(alias="credentialsSecretRef")
    model_vendor: str | None = Field(default=None, alias="modelVendor")
    refresh_interval: Duration = Field(default="60s", alias="refreshInterval")
    page_size: int = Field(default=500, ge=1, le=1000, alias="pageSize")
    deletion_policy: DeletionPolicy = Field(default="Retain", alias="deletionPolicy")
    missing_grace_period: Duration = Field(default="1h", alias="missingGracePeriod")
    suspend: bool = False

    @property
    def refresh(self) -> timedelta:
        return max(parse_duration(self.refresh_interval), MIN_REFRESH_INTERVAL)

    @property
    def grace(self) -> timedelta:
        return parse_duration(self.missing_grace_period)


class Condition(_Resource):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str = Field(alias="lastTransitionTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")


class ModelCounts(_Resource):
    """How many mirrored models are in each phase."""

    total: int = 0
    ready: int = 0
    deploying: int = 0
    failed: int = 0
    deployment_timeout: int = Field(default=0, alias="deploymentTimeout")
    unknown: int = 0
    missing: int = 0


class EGPSourceStatus(_Resource):
    conditions: list[Condition] = Field(default_factory=list)
    models: ModelCounts | None = None
    last_sync_time: str | None = Field(default=None, alias="lastSyncTime")
    last_successful_sync_time: str | None = Field(default=None, alias="lastSuccessfulSyncTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    message: str | None = None


class SourceRef(_Resource):
    name: str = Field(min_length=1, max_length=253)


class EGPModelSpec(_Resource):
    """Identity only; everything observed lives in status."""

    source_ref: SourceRef = Field(alias="sourceRef")
    model_id: str = Field(alias="modelID", min_length=1, max_length=253)


class CreatedBy(_Resource):
    user_id: str | None = Field(default=None, alias="userID")
    identity_type: str | None = Field(default=None, alias="identityType")


class EGPModelStatus(_Resource):
    """What was last seen upstream, and what it means for Kubernetes."""

    phase: Phase | None = None
    name: str | None = None
    vendor: str | None = None
    type: str | None = None
    status: str | None = None
    status_reason: str | None = Field(default=None, alias="statusReason")
    availability: str | None = None
    created_at: str | None = Field(default=None, alias="createdAt")
    created_by: CreatedBy | None = Field(default=None, alias="createdBy")
    vendor_configuration: JsonValue = Field(default=None, alias="vendorConfiguration")
    model_metadata: JsonValue = Field(default=None, alias="modelMetadata")
    extra_fields: dict[str, JsonValue] | None = Field(default=None, alias="extraFields")
    truncated_fields: list[str] | None = Field(default=None, alias="truncatedFields")
    missing_since: str | None = Field(default=None, alias="missingSince")
    last_sync_time: str | None = Field(default=None, alias="lastSyncTime")
    conditions: list[Condition] = Field(default_factory=list)
