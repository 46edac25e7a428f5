"""The daemon loop of one source (handlers.sync_source) as kopf ends it: whatever it was
doing, the source's share of its Secret's watch goes with it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from egp_operator import handlers
from egp_operator.collector import FrozenAfterCycles
from egp_operator.settings import Settings
from egp_operator.sync.applier import SourceIdentity
from egp_operator.wakeups import Wakeups


class NeverStopped:
    """kopf's stop flag, never raised: kopf cancels the task instead (its cancellation
    timeout is up, as after a deletion or a pause for a peer)."""

    reason = None

    def __bool__(self) -> bool:
        return False

    async def wait(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - kopf's
        await asyncio.Event().wait()


class CycleThatHangs:
    """A cycle stuck on a slow EGP endpoint when the loop is cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.forgotten: list[SourceIdentity] = []

    async def run_cycle(self, *_args: Any, **_kwargs: Any) -> None:
        self.started.set()
        await asyncio.Event().wait()

    def forget(self, source: SourceIdentity) -> None:
        self.forgotten.append(source)


async def test_a_loop_cancelled_mid_cycle_releases_what_its_source_held() -> None:
    syncer = CycleThatHangs()
    memo = kopf.Memo(
        syncer=syncer, settings=Settings(), collector=FrozenAfterCycles(), wakeups=Wakeups()
    )
    body = {
        "metadata": {"name": "src", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"accountID": "a", "credentialsSecretRef": {"name": "egp-credentials"}},
    }
    loop = asyncio.create_task(
        handlers.sync_source(
            stopped=NeverStopped(),  # type: ignore[arg-type]
            body=body,  # type: ignore[arg-type]
            name="src",
            namespace="team-a",
            memo=memo,
            egpmodels_by_source={},  # type: ignore[arg-type]
        )
    )
    await asyncio.wait_for(syncer.started.wait(), timeout=5)

    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop

    assert syncer.forgotten == [SourceIdentity("team-a", "src", "uid-1")]
