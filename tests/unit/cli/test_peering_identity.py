"""The operator names itself in the peering objects without asking the password database: the
image's numeric user has no entry there, and kopf's own default then stopped the operator."""

from __future__ import annotations

import getpass

import pytest

from egp_operator.cli import peering_identity


def test_the_pods_name_is_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_ID", "egp-operator-5d9c7b-x2x7q")

    assert peering_identity() == "egp-operator-5d9c7b-x2x7q"


def test_a_user_without_a_name_still_gets_an_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_user() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    monkeypatch.delenv("POD_ID", raising=False)
    monkeypatch.setattr(getpass, "getuser", no_such_user)

    first, second = peering_identity(), peering_identity()

    assert first
    assert first != second  # two replicas on one host never share one
