"""The benchmark's own async client for the API server (admin), and a list+watch tracker of
the EGPModels of a namespace that says when a goal (every model has a phase, a set of models
reached given phases) was first met, without polling LISTs of thousands of objects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import httpx
import yaml

from egp_operator.resources.models import GROUP, MODEL_PLURAL, VERSION

JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"


def load_crds(crds_dir: Path) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition under `crds_dir` (what users install)."""
    return [
        document
        for path in sorted(crds_dir.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and document.get("kind") == "CustomResourceDefinition"
    ]


class KubeAPIError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:300]}")
        self.status = status


def _encoded(body: Any, content_type: str) -> tuple[str | None, dict[str, str]]:
    """The request body and its headers, alike for both HTTP libraries."""
    if body is None:
        return None, {}
    return json.dumps(body, separators=(",", ":")), {"Content-Type": content_type}


def _decoded(status: int, text: str) -> Any:
    """The JSON answer, or the error, alike for both HTTP libraries."""
    if not 200 <= status < 300:
        raise KubeAPIError(status, text)
    return json.loads(text) if text else None


def models_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{MODEL_PLURAL}"
    return f"{base}/{name}" if name else base


class AdminKube:
    """JSON requests as admin, at most `concurrency` at a time, counted by verb."""

    def __init__(self, server: str, ca_file: Path, token: str, *, concurrency: int = 16) -> None:
        self.server, self.ca_file, self.token = server, ca_file, token
        self.http = httpx.AsyncClient(
            base_url=server,
            verify=ssl.create_default_context(cafile=str(ca_file)),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "egp-bench",
            },
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._slots = asyncio.Semaphore(concurrency)
        self.requests: Counter[str] = Counter()

    def fresh(self, concurrency: int) -> AdminKube:
        """Another client to the same server, with its own pool and counts."""
        return AdminKube(self.server, self.ca_file, self.token, concurrency=concurrency)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        content, headers = _encoded(body, content_type)
        async with self._slots:
            self.requests[method] += 1
            response = await self.http.request(
                method, path, content=content, headers=headers, params=params
            )
        return _decoded(response.status_code, response.text)

    async def list_all(self, path: str, page_size: int = 500) -> tuple[list[dict[str, Any]], str]:
        """Every item of a collection by chunked LIST, and the collection's resourceVersion."""
        items: list[dict[str, Any]] = []
        params = {"limit": str(page_size)}
        while True:
            answer = await self.request("GET", path, params=params)
            items += answer.get("items") or []
            token = answer["metadata"].get("continue")
            if not token:
                return items, str(answer["metadata"]["resourceVersion"])
            params = {"limit": str(page_size), "continue": token}

    async def apply_crds(
        self, crds: Sequence[dict[str, Any]], *, served: str | None = None
    ) -> list[str]:
        """Server-side apply the CRDs; their names, once Established and `served` (a path,
        by default the EGPModels') answers."""
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for crd in crds:
            await self.request(
                "PATCH",
                f"{base}/{crd['metadata']['name']}",
                crd,
                content_type=APPLY_PATCH,
                params={"fieldManager": "egp-bench", "force": "true"},
            )
        names = [crd["metadata"]["name"] for crd in crds]
        deadline = time.monotonic() + 60
        for name in names:
            while True:
                crd = await self.request("GET", f"{base}/{name}")
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not Established")
                await asyncio.sleep(0.2)
        # Discovery can lag Establishment by a moment: wait until the path answers.
        while True:
            try:
                await self.request("GET", served or models_path("default"))
                break
            except KubeAPIError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        return names

    async def prepare_for_operator(self, crds: Sequence[dict[str, Any]]) -> None:
        """The CRDs, established, and the ClusterKopfPeering the operator meets its peers in."""
        await self.apply_crds(crds)
        await self.request(
            "POST",
            "/apis/kopf.dev/v1/clusterkopfpeerings",
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": "egp-operator"},
            },
        )

    async def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await self.request("POST", "/api/v1/namespaces", body)

    async def create_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": dict(data),
        }
        await self.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body)

    async def server_version(self) -> str:
        answer = await self.request("GET", "/version")
        return str(answer.get("gitVersion", "?"))


class AioKubeAPI:
    """The same requests over aiohttp (which kopf already depends on): far less client CPU
    per request than httpx, so the plain client it makes is this machine's practical limit."""

    def __init__(self, server: str, ca_file: Path, token: str, *, concurrency: int = 16) -> None:
        self._session = aiohttp.ClientSession(
            server,
            connector=aiohttp.TCPConnector(
                limit=concurrency, ssl=ssl.create_default_context(cafile=str(ca_file))
            ),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "egp-bench",
            },
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self._slots = asyncio.Semaphore(concurrency)
        self.requests: Counter[str] = Counter()

    async def aclose(self) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        content, headers = _encoded(body, content_type)
        async with self._slots:
            self.requests[method] += 1
            async with self._session.request(
                method, path, data=content, headers=headers, params=params
            ) as response:
                text = await response.text()
        return _decoded(response.status, text)


