"""Each cycle's EGP client, made from what every source of the process shares: the settings
derived once (timeout, retries, read limits, the endpoint policy, TLS), the rate limits a 429
sets, and the pool of connections."""

from __future__ import annotations

from pydantic import SecretStr

from egp_operator.egp import EGPClient
from egp_operator.egp.client import HeldBytes, RetryPolicy, tls_context
from egp_operator.egp.connections import SharedConnections
from egp_operator.egp.rate_limits import RateLimits
from egp_operator.resources.models import EGPSourceSpec
from egp_operator.settings import Settings


class EGPClients:
    """One per syncer; `client` is called once per cycle, `aclose` when the operator stops."""

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.egp_timeout_seconds
        self._retry = RetryPolicy(max_retries=settings.egp_max_retries)
        self._read_limits = settings.read_limits()
        self._endpoint_policy = settings.endpoint_policy()
        #: A CA file's path, or whether to verify: the context is looked up per client, so
        #: that a rotated CA file is read again (`tls_context` caches it by the file's mtime).
        self._verify: bool | str = settings.egp_ca_file or settings.egp_verify_tls
        #: A 429 holds every source of its key and account (egp/rate_limits.py).
        self._rate_limits = RateLimits()
        self._connections = SharedConnections(
            self._endpoint_policy, max_connections_per_host=settings.max_connections_per_host
        )

    def client(self, spec: EGPSourceSpec, api_key: SecretStr, memory: HeldBytes) -> EGPClient:
        """The client of one cycle of a source with this spec and key; its bodies in flight
        are held against `memory`. Raises EndpointRefusedError for a refused baseURL."""
        return EGPClient(
            base_url=spec.base_url,
            api_key=api_key,
            account_id=spec.account_id,
            timeout=self._timeout,
            retry=self._retry,
            limits=self._read_limits,
            endpoint_policy=self._endpoint_policy,
            rate_limits=self._rate_limits,
            transport=self._connections.transport(tls_context(self._verify)),
            memory=memory,
        )

    async def aclose(self) -> None:
        await self._connections.aclose()
