"""A small async client for the Kubernetes API, for the sync cycle's reads and writes.

The official `kubernetes` package loads the configuration (kubeconfig or in-cluster, with token
refresh); requests go through one pooled `aiohttp.ClientSession`, because the official client is
synchronous and a sync cycle writes thousands of objects with bounded concurrency. Every request
is counted by verb in `egp_operator_kubernetes_requests_total`.

`KubeAPI` is what a cycle needs of it: the applier and the cycle take any implementation, so
their decisions are unit-tested against an in-memory one (egp_testbench/fake_kube.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final, Protocol
from urllib.parse import quote

import aiohttp
from kubernetes import config as kube_config
from kubernetes.client import Configuration

from egp_operator import metrics

JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
#: How long a bearer token read from the configuration is reused. Reading it runs the official
#: client's refresh hook (a kubeconfig reload, or a token file read), which cost ~4% of the
#: operator's CPU when done for every write; rotated tokens are still picked up within this.
TOKEN_REUSE_SECONDS: Final = 10.0
#: The longest line of a watch stream (one event, a whole object): the API server stores no
#: object over 1.5 MiB, and JSON with base64 values adds a third. A longer line ends the watch.
MAX_WATCH_EVENT_BYTES: Final = 3 * 1024 * 1024
#: A watch stream with no byte for this long past its own timeout is taken as dead.
WATCH_READ_GRACE_SECONDS: Final = 30.0


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

    @property
    def quota_exceeded(self) -> bool:
        """A create refused by the namespace's ResourceQuota (403 Forbidden, "exceeded
        quota"), which no retry within the cycle can change."""
        return self.status == 403 and "exceeded quota" in self.message


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


class KubeAPI(Protocol):
    """The Kubernetes requests a sync cycle makes; each raises KubeError on a failure."""

    concurrency: int

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any: ...

    async def create(self, path: str, body: Any) -> Any: ...

    async def json_patch(self, path: str, operations: list[dict[str, Any]] | str) -> Any:
        """`operations` as a list, or already encoded as JSON text (sent as it is)."""

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Any: ...

    async def delete(self, path: str) -> Any: ...


class WatchError(Exception):
    """A watch stream that ended on an error: no answer, a refusal, or a broken line."""


class KubeWatcher(Protocol):
    """Watch streams against the API server (a Secret watch's way in; tests use a fake)."""

    async def list_objects(self, path: str, params: dict[str, str]) -> Any: ...

    def watch(self, path: str, params: dict[str, str]) -> AsyncGenerator[dict[str, Any], None]:
        """The events of `GET path?watch=true&...` as the API server streams them, until it
        ends the stream; WatchError (or KubeError for an error status) when it breaks."""
        ...


