"""Pydantic models of the `egp-operator.io/v1alpha1` resources: one source of truth for the
CRD schemas (`resources/crds.py`), for reading specs, and for the shape of every status. The
statuses themselves are built as plain dicts on the hot path (sync/model_status.py,
sync/source_status.py); tests/unit/sync/test_status_shape.py holds them to these models.

Field names are Python's; aliases are the Kubernetes (camelCase) names. Dump with
`by_alias=True, exclude_none=True` to get what the API server stores.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    field_validator,
    model_validator,
)

from egp_operator.bounds import MAX_HISTORY_MESSAGE_LENGTH, MAX_MODEL_ID_LENGTH, MAX_PHASE_HISTORY
from egp_operator.egp.client import DEFAULT_BASE_URL
from egp_operator.egp.endpoint import BASE_URL_PATTERN, check_base_url
from egp_operator.vocabulary import CONDITION_TYPES, Phase

GROUP: Final = "egp-operator.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
SOURCE_KIND: Final = "EGPSource"
SOURCE_PLURAL: Final = "egpsources"
MODEL_KIND: Final = "EGPModel"
MODEL_PLURAL: Final = "egpmodels"

MIN_REFRESH_INTERVAL: Final = timedelta(seconds=10)
#: Longer intervals make no sense for a mirror whose alerts judge it by its interval.
MAX_REFRESH_INTERVAL: Final = timedelta(hours=24)
#: A year: past it, Retain says what is meant.
MAX_MISSING_GRACE_PERIOD: Final = timedelta(days=365)
#: Set it on an EGPSource (to any new value, e.g. the time) to ask for a sync now; the value is
#: echoed to `status.lastHandledSyncRequest` once a cycle has handled it (as Flux does with
#: `reconcile.fluxcd.io/requestedAt` and `lastHandledReconcileAt`).
SYNC_REQUEST_ANNOTATION: Final = f"{GROUP}/sync-requested-at"

#: A Kubernetes object name (DNS-1123 subdomain): no slash, no dot segment, nothing a request
#: path could resolve outside the source's own namespace.
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A key of a Secret's data, as Kubernetes allows it.
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a pattern, not a secret

_DURATION = re.compile(r"^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")


def parse_duration(text: str) -> timedelta:
    """A Kubernetes-style duration such as `90s`, `5m` or `1h30m` (hours, minutes, seconds)."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:  # the pattern admits any number of digits
        raise ValueError(f"{text[:40]!r} is a duration too long to hold") from None


def _is_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_is_duration)]
DeletionPolicy = Literal["Retain", "Delete"]


class _Resource(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    def to_k8s(self) -> dict[str, Any]:
        """The dict the API server stores: camelCase names, no nulls."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SecretKeyRef(_Resource):
    """A key of a Secret in the EGPSource's own namespace: a name, never a path."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="The Secret's name, in the EGPSource's namespace.",
    )
    key: str = Field(
        default="apiKey",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="The key in the Secret's data that holds the EGP API key.",
    )


