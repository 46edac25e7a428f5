"""kopf wiring only: startup settings, the EGPModel index, one daemon per EGPSource, probes.

The work lives in `sync/`; this module decides when it runs. Peering keeps a second replica
idle: each replica takes a distinct priority (random unless configured), the highest one
works and the others pause until it goes away (peering.py: the peering objects, and the
start-up checks on them).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import kopf

from egp_operator import metrics, metrics_server, wakeups
from egp_operator.collector import FrozenAfterCycles
from egp_operator.kopf_storage import StatuslessDiffBaseStorage
from egp_operator.kube import KubeAPI, KubeClient, load_configuration
from egp_operator.peering import ensure_peering, overlapping_operators, warn_if_priority_taken
from egp_operator.resources.models import (
    GROUP,
    MODEL_PLURAL,
    SOURCE_PLURAL,
    VERSION,
    EGPSourceSpec,
)
from egp_operator.scheduling import SourceSchedule, first_cycle_delay
from egp_operator.settings import Settings
from egp_operator.sync.applier import SourceIdentity
from egp_operator.sync.cycle import CycleReport, SourceSyncer
from egp_operator.sync.mirrored import MirroredModel, mirrored_from_object
from egp_operator.sync.secret_watches import SecretWatches
from egp_operator.sync.spec import SpecOfGeneration
from egp_operator.wakeups import Wakeups

log = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """`memo.settings` comes built and validated from the environment and the command line
    (cli.py); every part of the operator gets its settings from here."""
    operator_settings: Settings = memo.settings
    settings.peering.name = operator_settings.peering_name
    settings.peering.priority = (
        operator_settings.priority
        if operator_settings.priority is not None
        else random.randint(1, 2**30)
    )
    settings.peering.mandatory = True
    settings.posting.enabled = False  # our Events are about models, not about kopf's log
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = StatuslessDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    kube = KubeClient(
        load_configuration(),
        concurrency=operator_settings.kube_concurrency,
        max_watches=operator_settings.max_secret_watches,
    )
    memo.kube = kube
    memo.settings = operator_settings
    memo.wakeups = Wakeups()
    wakeups: Wakeups = memo.wakeups
    secret_watches = SecretWatches(
        kube,
        max_watches=operator_settings.max_secret_watches,
        on_change=lambda holders: wakeups.wake((ns, name) for ns, name, _uid in holders),
    )
    metrics.count_secrets_in_use(secret_watches.counts)
    memo.syncer = SourceSyncer(kube, operator_settings, secret_watches=secret_watches)
    memo.collector = FrozenAfterCycles()
    namespaces: tuple[str, ...] = getattr(memo, "namespaces", ())
    await refuse_to_overlap(kube, operator_settings.peering_name, namespaces)
    await ensure_peering(kube, operator_settings.peering_name, namespaces)
    if operator_settings.priority is not None:
        await warn_if_priority_taken(
            kube, operator_settings.peering_name, namespaces, operator_settings.priority
        )
    if operator_settings.metrics_port and getattr(memo, "metrics_server", None) is None:
        memo.metrics_server = await metrics_server.serve(operator_settings)
    log.info("egp-operator starting with peering priority %d", settings.peering.priority)


async def refuse_to_overlap(kube: KubeAPI, name: str, namespaces: tuple[str, ...]) -> None:
    """Two live operators serving one namespace would both write its objects: one whose
    namespaces another egp-operator already serves does not start (see peering.py)."""
    overlapping = await overlapping_operators(kube, name, namespaces)
    if overlapping:
        where = ", ".join(
            f"{peer.identity} (peering {peer.peering}"
            + (f" in namespace {peer.namespace})" if peer.namespace else ", cluster-wide)")
            for peer in overlapping
        )
        raise kopf.PermanentError(
            f"another egp-operator already serves namespaces this one would serve: {where}."
            " Shards must serve disjoint namespaces, and none may run next to a cluster-wide"
            " operator (docs/install.md, Sharding)."
        )


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    syncer: SourceSyncer | None = getattr(memo, "syncer", None)
    if syncer is not None:
        await syncer.aclose()
    kube: KubeClient | None = getattr(memo, "kube", None)
    if kube is not None:
        await kube.aclose()
    served: metrics_server.MetricsServer | None = getattr(memo, "metrics_server", None)
    if served is not None:
        await served.aclose()


@kopf.index(GROUP, VERSION, MODEL_PLURAL)
async def egpmodels_by_source(
    namespace: str | None, spec: Mapping[str, Any], body: Mapping[str, Any], **_: Any
) -> dict[tuple[str, str], MirroredModel]:
    """Every EGPModel by (namespace, source): a cycle reads this instead of LISTing.

    Async although it awaits nothing: kopf runs a sync handler in a thread pool, a hand-off
    per watch event that costs more than the handler itself."""
    source = (spec.get("sourceRef") or {}).get("name", "")
    return {(namespace or "", source): mirrored_from_object(_plain(body))}


@kopf.on.event(GROUP, VERSION, SOURCE_PLURAL)
async def notice_source_change(
    event: kopf.RawEvent, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Wake a source's loop when its spec or its sync request changes (`wakeups.py`)."""
    wakeups: Wakeups = memo.wakeups
    key = (namespace or "", name)
    if event["type"] == "DELETED":
        wakeups.forget(key)
    else:
        wakeups.note(key, event["object"])


