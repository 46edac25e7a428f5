"""`/metrics`, served inside the operator's event loop to the callers the platform allows.

The metrics name every tenant's namespace and source, so they are not for any pod that can
reach the port. As controller-runtime's secure metrics serving does, a caller's bearer token is
authenticated with a TokenReview and authorized with a SubjectAccessReview for `get` on the
non-resource URL `/metrics` (what the shipped `egp-operator-metrics-reader` ClusterRole grants);
anything else is answered 401 or 403. `MetricsGate` holds the decisions: cached for a short
while under a hash of the token (never the token itself), and budgeted, so that a pod sending
random tokens cannot turn the endpoint into load on the API server. TLS is used when a
certificate and key are configured; they are reloaded when the files change (cert-manager
renews them in place). `EGP_OPERATOR_METRICS_AUTH=false` serves anyone, as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from egp_operator.kube import KubeClient, load_configuration
from egp_operator.settings import Settings

log = logging.getLogger(__name__)

PATH: Final = "/metrics"
#: How long a decision is reused. A token allowed is served for a minute without asking again
#: (a binding removed takes effect within it; controller-runtime caches five); a token refused
#: is refused for 30 s (as controller-runtime's authorizer), so repeating one costs nothing.
ALLOWED_TTL: Final = 60.0
REFUSED_TTL: Final = 30.0
#: A token that was allowed keeps a place of its own this long after: when its decision
#: expires, it is reviewed again without waiting for the budget of unknown tokens, so random
#: tokens cannot lock out the Prometheus that scrapes every 30 s. Only the API server's say-so
#: puts a token there, and at most MAX_KNOWN of them.
KNOWN_FOR: Final = 600.0
MAX_KNOWN: Final = 64
MAX_REFUSED: Final = 1024
#: Reviews of tokens not seen before: a burst of 10, then one a second; past it, 429. A review
#: is one TokenReview and, only for a token that authenticates, one SubjectAccessReview, so a
#: flood of t seconds makes at most 10 + t TokenReviews, whatever its rate.
REVIEW_BURST: Final = 10
REVIEW_RATE: Final = 1.0
REVIEW_CONCURRENCY: Final = 4
REVIEW_TIMEOUT: Final = 5.0
#: A ServiceAccount token is ~1 KiB; a longer "token" is refused without a review.
MAX_TOKEN_BYTES: Final = 8192
#: How often the TLS files are checked for a renewal, and a repeated warning may be logged.
CERT_CHECK_SECONDS: Final = 60.0
WARN_EVERY_SECONDS: Final = 60.0


@dataclass(frozen=True)
class Decision:
    """An HTTP status for the request (200 serves it) and why, for the caller and the log.
    Never holds the token."""

    status: int
    reason: str

    @property
    def allowed(self) -> bool:
        return self.status == 200


class ReviewError(Exception):
    """The API server gave no decision (unreachable, timed out, or refused the review)."""


class Reviewer(Protocol):
    """Who decides about one token: 200, 401 (not authenticated) or 403 (not authorized);
    ReviewError when it cannot tell."""

    async def review(self, token: str) -> Decision: ...

    async def aclose(self) -> None: ...


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if that is what it is."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _well_formed(token: str) -> bool:
    return len(token) <= MAX_TOKEN_BYTES and token.isascii() and token.isprintable()


@dataclass
class _Known:
    fresh_until: float
    known_until: float


class MetricsGate:
    """Decides who may read /metrics, asking `reviewer` as rarely as it can.

    Per token (by its SHA-256): an allowed decision is reused for ALLOWED_TTL and a refusal for
    REFUSED_TTL; concurrent requests with one token share one review; at most
    REVIEW_CONCURRENCY reviews run at once. Tokens never allowed before draw on a budget of
    REVIEW_BURST reviews refilled at REVIEW_RATE a second, and get 429 when it is spent: that
    is the most an unauthenticated flood can make the operator send to the API server. A
    token allowed within KNOWN_FOR is reviewed again outside that budget. A review that fails
    (the API server down, or the operator not allowed to review) answers 503 and is not kept."""

    def __init__(
        self,
        reviewer: Reviewer,
        *,
        clock: Callable[[], float] = time.monotonic,
        burst: int = REVIEW_BURST,
        rate: float = REVIEW_RATE,
    ) -> None:
        self._reviewer = reviewer
        self._clock = clock
        self._burst = burst
        self._rate = rate
        self._budget = float(burst)
        self._budget_at = clock()
        self._known: collections.OrderedDict[bytes, _Known] = collections.OrderedDict()
        self._refused: collections.OrderedDict[bytes, tuple[Decision, float]] = (
            collections.OrderedDict()
        )
        self._pending: dict[bytes, asyncio.Task[Decision]] = {}
        self._slots = asyncio.Semaphore(REVIEW_CONCURRENCY)
        self._warned_at: dict[str, float] = {}

    async def decide(self, authorization: str | None) -> Decision:
        """The decision for a request with this `Authorization` header."""
        token = bearer_token(authorization)
        if token is None:
            return Decision(401, "a bearer token is required")
        if not _well_formed(token):
            return Decision(401, "the bearer token is malformed")
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        self._expire(now)
        known = self._known.get(key)
        if known is not None and known.fresh_until > now:
            return Decision(200, "allowed")
        refused = self._refused.get(key)
        if refused is not None:
            return refused[0]
        pending = self._pending.get(key)
        if pending is None:
            if known is None and not self._spend(now):
                self._warn("budget", "refusing /metrics requests: too many unknown tokens")
                return Decision(429, "too many unknown tokens; try again later")
            pending = asyncio.get_running_loop().create_task(self._review(key, token))
            self._pending[key] = pending
        return await asyncio.shield(pending)

    def _spend(self, now: float) -> bool:
        self._budget = min(self._burst, self._budget + (now - self._budget_at) * self._rate)
        self._budget_at = now
        if self._budget < 1:
            return False
        self._budget -= 1
        return True

    async def _review(self, key: bytes, token: str) -> Decision:
        try:
            async with self._slots:
                decision = await self._reviewer.review(token)
        except ReviewError as error:
            self._warn("review", f"cannot review a /metrics caller's token: {error}")
            return Decision(503, "the token cannot be reviewed now")
        finally:
            del self._pending[key]
        now = self._clock()
        log.debug("/metrics: %s (%d)", decision.reason, decision.status)
        if decision.allowed:
            self._known[key] = _Known(now + ALLOWED_TTL, now + KNOWN_FOR)
            self._known.move_to_end(key)
            while len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
        else:
            self._known.pop(key, None)
            self._refused[key] = (decision, now + REFUSED_TTL)
            self._refused.move_to_end(key)
            while len(self._refused) > MAX_REFUSED:
                self._refused.popitem(last=False)
        return decision

    def _expire(self, now: float) -> None:
        """Drop what expired; both maps are in expiry order (one TTL each, renewed at the end)."""
        while self._refused and next(iter(self._refused.values()))[1] <= now:
            self._refused.popitem(last=False)
        while self._known and next(iter(self._known.values())).known_until <= now:
            self._known.popitem(last=False)

    async def aclose(self) -> None:
        for pending in list(self._pending.values()):
            pending.cancel()
        await self._reviewer.aclose()

    def _warn(self, kind: str, message: str) -> None:
        """At most one warning of a kind a minute: a flood must not flood the log too."""
        now = self._clock()
        if now - self._warned_at.get(kind, -WARN_EVERY_SECONDS) >= WARN_EVERY_SECONDS:
            self._warned_at[kind] = now
            log.warning("%s", message)


class _ReviewClient(KubeClient):
    """KubeClient's TLS and token handling, with a connection pool of its own: reviews neither
    wait behind a cycle's writes nor count as a cycle's requests
    (`egp_operator_kubernetes_requests_total`)."""

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._http.post(
                self._base + path,
                data=json.dumps(body),
                headers={**self._auth_headers(), "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=REVIEW_TIMEOUT),
            ) as response:
                payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ReviewError(f"{type(error).__name__}: {error}") from None
        if not 200 <= response.status < 300:
            raise ReviewError(f"{path}: {response.status} {payload[:200].decode(errors='replace')}")
        try:
            answer = json.loads(payload)
        except ValueError:
            raise ReviewError(f"{path}: an answer that is not JSON") from None
        if not isinstance(answer, dict):
            raise ReviewError(f"{path}: an answer that is not an object")
        return answer


class KubeReviewer:
    """Asks the API server: a TokenReview (who is this token? for the API server's own
    audiences, as a pod's ServiceAccount token is), then a SubjectAccessReview (may they
    `get` /metrics?). Needs `create` on both, which deploy/rbac.yaml grants."""

    def __init__(self, client: _ReviewClient) -> None:
        self._client = client

    @classmethod
    def from_configuration(cls) -> KubeReviewer:
        return cls(_ReviewClient(load_configuration(), concurrency=REVIEW_CONCURRENCY))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def review(self, token: str) -> Decision:
        try:
            return await self._review(token)
        except ReviewError as error:  # the API server's words; it has no reason to echo it
            raise ReviewError(str(error).replace(token, "<token>")) from None

    async def _review(self, token: str) -> Decision:
        tokens = await self._client.post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        )
        status = tokens.get("status") or {}
        user = status.get("user") or {}
        if not status.get("authenticated") or not user.get("username"):
            return Decision(401, "the bearer token is not valid")
        username = str(user["username"])
        subject = {key: user[key] for key in ("uid", "groups", "extra") if user.get(key)}
        access = await self._client.post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": username,
                    **subject,
                    "nonResourceAttributes": {"path": PATH, "verb": "get"},
                },
            },
        )
        if (access.get("status") or {}).get("allowed") is True:
            return Decision(200, f"{username} may get {PATH}")
        return Decision(403, f"{username} may not get {PATH}")


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class MetricsServer:
    """The /metrics endpoint on `host:port`; `gate` None serves every caller. Start and stop it
    inside the operator's event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        gate: MetricsGate | None,
        *,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.gate = gate
        self._cert_files = (cert_file, key_file) if cert_file and key_file else None
        self._cert_stamp = self._stamp()
        self._tls: ssl.SSLContext | None = None
        if cert_file and key_file:
            # The listening context hands every handshake the newest one (`_current`), so a
            # renewal replaces it whole: a failed load never leaves a context half-changed.
            self._tls = self._current = tls_context(cert_file, key_file)
            self._tls.sni_callback = self._use_current
        app = web.Application()
        app.router.add_get(PATH, self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        self._cert_watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._tls)
        await site.start()
        if self._tls is not None:
            self._cert_watch = asyncio.get_running_loop().create_task(self._watch_certificate())

    async def aclose(self) -> None:
        if self._cert_watch is not None:
            self._cert_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cert_watch
        await self._runner.cleanup()
        if self.gate is not None:
            await self.gate.aclose()

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if self.gate is not None:
            decision = await self.gate.decide(request.headers.get("Authorization"))
            if not decision.allowed:
                headers = {}
                if decision.status == 401:
                    headers["WWW-Authenticate"] = 'Bearer realm="egp-operator"'
                elif decision.status == 429:
                    headers["Retry-After"] = "1"
                return web.Response(
                    status=decision.status, text=decision.reason + "\n", headers=headers
                )
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        # Off the event loop, as prometheus_client's own server did: at thousands of sources a
        # scrape is megabytes of text.
        body = await asyncio.to_thread(encode, REGISTRY)
        response = web.Response(body=body, headers={"Content-Type": content_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):  # as Prometheus asks
            response.enable_compression(web.ContentCoding.gzip)
        return response

    def _stamp(self) -> tuple[tuple[int, int], ...] | None:
        if self._cert_files is None:
            return None
        try:
            stats = [os.stat(path) for path in self._cert_files]
        except OSError:
            return None
        return tuple((stat.st_mtime_ns, stat.st_size) for stat in stats)

    def _use_current(self, connection: ssl.SSLObject, _name: str | None, _: object) -> None:
        """Called at each TLS handshake (with or without SNI)."""
        connection.context = self._current

    def reload_certificate(self) -> bool:
        """Load the certificate and key again if their files changed; new connections get
        them. A renewal caught half-written is tried again at the next check."""
        stamp = self._stamp()
        if self._tls is None or self._cert_files is None or stamp == self._cert_stamp:
            return False
        try:
            self._current = tls_context(*self._cert_files)
        except (OSError, ssl.SSLError) as error:
            log.warning("cannot reload the /metrics TLS certificate, keeping the old: %s", error)
            return False
        self._cert_stamp = stamp
        log.info("reloaded the /metrics TLS certificate")
        return True

    async def _watch_certificate(self) -> None:
        while True:
            await asyncio.sleep(CERT_CHECK_SECONDS)
            self.reload_certificate()


async def serve(settings: Settings) -> MetricsServer:
    """Start /metrics as `settings` say (called at the operator's startup)."""
    gate = MetricsGate(KubeReviewer.from_configuration()) if settings.metrics_auth else None
    try:
        server = MetricsServer(
            settings.probe_host,
            settings.metrics_port,
            gate,
            cert_file=settings.metrics_cert_file,
            key_file=settings.metrics_key_file,
        )
        await server.start()
    except BaseException:  # a certificate that does not load, a port taken
        if gate is not None:
            await gate.aclose()
        raise
    log.info(
        "serving %s on %s:%d over %s, %s",
        PATH,
        settings.probe_host,
        settings.metrics_port,
        "TLS" if settings.metrics_cert_file else "plain HTTP",
        "to callers allowed to get it (TokenReview, SubjectAccessReview)"
        if gate is not None
        else "to every caller (EGP_OPERATOR_METRICS_AUTH is off)",
    )
    return server
