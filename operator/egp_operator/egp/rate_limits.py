"""EGP's rate limit, shared by every source that uses the same key and account.

EGP limits requests per key and account, so several EGPSources with one key and account share
one limit. When EGP answers 429, every client of that key and account holds its requests for
the delay EGP asked for (or the first retry delay), instead of each retrying alone and meeting
the limit again. Keys are held only as a keyed hash, with a key made when the process starts:
nothing here can give an API key back.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Final

#: More holds than this at once (a hostile endpoint answering 429 to many keys): expired ones
#: are dropped first, and if none has expired the oldest goes.
MAX_HOLDS: Final = 10_000


class RateLimits:
    """When each key and account may send again; shared by the clients of one process."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._salt = secrets.token_bytes(16)
        self._not_before: dict[bytes, float] = {}

    def key(self, base_url: str, account_id: str | None, api_key: str) -> bytes:
        """Who shares a limit: one key and account at one endpoint."""
        identity = "\0".join((base_url, account_id or "", api_key)).encode()
        return hashlib.blake2b(identity, key=self._salt, digest_size=16).digest()

    def hold(self, key: bytes, seconds: float) -> None:
        """No request of `key` before `seconds` from now (a later hold is kept)."""
        until = self._clock() + max(seconds, 0.0)
        if until > self._not_before.get(key, 0.0):
            self._not_before.pop(key, None)  # re-inserted last: the dict stays oldest-first
            self._not_before[key] = until
        if len(self._not_before) > MAX_HOLDS:
            self._forget_expired()

    def wait(self, key: bytes) -> float:
        """Seconds to wait before a request of `key` may be sent; 0 when it may now."""
        until = self._not_before.get(key)
        if until is None:
            return 0.0
        remaining = until - self._clock()
        if remaining <= 0:
            del self._not_before[key]
            return 0.0
        return remaining

    def _forget_expired(self) -> None:
        now = self._clock()
        for key in [k for k, until in self._not_before.items() if until <= now]:
            del self._not_before[key]
        while len(self._not_before) > MAX_HOLDS:
            del self._not_before[next(iter(self._not_before))]
