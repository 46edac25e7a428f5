"""Start-up checks on the peering objects. Two live replicas with the same configured priority
are said loudly: kopf pauses them all, which otherwise looks like an operator that silently
stopped. A shard finds another egp-operator already serving one of its namespaces, so that it
can refuse to start rather than double-write."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from egp_operator.kube import KubeError
from egp_operator.peering import (
    PEERING_API,
    ensure_peering,
    overlapping_operators,
    warn_if_priority_taken,
)
from egp_testbench.fake_kube import FakeKube

PEERINGS = "/apis/kopf.dev/v1/clusterkopfpeerings"


def peering(
    name: str = "egp-operator", namespace: str | None = None, **peers: dict[str, Any]
) -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"items": [{"metadata": metadata, "status": peers}]}


def live() -> dict[str, Any]:
    return {"priority": 1, "lastseen": seen(timedelta(seconds=5)), "lifetime": 60}


def seen(ago: timedelta) -> str:
    return (datetime.now(UTC) - ago).isoformat()


async def test_a_live_replica_with_the_same_priority_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube(
        {
            PEERINGS: peering(
                **{
                    "replica-a": {"priority": 7, "lastseen": seen(timedelta(seconds=5))},
                    "replica-b": {"priority": 9, "lastseen": seen(timedelta(seconds=5))},
                }
            )
        }
    )

    with caplog.at_level(logging.ERROR):
        holders = await warn_if_priority_taken(kube, "egp-operator", (), 7)

    assert holders == ["replica-a"]
    assert "EGP_OPERATOR_PRIORITY=7 is already held" in caplog.text


async def test_an_expired_entry_with_the_same_priority_is_not_a_conflict() -> None:
    kube = FakeKube(
        {
            PEERINGS: peering(
                old={"priority": 7, "lastseen": seen(timedelta(minutes=5)), "lifetime": 60}
            )
        }
    )

    assert await warn_if_priority_taken(kube, "egp-operator", (), 7) == []


def kopfpeerings(namespace: str) -> str:
    return f"{PEERING_API}/namespaces/{namespace}/kopfpeerings"


async def test_a_shard_finds_another_shard_serving_one_of_its_namespaces() -> None:
    kube = FakeKube(
        {
            PEERINGS: {"items": []},
            kopfpeerings("team-a"): peering("egp-shard-a", "team-a", **{"pod-a": live()}),
            kopfpeerings("team-b"): {"items": []},
        }
    )

    overlapping = await overlapping_operators(kube, "egp-shard-b", ("team-a", "team-b"))

    assert [(peer.identity, peer.peering, peer.namespace) for peer in overlapping] == [
        ("pod-a", "egp-shard-a", "team-a")
    ]
    # Only egp-operator's peering objects, never another kopf operator's.
    assert all(
        params == {"labelSelector": "app.kubernetes.io/name=egp-operator"}
        for verb, _, params in kube.requests
        if verb == "GET"
    )


async def test_the_replicas_of_the_same_shard_are_not_an_overlap() -> None:
    kube = FakeKube(
        {
            PEERINGS: {"items": []},
            kopfpeerings("team-a"): peering("egp-shard-a", **{"pod-a": live()}),
        }
    )

    assert await overlapping_operators(kube, "egp-shard-a", ("team-a",)) == []


async def test_a_shard_next_to_a_cluster_wide_operator_overlaps_it() -> None:
    kube = FakeKube({PEERINGS: peering(**{"pod-0": live()}), kopfpeerings("team-a"): {"items": []}})

    overlapping = await overlapping_operators(kube, "egp-shard-a", ("team-a",))

    assert [peer.identity for peer in overlapping] == ["pod-0"]


async def test_a_cluster_wide_operator_finds_a_live_shard_anywhere() -> None:
    kube = FakeKube({f"{PEERING_API}/kopfpeerings": peering("egp-shard-a", **{"pod-a": live()})})

    overlapping = await overlapping_operators(kube, "egp-operator", ())

    assert [peer.identity for peer in overlapping] == ["pod-a"]


async def test_a_shard_gone_longer_than_its_lifetime_is_no_overlap() -> None:
    gone = {"priority": 1, "lastseen": seen(timedelta(minutes=5)), "lifetime": 60}
    kube = FakeKube(
        {PEERINGS: {"items": []}, kopfpeerings("team-a"): peering("egp-shard-a", old=gone)}
    )

    assert await overlapping_operators(kube, "egp-shard-b", ("team-a",)) == []


async def test_peerings_it_may_not_read_are_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube({PEERINGS: {"items": []}})
    kube.errors["GET", kopfpeerings("team-a")] = KubeError(403, "Forbidden", "no")

    with caplog.at_level(logging.WARNING):
        assert await overlapping_operators(kube, "egp-shard-a", ("team-a",)) == []

    assert "could not read the peering objects" in caplog.text


async def test_the_peering_objects_it_creates_carry_the_label() -> None:
    kube = FakeKube()

    await ensure_peering(kube, "egp-shard-a", ("team-a", "team-b"))

    created = [body for verb, _, body in kube.requests if verb == "POST"]
    assert [(c["kind"], c["metadata"]["namespace"]) for c in created] == [
        ("KopfPeering", "team-a"),
        ("KopfPeering", "team-b"),
    ]
    assert all(
        c["metadata"]["labels"] == {"app.kubernetes.io/name": "egp-operator"} for c in created
    )


async def test_a_peering_object_that_already_exists_is_labelled() -> None:
    kube = FakeKube()
    kube.create_errors["egp-operator"] = KubeError(409, "AlreadyExists", "exists")

    await ensure_peering(kube, "egp-operator", ())

    assert kube.paths("PATCH") == [f"{PEERINGS}/egp-operator"]
