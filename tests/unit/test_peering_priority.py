"""Two live replicas with the same configured priority are said loudly at start-up: kopf
pauses them all, which otherwise looks like an operator that silently stopped."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from egp_operator.handlers import warn_if_priority_taken
from tests.unit.sync.fake_kube import FakeKube

PEERINGS = "/apis/kopf.dev/v1/clusterkopfpeerings"


def peering(**peers: dict[str, Any]) -> dict[str, Any]:
    return {"items": [{"metadata": {"name": "egp-operator"}, "status": peers}]}


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
        holders = await warn_if_priority_taken(kube, "egp-operator", (), 7)  # type: ignore[arg-type]

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

    assert await warn_if_priority_taken(kube, "egp-operator", (), 7) == []  # type: ignore[arg-type]
