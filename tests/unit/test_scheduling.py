"""A source's loop: its interval after a success, a growing backoff after failures that a sync
request does not erase, and never two cycles closer than the spacing, whatever wakes it."""

from __future__ import annotations

import pytest

from egp_operator.scheduling import ERROR_BACKOFF_START, MIN_CYCLE_SPACING, SourceSchedule

NO_JITTER = 0.5  # the draw that gives the delay itself


def schedule() -> SourceSchedule:
    return SourceSchedule(backoff_max=300.0, jitter=0.1)


def test_after_a_success_the_next_cycle_is_one_interval_away() -> None:
    assert schedule().cycle_ended(ok=True, interval=60.0, draw=NO_JITTER) == pytest.approx(60.0)


@pytest.mark.parametrize(("draw", "delay"), [(0.0, 54.0), (0.999999, 66.0)])
def test_the_interval_is_jittered_within_the_setting(draw: float, delay: float) -> None:
    assert schedule().cycle_ended(ok=True, interval=60.0, draw=draw) == pytest.approx(delay)


def test_failures_back_off_doubling_up_to_the_maximum() -> None:
    timing = schedule()

    delays = [timing.cycle_ended(ok=False, interval=60.0, draw=NO_JITTER) for _ in range(10)]

    assert delays[:4] == pytest.approx([5.0, 10.0, 20.0, 40.0])
    assert delays[-1] == pytest.approx(300.0)


def test_a_success_resets_the_backoff() -> None:
    timing = schedule()
    for _ in range(5):
        timing.cycle_ended(ok=False, interval=60.0, draw=NO_JITTER)

    timing.cycle_ended(ok=True, interval=60.0, draw=NO_JITTER)

    assert timing.cycle_ended(ok=False, interval=60.0, draw=NO_JITTER) == pytest.approx(
        ERROR_BACKOFF_START
    )


def test_a_sync_request_between_failures_does_not_erase_the_backoff() -> None:
    """The woken cycle runs, fails again, and the next delay keeps growing: requests cannot
    turn a failing source into a loop that calls its endpoint every few seconds."""
    timing = schedule()
    for _ in range(4):
        timing.cycle_ended(ok=False, interval=60.0, draw=NO_JITTER)
    timing.cycle_started(now=1000.0)  # woken by a request: it runs at once

    after_request = timing.cycle_ended(ok=False, interval=60.0, draw=NO_JITTER)

    assert after_request == pytest.approx(80.0)


def test_a_spec_refused_by_the_operator_is_retried_with_the_backoff() -> None:
    assert schedule().cycle_ended(ok=True, interval=None, draw=NO_JITTER) == pytest.approx(5.0)


def test_a_wakeup_right_after_a_cycle_waits_out_the_spacing() -> None:
    timing = schedule()
    timing.cycle_started(now=100.0)

    assert timing.spacing_left(now=103.0) == pytest.approx(MIN_CYCLE_SPACING - 3.0)
    assert timing.spacing_left(now=100.0 + MIN_CYCLE_SPACING) == 0.0


def test_the_first_cycle_is_never_held() -> None:
    assert schedule().spacing_left(now=0.0) == 0.0


def test_requests_every_few_milliseconds_give_one_cycle_per_spacing() -> None:
    """The loop's own arithmetic: 59 requests in 3 s once gave 59 cycles; now, one."""
    timing = schedule()
    starts = []
    now = 0.0
    while now < 3.0:
        now += timing.spacing_left(now)
        if now >= 3.0:
            break
        timing.cycle_started(now)
        starts.append(now)
        now += 0.05  # the next request arrives at once

    assert starts == [0.0]


def test_a_suspended_source_looks_again_after_its_interval_unjittered() -> None:
    schedule = SourceSchedule(backoff_max=300, jitter=0.5)

    assert schedule.suspended(interval=600) == 600


def test_a_suspension_between_failures_keeps_the_backoff_growing() -> None:
    schedule = SourceSchedule(backoff_max=300, jitter=0)
    first = schedule.cycle_ended(ok=False, interval=60, draw=0.5)
    schedule.suspended(interval=60)  # suspended, then resumed: still failing

    assert schedule.cycle_ended(ok=False, interval=60, draw=0.5) == 2 * first