class KubeClient:
    """JSON requests against the API server, at most `concurrency` at a time.

    On aiohttp (which kopf already uses): httpx spends ~3 ms of CPU per request over TLS,
    aiohttp ~0.4 ms, and on a small node the client's CPU competes with the API server's.
    Create it inside a running event loop.
    """

    def __init__(
        self, configuration: Configuration, *, concurrency: int = 16, max_watches: int = 0
    ) -> None:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        self._configuration = configuration
        self._base = configuration.host.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "egp-operator"}
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, ssl=context),
            timeout=aiohttp.ClientTimeout(total=30.0),
            headers=headers,
        )
        # Watches hold their connection for minutes: a pool of their own, so that they never
        # take the slots of the cycles' requests. HTTP/1.1, one connection per watch
        # (bench/FINDINGS.md section 11 says why not HTTP/2, and what one costs).
        self._watch_http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(max_watches, 1), ssl=context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30.0),
            headers=headers,
        )
        self._slots = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self._auth: dict[str, str] = {}
        self._auth_read_at = -TOKEN_REUSE_SECONDS

    async def aclose(self) -> None:
        await self._http.close()
        await self._watch_http.close()

    def _auth_headers(self) -> dict[str, str]:
        """Re-read every few seconds, so rotated tokens are used."""
        now = time.monotonic()
        if now - self._auth_read_at >= TOKEN_REUSE_SECONDS:
            bearer = self._configuration.auth_settings().get("BearerToken")
            value = bearer.get("value") if bearer else None
            self._auth = {"Authorization": str(value)} if value else {}
            self._auth_read_at = now
        return dict(self._auth)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        verb: str | None = None,
    ) -> Any:
        """`verb` names the request in the metric when it is not the method (LIST)."""
        if body is None or isinstance(body, str):
            content = body  # nothing, or JSON the caller encoded
        else:
            content = json.dumps(body, separators=(",", ":"))
        headers = self._auth_headers()
        if content is not None:
            headers["Content-Type"] = content_type
        async with self._slots:
            metrics.KUBE_REQUESTS.labels(verb or method).inc()
            try:
                async with self._http.request(
                    method, self._base + path, data=content, headers=headers, params=params
                ) as response:
                    payload = await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                # No answer (the API server restarting, a timeout): a failed request like any
                # other, for the cycle to count, not an exception that ends it.
                raise KubeError(0, "Unavailable", f"{type(error).__name__}: {error}") from None
        if 200 <= response.status < 300:
            return json.loads(payload) if payload else None
        raise _error(response.status, response.reason or "", payload)

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def list_objects(self, path: str, params: dict[str, str]) -> Any:
        return await self.request("GET", path, params=params, verb="LIST")

    async def create(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body=body)

    async def json_patch(self, path: str, operations: list[dict[str, Any]] | str) -> Any:
        return await self.request("PATCH", path, body=operations, content_type=JSON_PATCH)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def watch(
        self, path: str, params: dict[str, str]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Each line of the stream is one event; none may pass MAX_WATCH_EVENT_BYTES, and the
        stream may stay silent at most its `timeoutSeconds` and a grace (bookmarks keep a
        healthy one talking)."""
        silence = float(params.get("timeoutSeconds", 300)) + WATCH_READ_GRACE_SECONDS
        metrics.KUBE_REQUESTS.labels("WATCH").inc()
        try:
            async with self._watch_http.get(
                self._base + path,
                params={**params, "watch": "true"},
                headers=self._auth_headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=silence),
            ) as response:
                if response.status != 200:
                    raise _error(response.status, response.reason or "", await _head(response))
                async for line in _lines(response.content):
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise WatchError("the watch stream sent a line that is not JSON") from None
                    if isinstance(event, dict):
                        yield event
        except (aiohttp.ClientError, TimeoutError) as error:
            raise WatchError(f"{type(error).__name__}: {error}") from None


async def _head(response: aiohttp.ClientResponse) -> bytes:
    """The start of an error's body: enough for its Status, never an endless read."""
    return await response.content.read(64 * 1024)


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Lines as they arrive, each at most MAX_WATCH_EVENT_BYTES (aiohttp's own readline stops
    at 128 KiB, which a legal Secret passes)."""
    pending = bytearray()
    async for chunk in stream.iter_any():
        searched = len(pending)  # a long line arriving in pieces is scanned once, not again
        pending += chunk
        while (end := pending.find(b"\n", searched)) >= 0:
            line = bytes(pending[:end])
            del pending[: end + 1]
            searched = 0
            if line.strip():
                yield line
        if len(pending) > MAX_WATCH_EVENT_BYTES:
            raise WatchError(f"a watch event passed {MAX_WATCH_EVENT_BYTES} bytes")
    if pending.strip():
        yield bytes(pending)


def _error(status_code: int, reason: str, payload: bytes) -> KubeError:
    try:
        status = json.loads(payload)
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    return KubeError(
        status_code,
        str(status.get("reason") or reason),
        str(status.get("message") or payload[:300].decode(errors="replace")),
    )


def segment(value: str) -> str:
    """One path segment, whatever `value` holds: nothing is left unquoted, so no `/` or `..`
    can climb out of it, and an empty or dot segment is refused outright."""
    if value in ("", ".", ".."):
        raise ValueError(f"{value!r} cannot be a path segment")
    return quote(value, safe="")


def custom_path(group: str, version: str, namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/{group}/{version}/namespaces/{segment(namespace)}/{plural}"
    return f"{base}/{segment(name)}" if name else base


def core_path(namespace: str, plural: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{segment(namespace)}/{plural}"
    return f"{base}/{segment(name)}" if name else base
