"""The EGPSource status says whether the account answers and whether the last cycle completed,
and is rewritten only when it changes or its heartbeat is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from egp_operator.sync.source_status import CycleOutcome, source_status
from egp_operator.vocabulary import Reason

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
HEARTBEAT = timedelta(minutes=5)
OK = CycleOutcome.synced("Mirrored 2 models", {"Ready": 1, "Failed": 1})


def conditions(status: dict[str, object]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}  # type: ignore[attr-defined, index]


def test_a_good_cycle_is_ready_and_synced_with_counts() -> None:
    status = source_status({}, OK, generation=3, now=T0, heartbeat=HEARTBEAT)

    assert status is not None
    assert conditions(status) == {
        "Ready": ("True", "AccountReachable"),
        "Synced": ("True", "Synced"),
        "Reconciling": ("False", "Synced"),
        "Stalled": ("False", "Synced"),
    }
    assert status["models"] == {
        "total": 2,
        "ready": 1,
        "deploying": 0,
        "failed": 1,
        "deploymentTimeout": 0,
        "unknown": 0,
        "missing": 0,
    }
    assert status["observedGeneration"] == 3
    assert status["lastSuccessfulSyncTime"] == status["lastSyncTime"] == "2026-11-28T12:00:00Z"
    assert status["message"] is None


def test_an_unchanged_status_is_not_rewritten_until_the_heartbeat() -> None:
    first = source_status({}, OK, generation=1, now=T0, heartbeat=HEARTBEAT)
    assert first is not None

    soon = source_status(
        first, OK, generation=1, now=T0 + timedelta(minutes=1), heartbeat=HEARTBEAT
    )
    due = source_status(first, OK, generation=1, now=T0 + timedelta(minutes=5), heartbeat=HEARTBEAT)

    assert soon is None
    assert due is not None
    assert due["lastSyncTime"] == "2026-11-28T12:05:00Z"


def test_an_auth_failure_keeps_counts_and_last_success_and_says_why() -> None:
    good = source_status({}, OK, generation=1, now=T0, heartbeat=HEARTBEAT)
    assert good is not None
    failed = CycleOutcome.failed(Reason.AUTHENTICATION_FAILED, "EGP answered 401")

    status = source_status(
        good, failed, generation=1, now=T0 + timedelta(minutes=1), heartbeat=HEARTBEAT
    )

    assert status is not None
    assert conditions(status) == {
        "Ready": ("False", "AuthenticationFailed"),
        "Synced": ("False", "AuthenticationFailed"),
        "Reconciling": ("False", "AuthenticationFailed"),
        "Stalled": ("True", "AuthenticationFailed"),  # a human must fix the key: kstatus Failed
    }
    assert status["models"] == good["models"]
    assert status["lastSuccessfulSyncTime"] == "2026-11-28T12:00:00Z"
    assert status["message"] == "EGP answered 401"


def test_an_incomplete_listing_means_the_account_answered_but_nothing_synced() -> None:
    outcome = CycleOutcome.failed(
        Reason.INCOMPLETE_LISTING, "failed on page 3", account_answered=True
    )

    status = source_status({}, outcome, generation=1, now=T0, heartbeat=HEARTBEAT)

    assert status is not None
    assert conditions(status) == {
        "Ready": ("True", "AccountReachable"),
        "Synced": ("False", "IncompleteListing"),
        "Reconciling": ("True", "IncompleteListing"),  # retried: kstatus InProgress
        "Stalled": ("False", "IncompleteListing"),
    }


def test_the_handled_sync_request_is_echoed_and_kept_until_the_next() -> None:
    first = source_status(
        {}, OK, generation=1, now=T0, heartbeat=HEARTBEAT, handled_request="req-1"
    )
    assert first is not None
    assert first["lastHandledSyncRequest"] == "req-1"

    later = source_status(first, OK, generation=2, now=T0, heartbeat=HEARTBEAT)

    assert later is not None
    assert later["lastHandledSyncRequest"] == "req-1"


@pytest.mark.parametrize(
    ("reason", "progress"),
    [
        ("SecretNotFound", "Stalled"),
        ("InvalidSpec", "Stalled"),
        ("EndpointRefused", "Stalled"),
        ("PermissionDenied", "Stalled"),
        ("TransportError", "Reconciling"),
        ("RateLimited", "Reconciling"),
        ("WriteFailed", "Reconciling"),
        ("InternalError", "Reconciling"),
        ("Suspended", None),
    ],
)
def test_a_failure_that_needs_a_human_is_stalled_and_a_retried_one_reconciling(
    reason: str, progress: str | None
) -> None:
    outcome = CycleOutcome.failed(Reason(reason), "why")

    status = source_status({}, outcome, generation=1, now=T0, heartbeat=HEARTBEAT)

    assert status is not None
    held = {c["type"] for c in status["conditions"] if c["status"] == "True"}
    assert held & {"Reconciling", "Stalled"} == ({progress} if progress else set())