# kopf passes each index by its name, which its DaemonFn type cannot say: hence the ignore.
@kopf.daemon(GROUP, VERSION, SOURCE_PLURAL, cancellation_timeout=30.0)  # type: ignore[arg-type]
async def sync_source(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    egpmodels_by_source: kopf.Index[tuple[str, str], MirroredModel],
    **_: Any,
) -> None:
    """One loop per EGPSource: a cycle at once, then every refreshInterval (with jitter), or
    sooner with a growing backoff after a failure, or at once when its spec or its sync
    request changes, but never two cycles closer than the spacing of `scheduling.py`. Stops
    promptly when the source is deleted or the operator pauses for a peer."""
    syncer: SourceSyncer = memo.syncer
    settings: Settings = memo.settings
    collector: FrozenAfterCycles = memo.collector
    woken = memo.wakeups.event((namespace or "", name))
    schedule = SourceSchedule(settings.error_backoff_max_seconds, settings.interval_jitter)
    specs = SpecOfGeneration()
    try:
        first = _plain(body)
        start_after = first_cycle_delay(first, specs.read(first), random.random())
        if start_after:
            await wakeups.sleep(stopped, woken, start_after)
        while not stopped:
            woken.clear()  # before reading the body: a change from now on wakes the next sleep
            schedule.cycle_started(time.monotonic())
            source = _plain(body)
            spec = specs.read(source)
            if isinstance(spec, EGPSourceSpec) and spec.suspend:
                await syncer.mark_suspended(source)
                delay = schedule.suspended(spec.refresh.total_seconds())
            else:
                mirrored = list(egpmodels_by_source.get((namespace or "", name), []))
                report = await syncer.run_cycle(source, mirrored, spec=spec)
                _log_cycle(namespace or "", name, report)
                collector.after_cycle()
                delay = schedule.cycle_ended(
                    ok=report.outcome.ok,
                    interval=spec.refresh.total_seconds()
                    if isinstance(spec, EGPSourceSpec)
                    else None,
                    draw=random.random(),
                )
            await wakeups.sleep(stopped, woken, delay)
            # A wake-up ends the sleep at once, but no cycle starts sooner than the spacing allows:
            # wake-ups meanwhile are one and the same, and the count of failures is kept.
            await wakeups.sleep(stopped, None, schedule.spacing_left(time.monotonic()))
    finally:
        # Also when kopf cancels the loop mid-cycle (a deletion, a pause for a peer): the
        # source's share of its Secret's watch, its memo and its series go with it.
        uid = str(body.get("metadata", {}).get("uid", ""))
        syncer.forget(SourceIdentity(namespace or "", name, uid))
        if (
            stopped.reason is not None
            and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED
        ):
            metrics.forget_source(namespace or "", name)


def _log_cycle(namespace: str, name: str, report: CycleReport) -> None:
    outcome = report.outcome
    applied = report.applied
    writes = (
        f"{applied.created} created, {applied.updated} updated, {applied.deleted} deleted"
        if applied
        else "no writes"
    )
    level = logging.INFO if outcome.ok else logging.WARNING
    log.log(
        level,
        "cycle of EGPSource %s/%s: %s (%s); %s",
        namespace,
        name,
        outcome.reason,
        outcome.message,
        writes,
    )


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-dict copy of a kopf body view, safe to keep and to validate."""
    return {key: body[key] for key in body}
