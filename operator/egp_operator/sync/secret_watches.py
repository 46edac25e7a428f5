"""Each Secret that sources name, watched by name: a settled cycle reads its key from memory, and
a rotation or a deletion reaches the sources at the watch event instead of at their next cycle.

design.md, "Credentials": a watch with the field selector `metadata.name=<name>` in the Secret's
namespace, which Kubernetes RBAC authorizes with `list` and `watch` restricted by
`resourceNames`, so the grants stay per name. One watch per Secret, shared by every source that
names it, started with the first and stopped with the last; resumed from its resourceVersion,
listed again on 410 Gone, backed off on errors. While a Secret has no watch that is up (past the
bound, starting, or broken), its sources' cycles read it themselves.

Bounded: at most `max_watches` at once, a namespace at most a quarter of them (at least one),
so one tenant's Secrets cannot take every watch. Each is an HTTP/1.1 connection of its own,
about 320 KB of the operator's memory (most of it asyncio's 256 KiB TLS read buffer) and 90 KB
of the API server's (bench/FINDINGS.md section 11). Of its Secret a watch keeps only the values
its sources use, each cut past MAX_API_KEY_BYTES.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from egp_operator.bounds import MAX_API_KEY_BASE64_LENGTH
from egp_operator.kube import KubeError, KubeWatcher, WatchError, core_path

log = logging.getLogger(__name__)

SecretRef = tuple[str, str]  # (namespace, name)
#: A source that uses a Secret: (namespace, name, uid). The uid tells a source from its
#: namesake created after it, so the late goodbye of the one never releases the other.
Holder = tuple[str, str, str]

#: What a watch keeps of a value: the longest key, and one character more, so that a longer
#: value is still seen as too long.
KEPT_VALUE_LENGTH: Final = MAX_API_KEY_BASE64_LENGTH + 1
#: A watch asks the API server to end its stream after a random time in this range (as
#: client-go's reflector does), so that restarts spread out; it then resumes where it was.
WATCH_TIMEOUT_SECONDS: Final = (300, 600)
#: A stream the API server ends sooner than this, without error, counts as a failure: a
#: watch never turns into a loop of requests.
SHORTEST_HEALTHY_STREAM_SECONDS: Final = 10.0


class SecretState(Enum):
    ABSENT = "absent"  # the watch is up, and there is no such Secret


Values = Mapping[str, str]


@dataclass
class _Watch:
    holders: dict[Holder, str] = field(default_factory=dict)  # source -> the key it uses
    task: asyncio.Task[None] | None = None
    #: True while `values` is the Secret as the API server has it now.
    up: bool = False
    #: The used keys' values, base64 as stored, each at most KEPT_VALUE_LENGTH; None: absent.
    values: dict[str, str] | None = None
    #: Whether `values` was ever read: a first reading wakes nobody.
    seen: bool = False
    version: str = ""

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.holders.values())


class SecretWatches:
    """The watches of one operator process, by Secret."""

    def __init__(
        self,
        kube: KubeWatcher,
        *,
        max_watches: int,
        on_change: Callable[[frozenset[Holder]], None] = lambda _holders: None,
        backoff_max_seconds: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._kube = kube
        self.max_watches = max_watches
        self.max_per_namespace = max(max_watches // 4, 1) if max_watches else 0
        self._on_change = on_change
        self._backoff_max = backoff_max_seconds
        self._sleep = sleep
        self._watches: dict[SecretRef, _Watch] = {}
        self._used: dict[Holder, SecretRef] = {}

    def use(self, holder: Holder, secret: SecretRef, key: str) -> None:
        """`holder`'s cycles read `key` of `secret` (and of no other Secret from now on)."""
        previous = self._used.get(holder)
        if previous is not None and previous != secret:
            self.release(holder)
        self._used[holder] = secret
        watch = self._watches.setdefault(secret, _Watch())
        new_key = key not in watch.keys
        watch.holders[holder] = key
        if watch.task is not None and (new_key or watch.task.done()):
            self._stop(watch)  # its values lack the new key (or it died): list it again
        if watch.task is None:
            self._start_if_room(secret, watch)

    def values(self, secret: SecretRef) -> Values | SecretState | None:
        """The used values of `secret` as its watch has them, ABSENT if it does not exist, or
        None when no watch is up for it: then the cycle reads it."""
        watch = self._watches.get(secret)
        if watch is None or not watch.up:
            return None
        return SecretState.ABSENT if watch.values is None else watch.values

    def release(self, holder: Holder) -> None:
        """`holder` reads no Secret any more (its loop ended): the last one out stops the
        watch."""
        secret = self._used.pop(holder, None)
        watch = self._watches.get(secret) if secret is not None else None
        if secret is None or watch is None:
            return
        watch.holders.pop(holder, None)
        if not watch.holders:
            self._stop(watch)
            del self._watches[secret]

    def counts(self) -> dict[str, int]:
        """Secrets in use by what their sources read them from: `watched` (a watch that is up),
        `down` (a watch starting or broken), `unwatched` (past the bound)."""
        counts = {"watched": 0, "down": 0, "unwatched": 0}
        # A copy first: the scrape that asks runs in another thread than the loop that adds.
        for watch in list(self._watches.values()):
            state = "unwatched" if watch.task is None else "watched" if watch.up else "down"
            counts[state] += 1
        return counts

    async def aclose(self) -> None:
        tasks = [watch.task for watch in self._watches.values() if watch.task is not None]
        for watch in self._watches.values():
            self._stop(watch)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _start_if_room(self, secret: SecretRef, watch: _Watch) -> None:
        running = [ref for ref, other in self._watches.items() if other.task is not None]
        in_namespace = sum(1 for namespace, _name in running if namespace == secret[0])
        if len(running) < self.max_watches and in_namespace < self.max_per_namespace:
            watch.task = asyncio.create_task(
                self._follow(secret, watch), name=f"watch of Secret {secret[0]}/{secret[1]}"
            )

    @staticmethod
    def _stop(watch: _Watch) -> None:
        if watch.task is not None:
            watch.task.cancel()
            watch.task = None
        watch.up = False

    async def _follow(self, secret: SecretRef, watch: _Watch) -> None:
        """List, then watch from there for as long as the Secret is used; list again at once
        when the version it resumes from has expired (410 Gone), and back off on anything
        else, an answer that ends at once included: the cycles read the Secret meanwhile,
        and no watch ever turns into a loop of requests."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._list(secret, watch)
                while True:
                    started = time.monotonic()
                    await self._stream(secret, watch)
                    if time.monotonic() - started < SHORTEST_HEALTHY_STREAM_SECONDS:
                        raise WatchError("the API server ended the watch at once")
                    failures = 0
            except _Gone:
                if time.monotonic() - started >= SHORTEST_HEALTHY_STREAM_SECONDS:
                    watch.up = False
                    continue
                problem = "410 Gone at once"
            except (KubeError, WatchError) as error:
                problem = str(error)
            except Exception as error:  # a bug must not leave a watch dead and thought up
                log.exception("the watch of Secret %s/%s failed", *secret)
                problem = type(error).__name__
            watch.up = False
            failures += 1
            if failures == 1:
                log.warning(
                    "cannot watch Secret %s/%s (%s): its sources read it each cycle until"
                    " the watch is back",
                    *secret,
                    problem,
                )
            await self._sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        return float(min(2.0**failures, self._backoff_max) * random.uniform(0.5, 1.0))

    async def _list(self, secret: SecretRef, watch: _Watch) -> None:
        namespace, name = secret
        answer = await self._kube.list_objects(
            core_path(namespace, "secrets"), params={"fieldSelector": f"metadata.name={name}"}
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
            raise WatchError("the API server answered the list with something else")
        found = [item for item in answer["items"] if _identity(item) == secret]
        self._read(watch, found[0] if found else None)
        watch.version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        watch.up = True

    async def _stream(self, secret: SecretRef, watch: _Watch) -> None:
        namespace, name = secret
        params = {
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": watch.version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(random.randint(*WATCH_TIMEOUT_SECONDS)),
        }
        stream = self._kube.watch(core_path(namespace, "secrets"), params)
        async with contextlib.aclosing(stream) as events:  # its connection, even on a raise
            async for event in events:
                self._apply(secret, watch, event)

    def _apply(self, secret: SecretRef, watch: _Watch, event: Mapping[str, Any]) -> None:
        kind, found = event.get("type"), event.get("object")
        if not isinstance(found, dict):
            raise WatchError("the API server sent a watch event without an object")
        if kind == "ERROR":
            if found.get("code") == 410:
                raise _Gone
            raise WatchError(str(found.get("message") or found.get("reason") or "error"))
        if kind != "BOOKMARK":
            if _identity(found) != secret:
                raise WatchError("the API server sent another object on the watch")
            self._read(watch, None if kind == "DELETED" else found)
        meta = found.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if version:
            watch.version = str(version)

    def _read(self, watch: _Watch, secret: Mapping[str, Any] | None) -> None:
        """Keep the used values of `secret` (None: it does not exist); wake its sources when
        what they would read has changed."""
        values: dict[str, str] | None = None
        if secret is not None:
            data = secret.get("data") or {}
            values = {
                key: value[:KEPT_VALUE_LENGTH]
                for key in watch.keys
                if isinstance(data, dict) and isinstance(value := data.get(key), str)
            }
        changed = watch.seen and values != watch.values
        watch.values, watch.seen = values, True
        if changed:
            self._on_change(frozenset(watch.holders))


class _Gone(Exception):
    """The resourceVersion the watch resumes from is older than the API server keeps."""


def _identity(found: Any) -> tuple[Any, Any]:
    meta = found.get("metadata") if isinstance(found, dict) else None
    return (meta.get("namespace"), meta.get("name")) if isinstance(meta, dict) else (None, None)
