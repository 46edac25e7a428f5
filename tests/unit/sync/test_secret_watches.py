"""The Secret watches: a source's key read from memory while its watch is up, a change waking
its sources, a broken watch handing the read back to the cycle, and the bound on watches."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from egp_operator.bounds import MAX_API_KEY_BYTES
from egp_operator.kube import KubeError, WatchError, core_path
from egp_operator.resources.models import SecretKeyRef
from egp_operator.sync.credentials import CredentialsError, api_key_from_data, read_api_key
from egp_operator.sync.secret_watches import Holder, SecretState, SecretWatches
from egp_testbench.fake_kube import FakeKube

KEY = "egp-key-0123456789"
SOURCE: Holder = ("team-a", "prod", "uid-prod")
STAGING: Holder = ("team-a", "staging", "uid-staging")
SECRET = ("team-a", "egp-credentials")
REF = SecretKeyRef(name="egp-credentials", key="apiKey")


def encoded(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def secret_object(value: str, *, namespace: str = "team-a", version: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": "egp-credentials", "resourceVersion": version},
        "data": {"apiKey": encoded(value), "other": encoded("unused")},
    }


class FakeWatcher:
    """Lists from `secrets`; each watch it opens streams what the test puts on its queue (an
    event dict, an exception to raise, or None to end the stream)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.streams: list[asyncio.Queue[dict[str, Any] | Exception | None]] = []
        self.lists = 0
        self.watch_params: list[dict[str, str]] = []
        self.list_error: KubeError | None = None

    async def list_objects(self, path: str, params: dict[str, str]) -> Any:
        self.lists += 1
        if self.list_error is not None:
            raise self.list_error
        name = params["fieldSelector"].removeprefix("metadata.name=")
        items = [
            s
            for (ns, n), s in self.secrets.items()
            if n == name and path.endswith(f"/namespaces/{ns}/secrets")
        ]
        return {"metadata": {"resourceVersion": "10"}, "items": items}

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        self.watch_params.append(params)
        queue: asyncio.Queue[dict[str, Any] | Exception | None] = asyncio.Queue()
        self.streams.append(queue)
        while (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item

    async def send(self, item: dict[str, Any] | Exception | None) -> None:
        await until(lambda: bool(self.streams))
        await self.streams[-1].put(item)


async def until(condition: Callable[[], bool], deadline: float = 5.0) -> None:
    """Poll what the watch's own task changes, with a deadline."""
    async with asyncio.timeout(deadline):
        while not condition():  # noqa: ASYNC110 - the state is the code under test's, not ours
            await asyncio.sleep(0.001)


@pytest.fixture
def watcher() -> FakeWatcher:
    watcher = FakeWatcher()
    watcher.secrets[SECRET] = secret_object(KEY)
    return watcher


def watches_of(
    watcher: FakeWatcher, woken: list[frozenset[Holder]] | None = None, **kw: Any
) -> SecretWatches:
    return SecretWatches(
        watcher,
        max_watches=kw.pop("max_watches", 8),
        on_change=(woken.append if woken is not None else lambda _h: None),
        backoff_max_seconds=0.01,
    )


async def watching(
    watcher: FakeWatcher, woken: list[frozenset[Holder]] | None = None
) -> SecretWatches:
    """Watches where SOURCE uses SECRET's `apiKey`, once that watch is up."""
    watches = watches_of(watcher, woken)
    watches.use(SOURCE, SECRET, "apiKey")
    await until(lambda: watches.values(SECRET) is not None)
    return watches


async def test_a_watched_secret_is_read_from_memory_without_a_request(watcher: FakeWatcher) -> None:
    watches = watches_of(watcher)
    kube = FakeKube()  # answers nothing: a GET would be a NotFound
    watches.use(SOURCE, SECRET, "apiKey")
    await until(lambda: watches.values(SECRET) is not None)
    key = await read_api_key(kube, watches, SOURCE, REF)
    assert key.get_secret_value() == KEY
    assert kube.requests == []
    assert watcher.watch_params[-1]["fieldSelector"] == "metadata.name=egp-credentials"
    assert watcher.watch_params[-1]["resourceVersion"] == "10"
    await watches.aclose()


async def test_a_secret_not_yet_watched_is_read_once_by_the_cycle(watcher: FakeWatcher) -> None:
    watches = watches_of(watcher)
    kube = FakeKube({core_path(*SECRET[:1], "secrets", SECRET[1]): secret_object(KEY)})
    key = await read_api_key(kube, watches, SOURCE, REF)
    assert key.get_secret_value() == KEY
    assert kube.paths("GET") == [core_path("team-a", "secrets", "egp-credentials")]
    await watches.aclose()


async def test_a_rotation_is_kept_and_wakes_the_sources_that_use_the_secret(
    watcher: FakeWatcher,
) -> None:
    woken: list[frozenset[Holder]] = []
    watches = watches_of(watcher, woken)
    watches.use(SOURCE, SECRET, "apiKey")
    watches.use(STAGING, SECRET, "apiKey")
    await until(lambda: watches.values(SECRET) is not None)
    await watcher.send({"type": "MODIFIED", "object": secret_object("rotated-key", version="11")})
    await until(lambda: bool(woken))
    assert woken == [frozenset({SOURCE, STAGING})]
    key = await read_api_key(FakeKube(), watches, SOURCE, REF)
    assert key.get_secret_value() == "rotated-key"
    await watches.aclose()


async def test_a_change_to_a_key_no_source_uses_wakes_nobody(watcher: FakeWatcher) -> None:
    woken: list[frozenset[Holder]] = []
    watches = await watching(watcher, woken)
    changed = secret_object(KEY, version="11")
    changed["data"]["other"] = encoded("changed")
    await watcher.send({"type": "MODIFIED", "object": changed})
    await watcher.send({"type": "MODIFIED", "object": secret_object("then-rotated", version="12")})
    await until(lambda: bool(woken))
    assert len(woken) == 1  # the rotation only
    await watches.aclose()


async def test_a_deleted_secret_is_not_found_without_a_request_and_wakes_its_sources(
    watcher: FakeWatcher,
) -> None:
    woken: list[frozenset[Holder]] = []
    watches = await watching(watcher, woken)
    await watcher.send({"type": "DELETED", "object": secret_object(KEY, version="11")})
    await until(lambda: watches.values(SECRET) is SecretState.ABSENT)
    assert woken == [frozenset({SOURCE})]
    kube = FakeKube()
    with pytest.raises(CredentialsError) as raised:
        await read_api_key(kube, watches, SOURCE, REF)
    assert raised.value.reason == "SecretNotFound"
    assert kube.requests == []
    await watches.aclose()


async def test_an_object_of_another_namespace_on_the_watch_is_never_used(
    watcher: FakeWatcher,
) -> None:
    watches = await watching(watcher)
    await watcher.send(
        {"type": "MODIFIED", "object": secret_object("team-b-key", namespace="team-b")}
    )
    await until(lambda: watcher.lists == 2 and watches.values(SECRET) is not None)
    values = watches.values(SECRET)
    assert isinstance(values, dict)
    assert values["apiKey"] == encoded(KEY)  # listed again: its own Secret, not team-b's
    await watches.aclose()


async def test_410_gone_lists_again_and_the_watch_resumes_from_the_new_version(
    watcher: FakeWatcher,
) -> None:
    watches = await watching(watcher)
    watcher.secrets[SECRET] = secret_object("changed-while-gone")
    await watcher.send({"type": "ERROR", "object": {"kind": "Status", "code": 410}})
    await until(lambda: watcher.lists == 2 and len(watcher.streams) == 2)
    values = watches.values(SECRET)
    assert isinstance(values, dict)
    assert values["apiKey"] == encoded("changed-while-gone")
    await watches.aclose()


async def test_a_broken_watch_hands_the_read_to_the_cycle_until_it_is_back(
    watcher: FakeWatcher,
) -> None:
    watches = await watching(watcher)
    watcher.list_error = KubeError(0, "Unavailable", "connection refused")
    await watcher.send(WatchError("connection reset"))
    await until(lambda: watches.values(SECRET) is None)
    assert watches.counts() == {"watched": 0, "down": 1, "unwatched": 0}
    kube = FakeKube({core_path("team-a", "secrets", "egp-credentials"): secret_object(KEY)})
    assert (await read_api_key(kube, watches, SOURCE, REF)).get_secret_value() == KEY
    assert len(kube.paths("GET")) == 1
    watcher.list_error = None
    await until(lambda: watches.values(SECRET) is not None)
    assert watches.counts() == {"watched": 1, "down": 0, "unwatched": 0}
    await watches.aclose()


class RecordedSleeps:
    """The backoffs a watch asks for, granted at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def test_a_refused_watch_backs_off_longer_each_time(watcher: FakeWatcher) -> None:
    watcher.list_error = KubeError(403, "Forbidden", "cannot list secrets")
    sleeps = RecordedSleeps()
    watches = SecretWatches(watcher, max_watches=8, sleep=sleeps)
    watches.use(SOURCE, SECRET, "apiKey")
    await until(lambda: len(sleeps.delays) >= 6)
    await watches.aclose()
    # 2, 4, 8, ... seconds (each drawn in its upper half), up to the cap
    assert all(1 <= d <= 2**n for n, d in enumerate(sleeps.delays[:6], start=1))
    assert sleeps.delays[5] > sleeps.delays[0]


async def test_a_watch_the_server_ends_at_once_backs_off_instead_of_looping(
    watcher: FakeWatcher,
) -> None:
    """A proxy that answers every watch with an empty 200 must not get a request a second."""
    sleeps = RecordedSleeps()
    watches = SecretWatches(watcher, max_watches=8, sleep=sleeps)
    watches.use(SOURCE, SECRET, "apiKey")
    for opened in range(1, 5):
        await until(lambda opened=opened: len(watcher.streams) == opened)
        await watcher.streams[-1].put(None)  # ends the open stream at once
    await until(lambda: len(sleeps.delays) >= 4)
    assert sleeps.delays[3] > 4  # growing: the 4th failure in a row, not a first one again
    await watches.aclose()


async def test_a_watch_that_hits_a_bug_is_down_and_comes_back(watcher: FakeWatcher) -> None:
    watches = SecretWatches(watcher, max_watches=8, sleep=RecordedSleeps())
    watches.use(SOURCE, SECRET, "apiKey")
    await until(lambda: watches.values(SECRET) is not None)
    await watcher.send({"type": "MODIFIED", "object": {"metadata": "not a mapping"}})
    await until(lambda: watcher.lists == 2 and watches.values(SECRET) is not None)
    assert watches.counts()["watched"] == 1
    await watches.aclose()


async def test_watches_are_bounded_in_all_and_per_namespace(watcher: FakeWatcher) -> None:
    watches = watches_of(watcher, max_watches=8)  # a namespace gets at most 2
    for index in range(3):
        watches.use(("team-a", f"s{index}", "u"), ("team-a", f"secret-{index}"), "apiKey")
    for index in range(8):
        watches.use((f"team-{index}", "s", "u"), (f"team-{index}", "egp"), "apiKey")
    counts = watches.counts()
    assert counts["unwatched"] == 3  # team-a's third, and the two past the total of 8
    assert counts["watched"] + counts["down"] == 8
    await watches.aclose()


async def test_a_freed_watch_goes_to_the_next_secret_its_cycle_reads(watcher: FakeWatcher) -> None:
    watches = watches_of(watcher, max_watches=1)
    watches.use(("team-a", "first", "u1"), ("team-a", "one"), "apiKey")
    watches.use(("team-b", "second", "u2"), ("team-b", "two"), "apiKey")
    assert watches.counts()["unwatched"] == 1
    watches.release(("team-a", "first", "u1"))
    watches.use(("team-b", "second", "u2"), ("team-b", "two"), "apiKey")  # its next cycle
    assert watches.counts()["unwatched"] == 0
    await watches.aclose()


async def test_the_last_source_out_stops_the_watch(watcher: FakeWatcher) -> None:
    watches = watches_of(watcher)
    watches.use(SOURCE, SECRET, "apiKey")
    watches.use(STAGING, SECRET, "apiKey")
    watches.release(SOURCE)
    assert sum(watches.counts().values()) == 1
    watches.release(STAGING)
    assert watches.counts() == {"watched": 0, "down": 0, "unwatched": 0}
    await watches.aclose()


async def test_a_source_that_names_another_secret_leaves_the_first(watcher: FakeWatcher) -> None:
    watches = await watching(watcher)
    watches.use(SOURCE, ("team-a", "new-credentials"), "apiKey")
    assert watches.values(SECRET) is None  # that watch is gone, not merely down
    assert sum(watches.counts().values()) == 1
    await until(lambda: watcher.lists == 2)  # the new Secret's own list
    await watches.aclose()


async def test_the_late_goodbye_of_a_deleted_source_leaves_its_namesake_alone(
    watcher: FakeWatcher,
) -> None:
    watches = watches_of(watcher)
    recreated: Holder = (SOURCE[0], SOURCE[1], "uid-of-the-new-one")
    watches.use(SOURCE, SECRET, "apiKey")
    watches.use(recreated, SECRET, "apiKey")
    watches.release(SOURCE)
    assert sum(watches.counts().values()) == 1
    await watches.aclose()


async def test_a_source_using_a_new_key_of_a_watched_secret_gets_it_listed(
    watcher: FakeWatcher,
) -> None:
    watches = await watching(watcher)
    watches.use(("team-a", "other", "u3"), SECRET, "other")
    await until(lambda: watcher.lists == 2 and watches.values(SECRET) is not None)
    values = watches.values(SECRET)
    assert isinstance(values, dict)
    assert set(values) == {"apiKey", "other"}
    await watches.aclose()


async def test_a_huge_value_is_kept_cut_and_refused_as_too_long(watcher: FakeWatcher) -> None:
    watcher.secrets[SECRET] = secret_object("k" * (1024 * 1024))
    watches = await watching(watcher)
    values = watches.values(SECRET)
    assert isinstance(values, dict)
    assert len(values["apiKey"]) < 2 * MAX_API_KEY_BYTES
    with pytest.raises(CredentialsError) as raised:
        api_key_from_data(values, REF)
    assert raised.value.reason == "SecretKeyInvalid"
    assert "longer than" in raised.value.message
    await watches.aclose()


async def test_no_watch_at_all_when_the_bound_is_zero(watcher: FakeWatcher) -> None:
    watches = watches_of(watcher, max_watches=0)
    watches.use(SOURCE, SECRET, "apiKey")
    assert watches.counts() == {"watched": 0, "down": 0, "unwatched": 1}
    assert watcher.lists == 0
    await watches.aclose()
