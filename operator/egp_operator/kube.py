"""A small async client for the Kubernetes API, for the sync cycle's reads and writes.

The official `kubernetes` package loads the configuration (kubeconfig or in-cluster, with token
refresh); requests go through one pooled `httpx.AsyncClient`, because the official client is
synchronous and a sync cycle writes thousands of objects with bounded concurrency. Every request
is counted by verb, so tests and benchmarks can assert how many writes a cycle made.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import Generator
from typing import Any, Final
from urllib.parse import quote

import httpx
from kubernetes import config as kube_config
from kubernetes.client import Configuration

from egp_operator import metrics

JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
WRITE_VERBS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class KubeError(Exception):
    """An error status from the API server, with its `reason` (NotFound, AlreadyExists, ...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def load_configuration(kubeconfig: str | None = None) -> Configuration:
    """In-cluster config when running in a pod, else the kubeconfig (`KUBECONFIG` or default)."""
    configuration = Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    return configuration


class _ConfigurationAuth(httpx.Auth):
    """Ask the configuration for the token on every request, so rotated tokens are used."""

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        bearer = self.configuration.auth_settings().get("BearerToken")
        if bearer and bearer.get("value"):
            request.headers["Authorization"] = str(bearer["value"])
        yield request


class KubeClient:
    """JSON requests against the API server, at most `concurrency` at a time."""

    def __init__(self, configuration: Configuration, *, concurrency: int = 16) -> None:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        self._http = httpx.AsyncClient(
            base_url=configuration.host,
            verify=context,
            auth=_ConfigurationAuth(configuration),
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"Accept": "application/json", "User-Agent": "egp-operator"},
        )
        self._slots = asyncio.Semaphore(concurrency)
        self.requests: Counter[str] = Counter()

    @property
    def writes(self) -> int:
        return sum(count for verb, count in self.requests.items() if verb in WRITE_VERBS)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        content = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": content_type} if content is not None else {}
        async with self._slots:
            self.requests[method] += 1
            metrics.KUBE_REQUESTS.labels(method).inc()
            response = await self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        if response.is_success:
            return response.json() if response.content else None
        raise _error(response)

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body=body)

    async def json_patch(self, path: str, operations: list[dict[str, Any]]) -> Any:
        return await self.request("PATCH", path, body=operations, content_type=JSON_PATCH)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)


def _error(response: httpx.Response) -> KubeError:
    try:
        status = response.json()
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    return KubeError(
        response.status_code,
        str(status.get("reason") or response.reason_phrase),
        str(status.get("message") or response.text[:300]),
    )


def custom_path(group: str, version: str, namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/{group}/{version}/namespaces/{quote(namespace)}/{plural}"
    return f"{base}/{quote(name)}" if name else base


def core_path(namespace: str, plural: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    return f"{base}/{quote(name)}" if name else base
