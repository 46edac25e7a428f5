"""The kopf peering objects this operator meets its replicas in, and the start-up checks on them.

Replicas of one Deployment share a peering object: each takes a priority, the highest works and
the others pause. Shards (several Deployments, each serving its own namespaces with
`--namespace`) each have their own peering name, so a shard's standby defers only to its own
leader. Shards must serve disjoint namespaces: two live operators serving one namespace would
both write its objects. Every peering object this operator creates carries `PEERING_LABEL`, so
that a shard can tell at start-up that another of ours (another peering name, or one running
cluster-wide) already serves a namespace of its own, and refuse to start rather than double-write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from egp_operator.kube import KubeAPI, KubeError, segment

log = logging.getLogger(__name__)

PEERING_API: Final = "/apis/kopf.dev/v1"
CLUSTER_PEERINGS: Final = f"{PEERING_API}/clusterkopfpeerings"
#: Marks a peering object as this operator's, among those of other kopf operators.
PEERING_LABEL: Final = ("app.kubernetes.io/name", "egp-operator")
_LABELS: Final = dict([PEERING_LABEL])
_SELECTOR: Final = {"labelSelector": "=".join(PEERING_LABEL)}


def namespaced_peerings(namespace: str) -> str:
    return f"{PEERING_API}/namespaces/{segment(namespace)}/kopfpeerings"


def _collections(namespaces: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """Where the peering objects of an operator serving `namespaces` live (all namespaces
    when empty), with the namespace of each."""
    if not namespaces:
        return [(CLUSTER_PEERINGS, None)]
    return [(namespaced_peerings(ns), ns) for ns in namespaces]


async def ensure_peering(kube: KubeAPI, name: str, namespaces: tuple[str, ...]) -> None:
    """Create the peering object the replicas meet in, so that one `kubectl apply -k deploy/`
    installs everything (a custom resource cannot be applied with its own CRD in one go).
    Cluster-wide: a ClusterKopfPeering; with --namespace: a KopfPeering in each namespace.
    One that already exists gets the label, so that shards can see it."""
    for path, namespace in _collections(namespaces):
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        metadata = {
            "name": name,
            "labels": _LABELS,
            **({"namespace": namespace} if namespace else {}),
        }
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
                continue
            try:
                await kube.merge_patch(f"{path}/{segment(name)}", {"metadata": {"labels": _LABELS}})
            except KubeError as label_error:
                log.warning("could not label the %s %s: %s", kind, name, label_error)


@dataclass(frozen=True)
class Peer:
    """A live replica, as a peering object lists it."""

    peering: str
    namespace: str | None
    identity: str
    priority: object


async def live_peers(kube: KubeAPI, path: str, params: dict[str, str] | None = None) -> list[Peer]:
    """The live replicas of the peering objects at `path`; none when they cannot be read
    (that is logged: these checks guard against a mistake, they are not a lock)."""
    try:
        answer = await kube.get(path, params=params)
    except KubeError as error:
        log.warning("could not read the peering objects at %s: %s", path, error)
        return []
    now = datetime.now(UTC)
    peers: list[Peer] = []
    for peering in answer.get("items") or []:
        metadata = peering.get("metadata") or {}
        for identity, info in (peering.get("status") or {}).items():
            if isinstance(info, Mapping) and _alive(info, now):
                peers.append(
                    Peer(
                        peering=str(metadata.get("name", "")),
                        namespace=metadata.get("namespace"),
                        identity=str(identity),
                        priority=info.get("priority"),
                    )
                )
    return peers


async def warn_if_priority_taken(
    kube: KubeAPI, name: str, namespaces: tuple[str, ...], priority: int
) -> list[str]:
    """Say loudly, at start-up, that a live replica already holds this priority: kopf then
    pauses every replica of that priority until all but one are gone, which looks like an
    operator that silently stopped. Returns the peers that hold it."""
    holders: list[str] = []
    for path, _ in _collections(namespaces):
        peers = await live_peers(kube, path, {"fieldSelector": f"metadata.name={name}"})
        holders += [peer.identity for peer in peers if peer.priority == priority]
    if holders:
        log.error(
            "EGP_OPERATOR_PRIORITY=%d is already held by live replica(s) %s: kopf pauses every"
            " replica with the same priority, so none of them syncs until the others are gone."
            " Give each replica its own priority, or leave the setting unset.",
            priority,
            ", ".join(holders),
        )
    return holders


async def overlapping_operators(
    kube: KubeAPI, name: str, namespaces: tuple[str, ...]
) -> list[Peer]:
    """Live replicas of another egp-operator (another peering name, or a cluster-wide one
    next to a shard) that serve a namespace this one would serve."""
    if not namespaces:  # cluster-wide: every shard's KopfPeerings overlap
        return await live_peers(kube, f"{PEERING_API}/kopfpeerings", _SELECTOR)
    overlapping = await live_peers(kube, CLUSTER_PEERINGS, _SELECTOR)
    for ns in namespaces:
        peers = await live_peers(kube, namespaced_peerings(ns), _SELECTOR)
        overlapping += [peer for peer in peers if peer.peering != name]
    return overlapping


def _alive(peer: Mapping[str, Any], now: datetime) -> bool:
    try:
        seen = datetime.fromisoformat(str(peer["lastseen"]))
        lifetime = timedelta(seconds=float(peer.get("lifetime", 60)))
    except (KeyError, TypeError, ValueError):
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return seen + lifetime > now
