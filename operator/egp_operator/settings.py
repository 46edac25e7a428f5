"""Operator-wide settings, read once from the environment (`EGP_OPERATOR_*`).

Per-account choices live on the EGPSource; these are the knobs of the process itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from egp_operator.egp.client import ReadLimits
from egp_operator.egp.connections import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_HOST
from egp_operator.egp.endpoint import EndpointPolicy
from egp_operator.egp.models import MAX_PAGE_SIZE, MIN_PAGE_SIZE

_READ = ReadLimits()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EGP_OPERATOR_", frozen=True)

    kube_concurrency: int = Field(default=16, ge=1, le=256, description="parallel API writes")
    status_heartbeat_seconds: float = Field(
        default=300, ge=10, description="rewrite an unchanged EGPSource status this often"
    )
    egp_timeout_seconds: float = Field(default=30, gt=0)
    egp_max_retries: int = Field(default=3, ge=0, le=10)
    egp_verify_tls: bool = Field(default=True, description="verify EGP's TLS certificate")
    egp_ca_file: str | None = Field(default=None, description="extra CA bundle for EGP")
    max_connections_per_host: int = Field(
        default=MAX_CONNECTIONS_PER_HOST,
        ge=1,
        le=MAX_CONNECTIONS,
        description="connections open at once to one EGP endpoint (scheme, host, port), of the"
        f" {MAX_CONNECTIONS} every source shares",
    )
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated hosts (`api.egp.scale.com`, `*.example.com`) and networks"
        " (`10.0.0.0/8`) a baseURL may name; empty allows any host but link-local and metadata"
        " addresses, which are always refused",
    )
    max_page_bytes: int = Field(
        default=_READ.max_page_bytes,
        ge=64 * 1024,
        description="the largest EGP response body read",
    )
    max_listing_bytes: int = Field(
        default=_READ.max_listing_bytes,
        ge=64 * 1024,
        description="all the pages of one listing together",
    )
    max_models_per_source: int = Field(
        default=_READ.max_models,
        ge=1,
        description="past it a listing is refused and nothing is changed",
    )
    listings_memory_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1024 * 1024,
        description="what all the cycles in flight may hold of their listings together (bodies"
        " being read, records kept); a namespace at most a quarter of it",
    )
    max_secret_watches: int = Field(
        default=128,
        ge=0,
        le=1000,
        description="Secrets watched at once (by name, each a connection of ~320 KB), a"
        " namespace at most a quarter of them; the sources of a Secret past it read it every"
        " cycle, and 0 watches none",
    )
    egp_max_requests_per_cycle: int = Field(
        default=_READ.max_requests,
        ge=1,
        description="requests to EGP one cycle may send, retries included",
    )
    min_page_size: int = Field(
        default=MIN_PAGE_SIZE,
        ge=1,
        le=MAX_PAGE_SIZE,
        description="the fewest models asked for per page; a source's smaller pageSize is"
        " raised to it",
    )
    egp_request_deadline_seconds: float = Field(
        default=_READ.request_deadline, gt=0, description="for a whole EGP request, body included"
    )
    cycle_deadline_seconds: float = Field(
        default=600, gt=0, description="for a whole sync cycle, retries included"
    )
    error_backoff_max_seconds: float = Field(default=300, ge=1)
    interval_jitter: float = Field(default=0.1, ge=0, le=0.5)
    peering_name: str = "egp-operator"
    priority: int | None = Field(
        default=None,
        description="kopf peering priority; unset picks a random one so replicas never tie",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object a line, with the object each line is about, for a"
        " log pipeline; `text`: kopf's lines for a person",
    )
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="/metrics; 0 turns it off")
    probe_host: str = Field(default="0.0.0.0", description="where /healthz listens")  # noqa: S104
    liveness_port: int = Field(default=8081, ge=0, le=65535)
    metrics_auth: bool = Field(
        default=True,
        description="serve /metrics only to bearer tokens the API server authenticates and"
        " authorizes for `get` on /metrics (TokenReview, SubjectAccessReview)",
    )
    metrics_cert_file: str | None = Field(
        default=None, description="serve /metrics over TLS with this PEM certificate (chain)"
    )
    metrics_key_file: str | None = Field(
        default=None, description="the private key of EGP_OPERATOR_METRICS_CERT_FILE"
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _a_whole_listing_fits_the_request_budget(self) -> Settings:
        """The largest listing a source may have, in the smallest pages it may be served,
        must fit the requests a cycle may send: else such a source could never sync."""
        pages = -(-self.max_models_per_source // self.min_page_size)
        if self.egp_max_requests_per_cycle < pages:
            raise ValueError(
                f"EGP_OPERATOR_EGP_MAX_REQUESTS_PER_CYCLE must be at least {pages}: a listing of"
                f" EGP_OPERATOR_MAX_MODELS_PER_SOURCE ({self.max_models_per_source}) models in"
                f" pages of EGP_OPERATOR_MIN_PAGE_SIZE ({self.min_page_size}) takes {pages}"
                " requests"
            )
        return self

    @model_validator(mode="after")
    def _tls_in_pairs(self) -> Settings:
        if (self.metrics_cert_file is None) != (self.metrics_key_file is None):
            raise ValueError("set both EGP_OPERATOR_METRICS_CERT_FILE and _KEY_FILE, or neither")
        return self

    def endpoint_policy(self) -> EndpointPolicy:
        return EndpointPolicy.from_patterns(self.allowed_hosts)

    def read_limits(self) -> ReadLimits:
        return ReadLimits(
            max_page_bytes=self.max_page_bytes,
            max_listing_bytes=self.max_listing_bytes,
            request_deadline=self.egp_request_deadline_seconds,
            max_models=self.max_models_per_source,
            max_requests=self.egp_max_requests_per_cycle,
        )