class EGPSourceSpec(_Resource):
    """One connection to one EGP account: the anchor of a sync loop."""

    _refresh: timedelta = PrivateAttr(default=MIN_REFRESH_INTERVAL)
    _grace: timedelta = PrivateAttr(default=timedelta(0))

    base_url: Annotated[str, AfterValidator(check_base_url)] = Field(
        default=DEFAULT_BASE_URL,
        alias="baseURL",
        max_length=2048,
        pattern=BASE_URL_PATTERN,
        description="The EGP API's base URL: http(s)://host[:port][/path], with no user,"
        " query or fragment. The operator's EGP_OPERATOR_ALLOWED_HOSTS may restrict the host.",
    )
    account_id: str | None = Field(
        default=None,
        alias="accountID",
        max_length=253,
        pattern=r"^[\x21-\x7e]+$",
        description="The EGP account whose models are mirrored, sent as x-selected-account-id;"
        " unset: the API key's default account.",
    )
    credentials_secret_ref: SecretKeyRef = Field(
        alias="credentialsSecretRef",
        description="The Secret, in this namespace, holding the EGP API key.",
    )
    model_vendor: str | None = Field(
        default=None,
        alias="modelVendor",
        max_length=64,
        pattern=r"^[a-z0-9_]+$",
        description="Mirror only the models of this vendor (e.g. openai, launch); unset: all.",
    )
    refresh_interval: Duration = Field(
        default="60s",
        alias="refreshInterval",
        description="How often the account's models are listed: a duration such as 30s, 5m or"
        " 1h30m, from 10s to 24h.",
    )
    page_size: int = Field(
        default=500,
        ge=1,
        le=1000,
        alias="pageSize",
        description="How many models to ask for per page of GET /v5/models; the operator asks"
        " for at least its EGP_OPERATOR_MIN_PAGE_SIZE (100 by default).",
    )
    deletion_policy: DeletionPolicy = Field(
        default="Retain",
        alias="deletionPolicy",
        description="What happens to the EGPModel of a model that vanished upstream: Retain"
        " keeps it, in phase Missing; Delete deletes it once missing for missingGracePeriod.",
    )
    missing_grace_period: Duration = Field(
        default="1h",
        alias="missingGracePeriod",
        description="How long a model must stay missing upstream before deletionPolicy Delete"
        " deletes its EGPModel: a duration such as 30s, 5m or 1h30m, at most 8760h (a year).",
    )
    suspend: bool = Field(
        default=False,
        description="While true, nothing is listed, created, updated or deleted.",
    )

    @field_validator("refresh_interval")
    @classmethod
    def _refresh_within_bounds(cls, text: str) -> str:
        """Bounded here as the CRD's CEL rules bound it: a spec stored before those rules is
        refused as an InvalidSpec, never held."""
        if parse_duration(text) > MAX_REFRESH_INTERVAL:
            raise ValueError(f"must be at most {_hours(MAX_REFRESH_INTERVAL)}")
        return text

    @field_validator("missing_grace_period")
    @classmethod
    def _grace_within_bounds(cls, text: str) -> str:
        if parse_duration(text) > MAX_MISSING_GRACE_PERIOD:
            raise ValueError(f"must be at most {_hours(MAX_MISSING_GRACE_PERIOD)}")
        return text

    @model_validator(mode="after")
    def _parse_durations_once(self) -> EGPSourceSpec:
        """The daemon reads them at every cycle: parsed once per spec."""
        self._refresh = max(parse_duration(self.refresh_interval), MIN_REFRESH_INTERVAL)
        self._grace = parse_duration(self.missing_grace_period)
        return self

    @property
    def refresh(self) -> timedelta:
        """refreshInterval, at least MIN_REFRESH_INTERVAL."""
        return self._refresh

    @property
    def grace(self) -> timedelta:
        return self._grace


def _hours(duration: timedelta) -> str:
    """A whole number of hours as a duration of the CRD's form (`24h`)."""
    return f"{int(duration.total_seconds()) // 3600}h"


class Condition(_Resource):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(
        description="The aspect this condition reports on: " + ", ".join(CONDITION_TYPES) + "."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="Why, as one CamelCase word.")
    message: str = Field(default="", description="Why, for humans.")
    last_transition_time: str = Field(
        alias="lastTransitionTime",
        description="When status last changed (RFC 3339).",
    )


class ModelCounts(_Resource):
    """How many mirrored models are in each phase."""

    total: int = Field(default=0, description="Every mirrored model, whatever its phase.")
    ready: int = Field(default=0, description="Models in phase Ready.")
    deploying: int = Field(default=0, description="Models in phase Deploying.")
    failed: int = Field(default=0, description="Models in phase Failed.")
    deployment_timeout: int = Field(
        default=0, alias="deploymentTimeout", description="Models in phase DeploymentTimeout."
    )
    unknown: int = Field(default=0, description="Models in phase Unknown.")
    missing: int = Field(default=0, description="Models in phase Missing.")


class EGPSourceStatus(_Resource):
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready: the account answers. Synced: the last sync cycle completed."
        " Reconciling: True while a failed cycle will be retried (kstatus: InProgress)."
        " Stalled: True when syncing needs a human: rejected credentials, a refused spec or"
        " endpoint (kstatus: Failed).",
    )
    models: ModelCounts | None = None
    last_sync_time: str | None = Field(
        default=None,
        alias="lastSyncTime",
        description="When the last sync cycle ended, whether it succeeded or not (RFC 3339).",
    )
    last_successful_sync_time: str | None = Field(
        default=None,
        alias="lastSuccessfulSyncTime",
        description="When the last complete sync cycle ended (RFC 3339).",
    )
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The metadata.generation of the spec the last sync cycle used.",
    )
    message: str | None = Field(default=None, description="Why the last sync cycle failed.")
    last_handled_sync_request: str | None = Field(
        default=None,
        alias="lastHandledSyncRequest",
        description="The value of the egp-operator.io/sync-requested-at annotation that the"
        " last sync cycle handled.",
    )