Requester = AdminKube | AioKubeAPI
PLAIN_LIBRARIES: Final = ("httpx", "aiohttp")


def plain_client(library: str, admin: AdminKube, concurrency: int) -> Requester:
    """A fresh plain client on `library`, to the server `admin` talks to."""
    if library == "httpx":
        return admin.fresh(concurrency)
    return AioKubeAPI(admin.server, admin.ca_file, admin.token, concurrency=concurrency)


class Goal:
    """A condition on the tracked phases, kept up to date one change at a time (O(1) per
    watch event), that records when it was first met."""

    def __init__(self) -> None:
        self.met_at: float | None = None
        self.met = asyncio.Event()

    def change(self, name: str, before: str | None, after: str | None) -> None:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        raise NotImplementedError


class AllHavePhase(Goal):
    """At least `count` objects have a `status.phase`."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.phased = 0

    def change(self, name: str, before: str | None, after: str | None) -> None:
        self.phased += (after is not None) - (before is not None)

    @property
    def done(self) -> bool:
        return self.phased >= self.count


class PhasesAre(Goal):
    """Every named object has the expected phase."""

    def __init__(self, expected: Mapping[str, str]) -> None:
        super().__init__()
        self.expected = dict(expected)
        self.matching = 0

    def change(self, name: str, before: str | None, after: str | None) -> None:
        want = self.expected.get(name)
        if want is not None:
            self.matching += (after == want) - (before == want)

    @property
    def done(self) -> bool:
        return self.matching >= len(self.expected)


class ModelTracker:
    """name -> status.phase of a namespace's EGPModels, by LIST then WATCH (relisting if the
    watch expires), feeding the goals it is asked to wait for."""

    def __init__(self, kube: AdminKube, namespace: str) -> None:
        self.kube = kube.fresh(concurrency=2)
        self.namespace = namespace
        self.phases: dict[str, str | None] = {}
        self.events = 0
        self._goals: list[Goal] = []
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    async def __aenter__(self) -> ModelTracker:
        self._task = asyncio.create_task(self._run(), name=f"tracker {self.namespace}")
        synced = asyncio.create_task(self._synced.wait())
        await asyncio.wait({self._task, synced}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            synced.cancel()
            self._task.result()  # raises what stopped it
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.kube.aclose()

    async def wait(self, goal: Goal, within: float) -> float:
        """The monotonic time at which `goal` was first met (it may already be)."""
        for name, phase in self.phases.items():
            goal.change(name, None, phase)
        self._goals.append(goal)
        try:
            if goal.done:
                return time.monotonic()
            assert self._task is not None
            met = asyncio.create_task(goal.met.wait())
            finished, _ = await asyncio.wait(
                {met, self._task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
            if met not in finished:
                met.cancel()
                if self._task in finished:
                    self._task.result()
                raise TimeoutError(f"goal not met within {within:.0f} s in {self.namespace}")
            assert goal.met_at is not None
            return goal.met_at
        finally:
            self._goals.remove(goal)

    def _set(self, name: str, phase: str | None, *, deleted: bool = False) -> None:
        before = self.phases.get(name)
        if deleted:
            self.phases.pop(name, None)
        else:
            self.phases[name] = phase
        if before == phase:
            return
        now = time.monotonic()
        for goal in self._goals:
            goal.change(name, before, phase)
            if goal.met_at is None and goal.done:
                goal.met_at = now
                goal.met.set()

    async def _run(self) -> None:
        path = models_path(self.namespace)
        while True:
            items, version = await self.kube.list_all(path)
            listed = {item["metadata"]["name"]: _phase(item) for item in items}
            for name in set(self.phases) - set(listed):
                self._set(name, None, deleted=True)
            for name, phase in listed.items():
                self._set(name, phase)
            self._synced.set()
            while version:
                version = await self._watch(path, version)

    async def _watch(self, path: str, version: str) -> str:
        """Follow the watch until it ends; the version to resume from, or "" to relist."""
        params = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "600",
        }
        timeout = httpx.Timeout(60.0, read=None)
        async with self.kube.http.stream("GET", path, params=params, timeout=timeout) as response:
            if not response.is_success:
                return ""
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    return ""  # 410 Gone: the version is too old, relist
                version = str(obj["metadata"]["resourceVersion"])
                if kind == "BOOKMARK":
                    continue
                self.events += 1
                self._set(obj["metadata"]["name"], _phase(obj), deleted=kind == "DELETED")
        return version


def _phase(obj: Mapping[str, Any]) -> str | None:
    phase = (obj.get("status") or {}).get("phase")
    return str(phase) if phase else None
