"""Polling with a deadline: e2e tests wait for controllers this way, never with bare sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str
) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail after ``timeout``.

    Exceptions from ``probe`` propagate at once: a probe signals "not yet" by returning a
    falsy value, so real errors are never mistaken for waiting.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
