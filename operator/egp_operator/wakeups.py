"""When a source's loop wakes before its interval is over: a new spec, or a request to sync now.

kopf starts a daemon once and its loop sleeps out the interval it read; without this, shortening
`refreshInterval` from 1h to 10s, or unsuspending a source, would take effect only when the old
sleep ended, and `status.observedGeneration` would lag as long (kstatus reads that as
InProgress). Every watch event of an EGPSource is noted here; a new `metadata.generation` or a
new value of the sync-request annotation wakes that source's loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, Protocol

from egp_operator.resources.models import SYNC_REQUEST_ANNOTATION

SourceKey = tuple[str, str]  # (namespace, name)


class Stopped(Protocol):
    """What the loop is told to stop with (`kopf.DaemonStopped`)."""

    def wait(self, timeout: float | None = None) -> Awaitable[object]: ...


def sync_request(body: Mapping[str, Any]) -> str | None:
    """The value of the sync-request annotation (any string, e.g. a timestamp), if set."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SYNC_REQUEST_ANNOTATION)
    return str(value) if value is not None else None


def _trigger(body: Mapping[str, Any]) -> tuple[object, str | None]:
    return (body.get("metadata") or {}).get("generation"), sync_request(body)


class Wakeups:
    """One event per source, set when what its loop last saw has changed."""

    def __init__(self) -> None:
        self._events: dict[SourceKey, asyncio.Event] = {}
        self._seen: dict[SourceKey, tuple[object, str | None]] = {}

    def event(self, key: SourceKey) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def note(self, key: SourceKey, body: Mapping[str, Any]) -> bool:
        """Record a watch event's object; wake the loop (and say so) if its spec generation or
        sync request is new. The first sight only records: the loop runs at once anyway."""
        trigger = _trigger(body)
        previous = self._seen.get(key)
        self._seen[key] = trigger
        if previous is None or previous == trigger:
            return False
        self.event(key).set()
        return True

    def wake(self, keys: Iterable[SourceKey]) -> None:
        """Wake the loops of `keys` (their Secret changed); a key with no loop is ignored."""
        for key in keys:
            event = self._events.get(key)
            if event is not None:
                event.set()

    def forget(self, key: SourceKey) -> None:
        self._events.pop(key, None)
        self._seen.pop(key, None)


async def sleep(stopped: Stopped, woken: asyncio.Event | None, seconds: float) -> bool:
    """Sleep `seconds`, or less: until the loop is stopped or woken (`woken` None: only
    stopped). True when it was woken."""
    waits = {asyncio.ensure_future(stopped.wait())}
    if woken is not None:
        waits.add(asyncio.ensure_future(woken.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
    return woken is not None and woken.is_set()
