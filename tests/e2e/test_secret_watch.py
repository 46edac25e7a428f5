"""The credentials' Secret, watched by name: a settled cycle sends the API server nothing (its
audit log says so), and a rotated or deleted Secret takes effect within seconds, not at the
source's next cycle an hour later."""

from __future__ import annotations

import time
from typing import Any

import pytest

from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from tests.e2e.harness import (
    EGP_ACCOUNT,
    EGP_KEY,
    Mirror,
    OperatorProcess,
    scrape,
    start_source,
    sync_now,
    wait_mirrored,
)
from tests.e2e.polling import eventually

pytestmark = pytest.mark.usefixtures("operator")

ROTATED_KEY = "sk-e2e-rotated-by-watch-51c7"
#: The longest a Secret's change may take to reach a source that synced just before: the
#: spacing between two cycles of one source (10 s), and the cycle itself.
SECONDS_TO_TAKE_EFFECT = 25.0


def secrets_watched(operator: OperatorProcess) -> float:
    return scrape(operator).get(
        ("egp_operator_secrets_in_use", frozenset({("state", "watched")})), 0.0
    )


def the_operators_requests(
    control_plane: LocalControlPlane, namespace: str, after_line: int
) -> list[dict[str, Any]]:
    """What the operator's own client (not kopf's) asked of the API server in `namespace`."""
    return [
        event
        for event in control_plane.audit_events(after_line=after_line)
        if event.get("userAgent", "").startswith("egp-operator")
        and (event.get("objectRef") or {}).get("namespace") == namespace
    ]


def egp_requests(egp: FakeEGPServer) -> int:
    return sum(count for key, count in egp.request_counts().items() if " " not in key)


def test_a_settled_cycle_sends_no_request_to_the_api_server(
    control_plane: LocalControlPlane, operator: OperatorProcess, egp: FakeEGPServer, mirror: Mirror
) -> None:
    egp.add_models(generate_models(3, seed=61))
    start_source(mirror, egp, refreshInterval="10s")
    wait_mirrored(mirror, 3)
    sync_now(mirror)  # the last write: the status echoes the request
    eventually(lambda: secrets_watched(operator) >= 1, timeout=30, what="the Secret's watch")
    mark = control_plane.audit_lines()
    egp.reset_request_log()

    eventually(lambda: egp_requests(egp) >= 3, timeout=60, what="three more cycles")
    requests = the_operators_requests(control_plane, mirror.namespace, mark)

    assert [(r["verb"], r["requestURI"]) for r in requests if r["verb"] != "watch"] == []
    # The audit log does hold the operator's requests when there are some: its watch.
    assert any(
        r["verb"] == "watch" and r["objectRef"]["resource"] == "secrets"
        for r in the_operators_requests(control_plane, mirror.namespace, 0)
    )


def test_a_rotated_secret_is_used_within_seconds_not_at_the_next_cycle(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    egp.add_models(generate_models(2, seed=62))
    egp.add_key(ROTATED_KEY, EGP_ACCOUNT)
    start_source(mirror, egp, refreshInterval="1h")
    wait_mirrored(mirror, 2)
    assert egp.api_keys_seen() == {EGP_KEY}

    rotated = time.monotonic()
    mirror.core.patch_namespaced_secret(
        "src-credentials", mirror.namespace, {"stringData": {"apiKey": ROTATED_KEY}}
    )
    eventually(
        lambda: ROTATED_KEY in egp.api_keys_seen(),
        timeout=SECONDS_TO_TAKE_EFFECT,
        what="a cycle with the rotated key",
    )
    print(f"rotated key used {time.monotonic() - rotated:.1f} s after the Secret changed")


def test_a_deleted_secret_is_reported_within_seconds_and_loses_nothing(
    egp: FakeEGPServer, mirror: Mirror
) -> None:
    upstream = generate_models(2, seed=63)
    egp.add_models(upstream)
    start_source(mirror, egp, refreshInterval="1h", deletionPolicy="Delete")
    wait_mirrored(mirror, 2)

    mirror.core.delete_namespaced_secret("src-credentials", mirror.namespace)
    ready = eventually(
        lambda: (
            (c := mirror.source_condition("src", "Ready")).get("reason") == "SecretNotFound" and c
        ),
        timeout=SECONDS_TO_TAKE_EFFECT,
        what="Ready False with SecretNotFound",
    )

    assert ready["status"] == "False"
    assert {m["spec"]["modelID"] for m in mirror.models()} == {m["id"] for m in upstream}
    assert all(m["status"]["phase"] != "Missing" for m in mirror.models())
