"""Execute a plan against the Kubernetes API.

Writes run concurrently (bounded by the client), each object's writes in order. Conflicts and
vanished objects are converged, not fatal: a create that finds the object already there writes
its status instead; an update or delete of an object that is gone is left to the next cycle,
whose plan recreates it. Any other error is collected, and the cycle reports it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from egp_operator.bounds import MAX_MESSAGE_LENGTH, cut
from egp_operator.kube import KubeAPI, KubeError, core_path, custom_path
from egp_operator.resources.models import (
    API_VERSION,
    GROUP,
    MODEL_KIND,
    MODEL_PLURAL,
    SOURCE_KIND,
    VERSION,
)
from egp_operator.sync.naming import short_hash
from egp_operator.sync.planner import Create, Delete, Event, Plan, Update
from egp_operator.vocabulary import timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceIdentity:
    """The EGPSource that owns the mirrored models."""

    namespace: str
    name: str
    uid: str


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    events: int = 0
    converged: int = 0
    errors: list[str] = field(default_factory=list)
    #: Creates refused, or not tried, because the namespace's ResourceQuota is used up.
    quota_refused: int = 0
    #: The API server's words for the first refusal (which quota, how much is used).
    quota_message: str = ""


class Applier:
    def __init__(self, kube: KubeAPI, *, reporter: str = "egp-operator") -> None:
        self.kube = kube
        self.reporter = reporter

    async def apply(
        self, plan: Plan, source: SourceIdentity, uids: dict[str, str], now: datetime
    ) -> ApplyResult:
        """`uids` maps object names to uids, for Events that `kubectl describe` finds."""
        result = ApplyResult()
        # Deletes first, and all of them before any create: what they free (of a quota, of the
        # source's object budget) is there for the creates.
        await self._run(self._delete(source, delete, result) for delete in plan.deletes)
        await self._run(
            itertools.chain(
                (self._create(source, create, result) for create in plan.creates),
                (self._update(source, update, result) for update in plan.updates),
                (
                    self._event(source, event, self._uid(source, event, uids), now, result)
                    for event in plan.events
                ),
            )
        )
        return result

    async def _run(self, work: Iterator[Awaitable[None]]) -> None:
        """Each coroutine is made only when a worker takes it from the shared generator: a
        plan of 10,000 creates never holds 10,000 tasks and request bodies at once."""

        async def worker() -> None:
            for job in work:
                await job

        await asyncio.gather(*(worker() for _ in range(self.kube.concurrency)))

    @staticmethod
    def _uid(source: SourceIdentity, event: Event, uids: dict[str, str]) -> str | None:
        return source.uid if event.kind == SOURCE_KIND else uids.get(event.object_name)

    def _path(self, source: SourceIdentity, name: str = "") -> str:
        return custom_path(GROUP, VERSION, source.namespace, MODEL_PLURAL, name)

    async def _create(self, source: SourceIdentity, create: Create, result: ApplyResult) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": MODEL_KIND,
            "metadata": {
                "name": create.name,
                "namespace": source.namespace,
                "labels": create.labels,
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": SOURCE_KIND,
                        "name": source.name,
                        "uid": source.uid,
                        "controller": True,
                        "blockOwnerDeletion": False,
                    }
                ],
            },
            "spec": {"sourceRef": {"name": source.name}, "modelID": create.model_id},
        }
        if result.quota_refused:  # one refusal says it all: no storm of doomed creates
            result.quota_refused += 1
            return
        try:
            await self.kube.create(self._path(source), body)
            result.created += 1
        except KubeError as error:
            if error.quota_exceeded:
                result.quota_refused += 1
                result.quota_message = result.quota_message or cut(error.message, 300)
                return
            if not error.conflict:
                result.errors.append(f"create {create.name}: {error}")
                return
            if not await self._holds_same_model(source, create, result):
                return
            result.converged += 1  # already there (a lagging index): write its status below
        await self._write_status(source, create.name, create.recipe.encoded(), result)

    async def _holds_same_model(
        self, source: SourceIdentity, create: Create, result: ApplyResult
    ) -> bool:
        """After a 409: is the object holding the name this model of this source? Only then
        is its status ours to write; anything else under the name is left alone, and said."""
        try:
            holder = await self.kube.get(self._path(source, create.name))
        except KubeError as error:
            result.errors.append(f"create {create.name}: 409, then {error}")
            return False
        spec = holder.get("spec") or {}
        owners = (holder.get("metadata") or {}).get("ownerReferences") or []
        same = (
            spec.get("modelID") == create.model_id
            and (spec.get("sourceRef") or {}).get("name") == source.name
            and any(owner.get("uid") == source.uid and owner.get("controller") for owner in owners)
        )
        if not same:
            result.errors.append(
                f"create {create.name}: the name is held by an object that is not this"
                " source's mirror of this model; it was left as it is"
            )
        return same

    async def _update(self, source: SourceIdentity, update: Update, result: ApplyResult) -> None:
        try:
            if update.labels is not None:
                await self.kube.merge_patch(
                    self._path(source, update.name), {"metadata": {"labels": update.labels}}
                )
        except KubeError as error:
            self._note(error, f"label {update.name}", result)
            return
        if update.recipe is not None:
            await self._write_status(source, update.name, update.recipe.encoded(), result)
        elif update.status_changes is not None:
            await self._merge_status(source, update.name, update.status_changes, result)
        result.updated += 1

    async def _write_status(
        self, source: SourceIdentity, name: str, status_json: str, result: ApplyResult
    ) -> None:
        """Replace the whole status with the plan's (already encoded) one."""
        operations = f'[{{"op":"add","path":"/status","value":{status_json}}}]'
        try:
            await self.kube.json_patch(f"{self._path(source, name)}/status", operations)
        except KubeError as error:
            self._note(error, f"status of {name}", result)

    async def _merge_status(
        self, source: SourceIdentity, name: str, changes: dict[str, Any], result: ApplyResult
    ) -> None:
        """Write only `changes` over the stored status: the rest of it is kept."""
        try:
            await self.kube.merge_patch(f"{self._path(source, name)}/status", {"status": changes})
        except KubeError as error:
            self._note(error, f"status of {name}", result)

    async def _delete(self, source: SourceIdentity, delete: Delete, result: ApplyResult) -> None:
        try:
            await self.kube.delete(self._path(source, delete.name))
            result.deleted += 1
            log.info("deleted EGPModel %s/%s: %s", source.namespace, delete.name, delete.reason)
        except KubeError as error:
            if not error.not_found:
                result.errors.append(f"delete {delete.name}: {error}")

    async def _event(
        self,
        source: SourceIdentity,
        event: Event,
        uid: str | None,
        now: datetime,
        result: ApplyResult,
    ) -> None:
        stamp = timestamp(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{event.object_name}.{short_hash(event.reason, stamp, length=12)}",
                "namespace": source.namespace,
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": event.kind,
                "name": event.object_name,
                "namespace": source.namespace,
                **({"uid": uid} if uid else {}),
            },
            "type": event.type,
            "reason": event.reason,
            "message": cut(event.message, MAX_MESSAGE_LENGTH),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": self.reporter},
            "reportingComponent": self.reporter,
        }
        try:
            await self.kube.create(core_path(source.namespace, "events"), body)
            result.events += 1
        except KubeError as error:
            # An Event is a courtesy: losing one must not fail the cycle.
            log.warning("could not post event %s on %s: %s", event.reason, event.object_name, error)

    @staticmethod
    def _note(error: KubeError, what: str, result: ApplyResult) -> None:
        if error.not_found:
            result.converged += 1  # deleted under us: the next cycle recreates it
        else:
            result.errors.append(f"{what}: {error}")
