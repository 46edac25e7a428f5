"""A source's loop wakes at once for a new spec or a new sync request, and not otherwise."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from egp_operator.resources.models import SYNC_REQUEST_ANNOTATION
from egp_operator.wakeups import Wakeups, sleep

KEY = ("team-a", "prod")


def body(generation: int, request: str | None = None, **status: Any) -> dict[str, Any]:
    annotations = {SYNC_REQUEST_ANNOTATION: request} if request else {}
    return {
        "metadata": {"generation": generation, "annotations": annotations},
        "status": status,
    }


def test_a_new_generation_or_sync_request_wakes_the_loop_and_nothing_else_does() -> None:
    wakeups = Wakeups()

    assert not wakeups.note(KEY, body(1))  # first sight: the loop runs at once anyway
    assert not wakeups.note(KEY, body(1, observedGeneration=1))  # its own status write
    assert not wakeups.event(KEY).is_set()
    assert wakeups.note(KEY, body(2))  # a spec change
    assert wakeups.event(KEY).is_set()
    wakeups.event(KEY).clear()
    assert wakeups.note(KEY, body(2, request="2026-11-29T12:00:00Z"))
    assert not wakeups.note(KEY, body(2, request="2026-11-29T12:00:00Z"))
    assert wakeups.note(KEY, body(2, request="2026-11-29T12:05:00Z"))


class NeverStopped:
    def wait(self, timeout: float | None = None) -> asyncio.Future[object]:
        return asyncio.get_running_loop().create_future()


async def test_the_sleep_ends_as_soon_as_the_loop_is_woken() -> None:
    woken = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, woken.set)
    started = time.monotonic()

    await sleep(NeverStopped(), woken, 3600)

    assert time.monotonic() - started < 60  # not the hour: woken


async def test_the_sleep_ends_after_its_time_when_nothing_happens() -> None:
    woken = asyncio.Event()

    await sleep(NeverStopped(), woken, 0.05)

    assert not woken.is_set()
