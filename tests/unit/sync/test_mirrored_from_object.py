"""The index keeps one copy of what every EGPModel repeats (keys, condition types, reasons,
timestamps), so its memory grows with what differs between models, not with what they share."""

from __future__ import annotations

import json
from typing import Any

from egp_operator.sync.cycle import mirrored_from_object, shared_strings


def egpmodel(name: str, message: str) -> dict[str, Any]:
    """An EGPModel as a watch event decodes it: every string its own object."""
    body = {
        "metadata": {"name": name, "labels": {"egp-operator.io/phase": "Ready"}},
        "spec": {"modelID": name},
        "status": {
            "phase": "Ready",
            "statusReason": message,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
        },
    }
    decoded: dict[str, Any] = json.loads(json.dumps(body))
    return decoded


def test_two_models_share_their_keys_and_short_strings_and_keep_their_values() -> None:
    long_message = "x" * 500
    first = mirrored_from_object(egpmodel("a", long_message))
    second = mirrored_from_object(egpmodel("b", long_message))

    assert first.status == egpmodel("a", long_message)["status"]
    [key_a], [key_b] = first.labels, second.labels
    assert key_a is key_b
    ready_a, ready_b = first.status["conditions"][0], second.status["conditions"][0]
    assert ready_a["reason"] is ready_b["reason"]
    assert next(iter(ready_a)) is next(iter(ready_b))
    # Long free text stays each model's own: sharing it would save little and hold much.
    assert first.status["statusReason"] is not second.status["statusReason"]


def test_a_document_too_deep_to_walk_is_kept_as_it_is() -> None:
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]

    assert shared_strings(deep) is deep
