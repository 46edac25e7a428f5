"""What the operator is compared with, against the same API server in the same run:

- the plain concurrent client: exactly the writes a mirror needs (POST, then PATCH /status;
  or the writes of a churn), with precomputed bodies, over httpx and over aiohttp at the
  operator's concurrency and nothing else in the process: the practical limit of this machine;
- the naive script: what a CronJob would do with the official `kubernetes` client, one GET and
  one PATCH after the other for every model of the listing.

Bodies come from the operator's own planner, so every baseline writes the same bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from bench.kubeapi import JSON_PATCH, MERGE_PATCH, Requester, models_path
from egp_operator.egp.models import InferenceModel
from egp_operator.resources.models import (
    API_VERSION,
    GROUP,
    MODEL_KIND,
    MODEL_PLURAL,
    SOURCE_KIND,
    VERSION,
)
from egp_operator.sync.mirrored import MirroredModel, StoredStatus
from egp_operator.sync.model_status import observed_status
from egp_operator.sync.naming import object_name, short_hash
from egp_operator.sync.planner import (
    Create,
    Plan,
    SourcePolicy,
    Update,
    make_plan,
)
from egp_operator.sync.upstream import keep_for_mirror
from egp_operator.vocabulary import timestamp


@dataclass
class Timed:
    """Wall time, requests by verb, and the driver's own CPU time of one baseline run."""

    seconds: float
    requests: dict[str, int]
    cpu_seconds: float
    errors: int = 0

    @property
    def writes(self) -> int:
        return sum(n for verb, n in self.requests.items() if verb in ("POST", "PATCH", "DELETE"))


def parse(models: Iterable[dict[str, Any]]) -> list[InferenceModel]:
    return [InferenceModel.model_validate(model) for model in models]


def initial_plan(listing: Sequence[InferenceModel], namespace: str, source: str) -> Plan:
    kept = [keep_for_mirror(model) for model in listing]
    return make_plan(kept, [], SourcePolicy(namespace, source), datetime.now(UTC))


def churn_plan(
    listing: Sequence[InferenceModel],
    mirrored: Sequence[MirroredModel],
    namespace: str,
    source: str,
) -> Plan:
    kept = [keep_for_mirror(model) for model in listing]
    return make_plan(kept, mirrored, SourcePolicy(namespace, source), datetime.now(UTC))


def mirrored_after(creates: Sequence[Create]) -> list[MirroredModel]:
    """The index as it would be once `creates` are written."""
    return [MirroredModel(c.name, c.model_id, c.labels, StoredStatus.of(c.status)) for c in creates]


def create_body(create: Create, namespace: str, source: str, source_uid: str) -> dict[str, Any]:
    """The operator's create body (see sync/applier.py), byte for byte."""
    return {
        "apiVersion": API_VERSION,
        "kind": MODEL_KIND,
        "metadata": {
            "name": create.name,
            "namespace": namespace,
            "labels": create.labels,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": SOURCE_KIND,
                    "name": source,
                    "uid": source_uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {"sourceRef": {"name": source}, "modelID": create.model_id},
    }


def status_patch(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"op": "add", "path": "/status", "value": status}]


def event_body(namespace: str, name: str, reason: str, type_: str, message: str) -> dict[str, Any]:
    stamp = timestamp(datetime.now(UTC))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{name}.{short_hash(reason, stamp, length=12)}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": MODEL_KIND,
            "name": name,
            "namespace": namespace,
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": "egp-bench"},
        "reportingComponent": "egp-bench",
    }


async def _timed(kube: Requester, work: Sequence[Awaitable[None]]) -> Timed:
    cpu, started = time.process_time(), time.monotonic()
    results = await asyncio.gather(*work, return_exceptions=True)
    seconds = time.monotonic() - started
    errors = sum(1 for r in results if isinstance(r, BaseException))
    return Timed(seconds, dict(kube.requests), time.process_time() - cpu, errors)


