"""kopf wiring only: startup settings, the EGPModel index, one daemon per EGPSource, probes.

The work lives in `sync/`; this module decides when it runs. Peering keeps a second replica
idle: each replica takes a distinct priority (random unless configured), the highest one
works and the others pause until it goes away.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from egp_operator import metrics, wakeups
from egp_operator.collector import FrozenAfterCycles
from egp_operator.kopf_storage import StatuslessDiffBaseStorage
from egp_operator.kube import KubeClient, KubeError, load_configuration, segment
from egp_operator.resources.models import (
    GROUP,
    MODEL_PLURAL,
    SOURCE_PLURAL,
    VERSION,
    EGPSourceSpec,
)
from egp_operator.settings import Settings
from egp_operator.sync.cycle import CycleReport, SourceSyncer, mirrored_from_object, read_spec
from egp_operator.sync.planner import MirroredModel
from egp_operator.vocabulary import SYNCED
from egp_operator.wakeups import Wakeups

log = logging.getLogger(__name__)

ERROR_BACKOFF_START = 5.0


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """`memo.settings` comes built from the environment and the command line (cli.py)."""
    operator_settings: Settings = getattr(memo, "settings", None) or Settings()
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
    kube = KubeClient(load_configuration(), concurrency=operator_settings.kube_concurrency)
    memo.kube = kube
    memo.settings = operator_settings
    memo.syncer = SourceSyncer(kube, operator_settings)
    memo.collector = FrozenAfterCycles()
    memo.wakeups = Wakeups()
    namespaces: tuple[str, ...] = getattr(memo, "namespaces", ())
    await ensure_peering(kube, operator_settings.peering_name, namespaces)
    if operator_settings.priority is not None:
        await warn_if_priority_taken(
            kube, operator_settings.peering_name, namespaces, operator_settings.priority
        )
    if operator_settings.metrics_port:
        metrics.serve(operator_settings.metrics_port, operator_settings.probe_host)
    log.info("egp-operator starting with peering priority %d", settings.peering.priority)


async def ensure_peering(kube: KubeClient, name: str, namespaces: tuple[str, ...]) -> None:
    """Create the peering object the replicas meet in, so that one `kubectl apply -k deploy/`
    installs everything (a custom resource cannot be applied with its own CRD in one go).
    Cluster-wide: a ClusterKopfPeering; with --namespace: a KopfPeering in each namespace."""
    targets = (
        [
            (f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings", "KopfPeering", ns)
            for ns in namespaces
        ]
        if namespaces
        else [("/apis/kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", None)]
    )
    for path, kind, namespace in targets:
        metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
        try:
            await kube.create(
                path, {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": metadata}
            )
            log.info("created the %s %s", kind, name)
        except KubeError as error:
            if not error.conflict:
                log.warning(
                    "could not create the %s %s (%s): create it, or the operator stays paused",
                    kind,
                    name,
                    error,
                )


async def warn_if_priority_taken(
    kube: KubeClient, name: str, namespaces: tuple[str, ...], priority: int
) -> list[str]:
    """Say loudly, at start-up, that a live replica already holds this priority: kopf then
    pauses every replica of that priority until all but one are gone, which looks like an
    operator that silently stopped. Returns the peers that hold it."""
    paths = (
        [f"/apis/kopf.dev/v1/namespaces/{segment(ns)}/kopfpeerings" for ns in namespaces]
        if namespaces
        else ["/apis/kopf.dev/v1/clusterkopfpeerings"]
    )
    now = datetime.now(UTC)
    holders: list[str] = []
    for path in paths:
        try:
            answer = await kube.get(path, params={"fieldSelector": f"metadata.name={name}"})
        except KubeError as error:
            log.warning("could not read the peering %s to check priorities: %s", name, error)
            continue
        for peering in answer.get("items") or []:
            for peer, info in (peering.get("status") or {}).items():
                if (
                    isinstance(info, dict)
                    and info.get("priority") == priority
                    and _alive(info, now)
                ):
                    holders.append(str(peer))
    if holders:
        log.error(
            "EGP_OPERATOR_PRIORITY=%d is already held by live replica(s) %s: kopf pauses every"
            " replica with the same priority, so none of them syncs until the others are gone."
            " Give each replica its own priority, or leave the setting unset.",
            priority,
            ", ".join(holders),
        )
    return holders


def _alive(peer: Mapping[str, Any], now: datetime) -> bool:
    try:
        seen = datetime.fromisoformat(str(peer["lastseen"]))
        lifetime = timedelta(seconds=float(peer.get("lifetime", 60)))
    except (KeyError, TypeError, ValueError):
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return seen + lifetime > now


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    syncer: SourceSyncer | None = getattr(memo, "syncer", None)
    if syncer is not None:
        await syncer.aclose()
    kube: KubeClient | None = getattr(memo, "kube", None)
    if kube is not None:
        await kube.aclose()


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
    request changes. Stops promptly when the source is deleted or the operator pauses for a
    peer."""
    syncer: SourceSyncer = memo.syncer
    settings: Settings = memo.settings
    collector: FrozenAfterCycles = memo.collector
    woken = memo.wakeups.event((namespace or "", name))
    failures = 0
    start_after = first_cycle_delay(_plain(body), random.random())
    if start_after:
        await wakeups.sleep(stopped, woken, start_after)
    while not stopped:
        woken.clear()  # before reading the body: a change from now on wakes the next sleep
        source = _plain(body)
        spec = read_spec(source)
        if isinstance(spec, EGPSourceSpec) and spec.suspend:
            await syncer.mark_suspended(source)
            await wakeups.sleep(stopped, woken, spec.refresh.total_seconds())
            continue
        mirrored = list(egpmodels_by_source.get((namespace or "", name), []))
        try:
            report = await syncer.run_cycle(source, mirrored, spec=spec)
        except Exception:  # a bug must not kill the loop for good; it is logged and retried
            log.exception("sync cycle of EGPSource %s/%s crashed", namespace, name)
            report = None
        if report is not None:
            _log_cycle(namespace or "", name, report)
        collector.after_cycle()
        failures = 0 if report is not None and report.outcome.ok else failures + 1
        if failures == 0 and isinstance(spec, EGPSourceSpec):
            delay = spec.refresh.total_seconds()
        else:
            delay = _backoff(max(failures, 1), settings)
        jitter = settings.interval_jitter
        await wakeups.sleep(stopped, woken, delay * random.uniform(1 - jitter, 1 + jitter))
    if stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
        metrics.forget_source(namespace or "", name)


