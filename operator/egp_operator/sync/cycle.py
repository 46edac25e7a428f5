"""One sync cycle of one EGPSource: credentials -> complete listing -> plan -> writes -> status.

Used by the operator's daemon and by `egp-operator sync --once`. A cycle never prunes on a
failed or partial listing: any EGP error ends it before planning, and the source's status says
why. A cycle ends within its deadline, and whatever goes wrong inside it, even a bug, ends as a
status, a metric and a log line: never as a silent stall.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from egp_operator import metrics
from egp_operator.bounds import MAX_MODEL_ID_LENGTH
from egp_operator.egp import (
    EGPClient,
    EGPError,
    IncompleteListingError,
    InferenceModel,
    ResponseTooLargeError,
)
from egp_operator.kube import KubeAPI, KubeError, custom_path
from egp_operator.resources.models import GROUP, SOURCE_PLURAL, VERSION, EGPSourceSpec
from egp_operator.settings import Settings
from egp_operator.sync.applier import Applier, ApplyResult, SourceIdentity
from egp_operator.sync.credentials import CredentialsError, read_api_key
from egp_operator.sync.egp_clients import EGPClients
from egp_operator.sync.memory import CycleHold, ListingMemory, MemoryBudgetExhaustedError
from egp_operator.sync.mirrored import MirroredModel
from egp_operator.sync.planner import Plan, PlanMemo, SourcePolicy, make_plan
from egp_operator.sync.secret_watches import SecretWatches
from egp_operator.sync.source_status import CycleOutcome, progressing_status, source_status
from egp_operator.sync.spec import InvalidSpec, read_spec
from egp_operator.sync.upstream import RECORD_OVERHEAD, UpstreamModel, keep_for_mirror
from egp_operator.vocabulary import READY, Reason
from egp_operator.wakeups import sync_request

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass
class CycleReport:
    outcome: CycleOutcome
    plan: Plan | None = None
    applied: ApplyResult | None = None
    egp_requests: int = 0
    egp_answers: Counter[str] = field(default_factory=Counter)
    #: The source's refreshInterval, once its spec validated: what the alerts judge it by.
    refresh_seconds: float | None = None


class SourceSyncer:
    """Runs cycles for EGPSources against one Kubernetes client."""

    def __init__(
        self,
        kube: KubeAPI,
        settings: Settings,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        secret_watches: SecretWatches | None = None,
    ) -> None:
        self.kube = kube
        #: Where cycles find their Secrets without a request; None: each cycle reads its own.
        self.secret_watches = secret_watches
        self.settings = settings
        self.clock = clock
        self.applier = Applier(kube)
        self.egp_clients = EGPClients(settings)
        #: Per source (by uid), what its last plan found settled; kept while its loop runs.
        self._plan_memos: dict[str, PlanMemo] = {}
        #: What one listing may hold: its records (at most its pages' bytes, about) and each
        #: record's own overhead.
        self.listing_cap = settings.max_listing_bytes + settings.max_models_per_source * (
            RECORD_OVERHEAD
        )
        #: What every cycle in flight holds of its listing, against one budget.
        self.listing_memory = ListingMemory(
            settings.listings_memory_bytes, largest_listing=self.listing_cap
        )

    def forget(self, source: SourceIdentity) -> None:
        """The loop of `source` has ended (deleted, or the operator paused): drop its memo,
        and its share of its Secret's watch."""
        self._plan_memos.pop(source.uid, None)
        self._release_secret(source)

    def _release_secret(self, source: SourceIdentity) -> None:
        """`source` reads no Secret now (its loop ended, or it is suspended or invalid)."""
        if self.secret_watches is not None:
            self.secret_watches.release((source.namespace, source.name, source.uid))

    async def __aenter__(self) -> SourceSyncer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the watches and the connections to EGP that every source shares."""
        if self.secret_watches is not None:
            await self.secret_watches.aclose()
        await self.egp_clients.aclose()

    async def run_cycle(
        self,
        source: Mapping[str, Any],
        mirrored: Iterable[MirroredModel],
        *,
        spec: EGPSourceSpec | InvalidSpec | None = None,
        dry_run: bool = False,
    ) -> CycleReport:
        """One cycle of `source`; `spec` is its spec as `read_spec` gave it (read here when
        the caller has not)."""
        started = time.monotonic()
        spec = spec if spec is not None else read_spec(source)
        meta = source["metadata"]
        identity = SourceIdentity(meta["namespace"], meta["name"], meta["uid"])
        previous = source.get("status") or {}
        generation = meta.get("generation")
        try:
            if not dry_run and previous.get("observedGeneration") != generation:
                progressing = progressing_status(previous, generation=generation, now=self.clock())
                await self._patch_status(identity, progressing)
            report = await self._validated_cycle(identity, spec, mirrored, dry_run=dry_run)
        except Exception as error:  # the one crash net: a bug is said in the status, the
            # metrics and the log, and the loop goes on (what fails after it, kopf retries)
            log.exception(
                "sync cycle of EGPSource %s/%s crashed", identity.namespace, identity.name
            )
            message = (
                f"The sync cycle failed unexpectedly ({type(error).__name__});"
                " the operator's log has the traceback"
            )
            report = CycleReport(CycleOutcome.failed(Reason.INTERNAL_ERROR, message))
        if not dry_run:
            _record_metrics(identity, report, started)
            await self._write_status(
                identity,
                previous,
                generation,
                report.outcome,
                handled_request=sync_request(source),
            )
        return report

    async def _validated_cycle(
        self,
        identity: SourceIdentity,
        spec: EGPSourceSpec | InvalidSpec,
        mirrored: Iterable[MirroredModel],
        *,
        dry_run: bool,
    ) -> CycleReport:
        if isinstance(spec, InvalidSpec):
            self._release_secret(identity)
            return CycleReport(CycleOutcome.failed(Reason.INVALID_SPEC, spec.message))
        deadline = self.settings.cycle_deadline_seconds
        try:
            async with asyncio.timeout(deadline):
                report = await self._mirror(identity, spec, list(mirrored), dry_run=dry_run)
        except TimeoutError:
            message = (
                f"The sync cycle did not end within {deadline:g}s"
                " (EGP_OPERATOR_CYCLE_DEADLINE_SECONDS); nothing was pruned"
            )
            report = CycleReport(CycleOutcome.failed(Reason.DEADLINE_EXCEEDED, message))
        report.refresh_seconds = spec.refresh.total_seconds()
        return report

    async def mark_suspended(self, source: Mapping[str, Any]) -> None:
        """Say in the status that the source is suspended; EGP is not called."""
        meta = source["metadata"]
        identity = SourceIdentity(meta["namespace"], meta["name"], meta["uid"])
        previous = source.get("status") or {}
        conditions: list[Mapping[str, Any]] = previous.get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == READY), {})
        outcome = CycleOutcome.suspended(account_answered=ready.get("status") == "True")
        self._release_secret(identity)
        await self._write_status(identity, previous, meta.get("generation"), outcome)
        metrics.forget_refresh_interval(identity.namespace, identity.name)  # no sync is due

    async def _mirror(
        self,
        source: SourceIdentity,
        spec: EGPSourceSpec,
        mirrored: list[MirroredModel],
        *,
        dry_run: bool,
    ) -> CycleReport:
        try:
            api_key = await read_api_key(
                self.kube,
                self.secret_watches,
                (source.namespace, source.name, source.uid),
                spec.credentials_secret_ref,
            )
        except CredentialsError as error:
            return CycleReport(CycleOutcome.failed(error.reason, error.message))
        hold = self.listing_memory.hold(source.namespace)
        try:
            client = self.egp_clients.client(spec, api_key, hold)
        except EGPError as refused:
            log.warning("EGPSource %s/%s: %s", source.namespace, source.name, refused.message)
            return CycleReport(CycleOutcome.failed(refused.reason, refused.message))
        try:
            return await self._list_plan_apply(source, spec, client, mirrored, hold, dry_run)
        except MemoryBudgetExhaustedError as busy:
            log.warning("EGPSource %s/%s: %s", source.namespace, source.name, busy)
            return CycleReport(
                CycleOutcome.failed(Reason.MEMORY_BUDGET_EXHAUSTED, str(busy)),
                egp_requests=client.requests_sent,
                egp_answers=client.status_counts,
            )
        finally:
            hold.release()

    async def _list_plan_apply(
        self,
        source: SourceIdentity,
        spec: EGPSourceSpec,
        client: EGPClient,
        mirrored: list[MirroredModel],
        hold: CycleHold,
        dry_run: bool,
    ) -> CycleReport:
        listing_cap = self.listing_cap
        kept_bytes = 0

        def keep(model: InferenceModel) -> UpstreamModel:
            """What the listing keeps of a model, held against this listing's cap and the
            process's budget as each page is read."""
            nonlocal kept_bytes
            record = keep_for_mirror(model)
            size = record.kept_bytes
            kept_bytes += size
            if kept_bytes > listing_cap:
                raise ResponseTooLargeError(
                    f"the listing's models take more than {listing_cap} bytes to keep"
                    " (EGP_OPERATOR_MAX_LISTING_BYTES, and 512 bytes a model up to"
                    " EGP_OPERATOR_MAX_MODELS_PER_SOURCE); nothing was changed"
                )
            hold.add(size)
            return record

        async with client:
            try:
                listing = await client.walk_models(
                    keep,
                    page_size=max(spec.page_size, self.settings.min_page_size),
                    model_vendor=spec.model_vendor,
                )
            except EGPError as error:
                answered = isinstance(error, IncompleteListingError)
                log.warning("EGPSource %s/%s: %s", source.namespace, source.name, error.message)
                return CycleReport(
                    CycleOutcome.failed(error.reason, error.message, account_answered=answered),
                    egp_requests=client.requests_sent,
                    egp_answers=client.status_counts,
                )
        now = self.clock()
        policy = SourcePolicy(
            source.namespace,
            source.name,
            spec.deletion_policy,
            spec.grace,
            uid=source.uid,
            max_models=self.settings.max_models_per_source,
        )
        memo = None if dry_run else self._plan_memos.setdefault(source.uid, PlanMemo())
        plan = make_plan(listing.models, mirrored, policy, now, memo=memo)
        message = f"Mirrored {len(listing.models) - len(plan.refused)} models"
        if plan.refused:
            message += (
                f"; {len(plan.refused)} not mirrored: an id longer than"
                f" {MAX_MODEL_ID_LENGTH} characters"
            )
            log.warning("EGPSource %s/%s: %s", source.namespace, source.name, message)
        if plan.pruned:
            message += (
                f"; deleted {plan.pruned} Missing, the longest missing first, to keep within"
                f" {policy.max_models} EGPModels (EGP_OPERATOR_MAX_MODELS_PER_SOURCE)"
            )
            log.warning("EGPSource %s/%s: %s", source.namespace, source.name, message)
        report = CycleReport(
            CycleOutcome.synced(message, plan.phase_counts),
            plan=plan,
            egp_requests=listing.requests,
            egp_answers=client.status_counts,
        )
        if dry_run or plan.is_empty:
            return report
        uids = {m.name: m.uid for m in mirrored}
        report.applied = await self.applier.apply(plan, source, uids, now)
        if report.applied.quota_refused:
            report.outcome = CycleOutcome.failed(
                Reason.QUOTA_EXCEEDED,
                f"{report.applied.quota_refused} EGPModel(s) not created: the namespace's"
                f" ResourceQuota is used up ({report.applied.quota_message}); raise the"
                " quota on count/egpmodels.egp-operator.io or mirror fewer models",
                account_answered=True,
                phase_counts=plan.phase_counts,
            )
        elif report.applied.errors:
            first = report.applied.errors[0]
            count = len(report.applied.errors)
            report.outcome = CycleOutcome.failed(
                Reason.WRITE_FAILED,
                f"{count} Kubernetes write(s) failed; first: {first}",
                account_answered=True,
                phase_counts=plan.phase_counts,
            )
        return report

    async def _write_status(
        self,
        source: SourceIdentity,
        previous: Mapping[str, Any],
        generation: int | None,
        outcome: CycleOutcome,
        *,
        handled_request: str | None = None,
    ) -> None:
        """Write the status the outcome gives, unless nothing worth a write changed.
        `handled_request`: the sync request this cycle answered; a suspended source answers
        none."""
        status = source_status(
            previous,
            outcome,
            generation=generation,
            now=self.clock(),
            heartbeat=timedelta(seconds=self.settings.status_heartbeat_seconds),
            handled_request=handled_request,
        )
        if status is not None:
            await self._patch_status(source, status)

    async def _patch_status(self, source: SourceIdentity, status: Mapping[str, Any]) -> None:
        """A failed write is logged, not raised: the next cycle writes the status again."""
        path = custom_path(GROUP, VERSION, source.namespace, SOURCE_PLURAL, source.name)
        try:
            await self.kube.merge_patch(f"{path}/status", {"status": status})
        except KubeError as error:
            log.warning("could not write the status of EGPSource %s: %s", source.name, error)


def _record_metrics(source: SourceIdentity, report: CycleReport, started: float) -> None:
    plan = report.plan
    metrics.record_cycle(
        source.namespace,
        source.name,
        seconds=time.monotonic() - started,
        egp_answers=report.egp_answers,
        model_counts=plan.model_counts if plan is not None else None,
        refresh_seconds=report.refresh_seconds,
        error_reason=None if report.outcome.ok else report.outcome.reason,
        # Counted once written: a cycle whose writes failed plans its changes again.
        phase_changes=[(t.phase, t.deploy_seconds) for t in plan.transitions]
        if plan is not None and report.outcome.ok
        else (),
        flapping=plan.flapping if plan is not None else None,
    )
