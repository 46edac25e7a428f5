"""Operator-wide settings, read once from the environment (`EGP_OPERATOR_*`).

Per-account choices live on the EGPSource; these are the knobs of the process itself.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    error_backoff_max_seconds: float = Field(default=300, ge=1)
    interval_jitter: float = Field(default=0.1, ge=0, le=0.5)
    peering_name: str = "egp-operator"
    priority: int | None = Field(
        default=None,
        description="kopf peering priority; unset picks a random one so replicas never tie",
    )
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="/metrics; 0 turns it off")
    probe_host: str = Field(default="0.0.0.0", description="where /healthz listens")  # noqa: S104
    liveness_port: int = Field(default=8081, ge=0, le=65535)