#: The longest a loop that finds its source already synced waits before its first cycle.
START_SPREAD_SECONDS = 60.0


def first_cycle_delay(source: Mapping[str, Any], draw: float) -> float:
    """How long a loop waits before its first cycle; `draw` is uniform in [0, 1).

    A new source, or a spec not yet synced, is synced at once: its user is waiting. A source
    whose current spec was synced already (the operator restarted, or took over from a peer)
    waits a random part of its interval, at most START_SPREAD_SECONDS, so that a thousand
    sources do not all call EGP and the API server in the same second. A sync request or a
    spec change ends the wait at once."""
    spec = read_spec(source)
    status = source.get("status") or {}
    synced = any(
        c.get("type") == SYNCED and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    current = status.get("observedGeneration") == (source.get("metadata") or {}).get("generation")
    if not isinstance(spec, EGPSourceSpec) or spec.suspend or not (synced and current):
        return 0.0
    return draw * min(spec.refresh.total_seconds(), START_SPREAD_SECONDS)


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


def _backoff(failures: int, settings: Settings) -> float:
    delay = ERROR_BACKOFF_START * 2.0 ** (failures - 1)
    return min(delay, settings.error_backoff_max_seconds)


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-dict copy of a kopf body view, safe to keep and to validate."""
    return {key: body[key] for key in body}