class SourceRef(_Resource):
    name: str = Field(
        min_length=1, max_length=253, description="The EGPSource's name, in this namespace."
    )


class EGPModelSpec(_Resource):
    """Identity only; everything observed lives in status."""

    source_ref: SourceRef = Field(
        alias="sourceRef", description="The EGPSource this model is mirrored from; immutable."
    )
    model_id: str = Field(
        alias="modelID",
        min_length=1,
        max_length=MAX_MODEL_ID_LENGTH,
        description="The model's id in EGP; immutable.",
    )


class CreatedBy(_Resource):
    user_id: str | None = Field(
        default=None, alias="userID", description="created_by_user_id, as EGP sent it."
    )
    identity_type: str | None = Field(
        default=None,
        alias="identityType",
        description="created_by_identity_type, as EGP sent it.",
    )


class PhaseTransition(_Resource):
    """One change of an EGPModel's phase, as the cycle that first saw it recorded it."""

    from_: Phase = Field(alias="from", description="The phase left.")
    to: Phase = Field(description="The phase entered.")
    time: str = Field(
        description="When the cycle that first listed the new phase ran (RFC 3339): the"
        " change happened within the source's refreshInterval before it."
    )
    message: str | None = Field(
        default=None,
        max_length=MAX_HISTORY_MESSAGE_LENGTH,
        description="The upstream status_reason at the change, on one line.",
    )


class EGPModelStatus(_Resource):
    """What was last seen upstream, and what it means for Kubernetes."""

    phase: Phase | None = Field(
        default=None,
        description="The upstream status in Kubernetes terms; Unknown for an upstream status this"
        " version does not know, Missing when the model vanished upstream.",
    )
    name: str | None = Field(default=None, description="The model's name in EGP.")
    vendor: str | None = Field(default=None, description="model_vendor, as EGP sent it.")
    type: str | None = Field(default=None, description="model_type, as EGP sent it.")
    status: str | None = Field(default=None, description="The upstream status, as EGP sent it.")
    status_reason: str | None = Field(
        default=None, alias="statusReason", description="status_reason, as EGP sent it."
    )
    availability: str | None = Field(
        default=None, description="model_availability, as EGP sent it."
    )
    created_at: str | None = Field(
        default=None, alias="createdAt", description="created_at, as EGP sent it."
    )
    created_by: CreatedBy | None = Field(
        default=None, alias="createdBy", description="Who created the model in EGP."
    )
    vendor_configuration: JsonValue = Field(
        default=None,
        alias="vendorConfiguration",
        description="vendor_configuration, as EGP sent it (free-form), with the values of"
        " model_image.env_vars masked by default.",
    )
    model_metadata: JsonValue = Field(
        default=None,
        alias="modelMetadata",
        description="model_metadata, as EGP sent it (free-form).",
    )
    extra_fields: dict[str, JsonValue] | None = Field(
        default=None,
        alias="extraFields",
        description="Fields EGP sent that this version does not know, by name.",
    )
    truncated_fields: list[str] | None = Field(
        default=None,
        alias="truncatedFields",
        description="The free-form fields left out: nested too deeply, or too big for the"
        " object to stay within a safe size.",
    )
    phase_since: str | None = Field(
        default=None,
        alias="phaseSince",
        description="When the current phase began (RFC 3339): the cycle that first listed it,"
        " so to within the source's refreshInterval. For a model first seen Deploying, its"
        " upstream createdAt; for one first seen in another phase, when it was first seen.",
    )
    history: list[PhaseTransition] | None = Field(
        default=None,
        max_length=MAX_PHASE_HISTORY,
        description=f"The last {MAX_PHASE_HISTORY} phase transitions, oldest first; written"
        " only when the phase changes.",
    )
    missing_since: str | None = Field(
        default=None,
        alias="missingSince",
        description="When the model was first found missing upstream (RFC 3339).",
    )
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The metadata.generation this status was written for.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready: True only while the upstream status is ready (reason: the phase)."
        " Synced: the last sync cycle saw this model. Reconciling: True while EGP is still"
        " deploying it (kstatus: InProgress). Stalled: True when it failed, timed out or"
        " vanished upstream (kstatus: Failed). Truncated: present when free-form fields were"
        " left out. Flapping: present while the model changes phase too often"
        " (docs/troubleshooting.md).",
    )
