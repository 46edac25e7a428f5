"""The shared rate-limit holds: per key, account and endpoint; the later hold wins; bounded."""

from __future__ import annotations

import pytest

from egp_operator.egp import rate_limits
from egp_operator.egp.rate_limits import RateLimits

URL = "https://api.egp.example/"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_hold_lasts_its_seconds_for_its_key_only() -> None:
    clock = Clock()
    limits = RateLimits(clock=clock)
    team_a = limits.key(URL, "acct-1", "sk-a")
    limits.hold(team_a, 5.0)

    assert limits.wait(team_a) == 5.0
    assert limits.wait(limits.key(URL, "acct-2", "sk-a")) == 0.0  # another account
    assert limits.wait(limits.key(URL, "acct-1", "sk-b")) == 0.0  # another key
    assert limits.wait(limits.key("https://other/", "acct-1", "sk-a")) == 0.0
    clock.now += 5.0
    assert limits.wait(team_a) == 0.0


def test_the_later_hold_wins() -> None:
    clock = Clock()
    limits = RateLimits(clock=clock)
    key = limits.key(URL, None, "sk-a")
    limits.hold(key, 10.0)
    limits.hold(key, 2.0)

    assert limits.wait(key) == 10.0


def test_the_key_cannot_be_read_back_from_what_is_held() -> None:
    limits = RateLimits()
    key = limits.key(URL, "acct-1", "sk-secret-value-123")

    assert b"sk-secret" not in key
    assert key != RateLimits().key(URL, "acct-1", "sk-secret-value-123")  # salted per process


def test_holds_are_bounded_whatever_an_endpoint_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limits, "MAX_HOLDS", 10)
    limits = RateLimits(clock=Clock())
    keys = [limits.key(URL, f"acct-{i}", "sk-a") for i in range(25)]
    for key in keys:
        limits.hold(key, 60.0)

    assert sum(limits.wait(key) > 0 for key in keys) <= 10
    assert limits.wait(keys[-1]) == 60.0  # the newest are kept