async def plain_mirror(
    kube: Requester, creates: Sequence[Create], namespace: str, source: str, source_uid: str
) -> Timed:
    """POST then PATCH /status for every model, `concurrency` requests in flight."""
    bodies = [(c.name, create_body(c, namespace, source, source_uid), c.status) for c in creates]

    async def one(name: str, body: dict[str, Any], status: dict[str, Any]) -> None:
        await kube.request("POST", models_path(namespace), body)
        await kube.request(
            "PATCH",
            f"{models_path(namespace, name)}/status",
            status_patch(status),
            content_type=JSON_PATCH,
        )

    return await _timed(kube, [one(*b) for b in bodies])


async def plain_status_patches(kube: Requester, updates: Sequence[Update], namespace: str) -> Timed:
    """Only the status patches of a churn: the least any client could write."""
    patches = [(u.name, status_patch(u.status)) for u in updates if u.status is not None]

    async def one(name: str, operations: list[dict[str, Any]]) -> None:
        await kube.request(
            "PATCH", f"{models_path(namespace, name)}/status", operations, content_type=JSON_PATCH
        )

    return await _timed(kube, [one(*p) for p in patches])


async def plain_churn_writes(kube: Requester, churn: Plan, namespace: str) -> Timed:
    """The writes the operator's applier makes for a churn: labels, then status, per object;
    one Event per phase transition; all concurrently."""

    async def update(u: Update) -> None:
        if u.labels is not None:
            await kube.request(
                "PATCH",
                models_path(namespace, u.name),
                {"metadata": {"labels": u.labels}},
                content_type=MERGE_PATCH,
            )
        if u.status is not None:
            await kube.request(
                "PATCH",
                f"{models_path(namespace, u.name)}/status",
                status_patch(u.status),
                content_type=JSON_PATCH,
            )

    async def event(name: str, type_: str, reason: str, message: str) -> None:
        body = event_body(namespace, name, reason, type_, message)
        await kube.request("POST", f"/api/v1/namespaces/{namespace}/events", body)

    work: list[Awaitable[None]] = [update(u) for u in churn.updates]
    work += [event(e.object_name, e.type, e.reason, e.message) for e in churn.events]
    return await _timed(kube, work)


def naive_refresh(
    kubeconfig: str,
    egp_url: str,
    api_key: str,
    account_id: str,
    namespace: str,
    source: str,
    page_size: int,
) -> Timed:
    """A CronJob-style script: walk EGP, then for each model GET its EGPModel and PATCH its
    status, one request after the other, with the official client. Writes unconditionally."""
    cpu, started = time.process_time(), time.monotonic()
    requests: Counter[str] = Counter()
    models: list[dict[str, Any]] = []
    headers = {"x-api-key": api_key, "x-selected-account-id": account_id}
    with httpx.Client(base_url=egp_url, headers=headers, timeout=60) as egp:
        params: dict[str, str | int] = {"limit": page_size}
        while True:
            page = egp.get("/v5/models", params=params).raise_for_status().json()
            requests["EGP GET"] += 1
            models += page["items"]
            if not page.get("has_more"):
                break
            params["starting_after"] = page["items"][-1]["id"]
    api = k8s_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    errors = 0
    try:
        custom = k8s.CustomObjectsApi(api)
        now = timestamp(datetime.now(UTC))
        for raw in models:
            model = InferenceModel.model_validate(raw)
            name = object_name(namespace, source, model.id, model.name)
            try:
                requests["GET"] += 1
                current: Any = custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, MODEL_PLURAL, name
                )
                status = observed_status(
                    keep_for_mirror(model),
                    now=now,
                    previous=StoredStatus.of(current.get("status") or {}),
                )
                requests["PATCH"] += 1
                custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, MODEL_PLURAL, name, {"status": status}
                )
            except k8s.ApiException:
                errors += 1
    finally:
        api.close()
    return Timed(time.monotonic() - started, dict(requests), time.process_time() - cpu, errors)
