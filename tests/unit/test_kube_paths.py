"""Request paths are built from names that tenants write: no name can climb out of its
segment."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from egp_operator.kube import core_path, custom_path


@pytest.mark.parametrize(
    "name",
    [
        "../../team-b/secrets/egp-credentials",
        "..%2F..%2Fteam-b%2Fsecrets%2Fegp-credentials",
        "a/../../b",
        "x?namespace=team-b",
        "x#y",
        "x y",
    ],
)
def test_a_name_stays_one_segment_of_its_own_namespace(name: str) -> None:
    path = core_path("team-a", "secrets", name)

    prefix, _, last = path.rpartition("/")
    assert prefix == "/api/v1/namespaces/team-a/secrets"
    assert not set("/?# ") & set(last)
    assert unquote(last) == name


@pytest.mark.parametrize("name", [".", ".."])
def test_a_dot_segment_is_refused_outright(name: str) -> None:
    with pytest.raises(ValueError, match="path segment"):
        core_path("team-a", "secrets", name)
    with pytest.raises(ValueError, match="path segment"):
        custom_path("egp-operator.io", "v1alpha1", name, "egpsources")


def test_an_empty_namespace_is_refused_outright() -> None:
    with pytest.raises(ValueError, match="path segment"):
        core_path("", "secrets", "egp-credentials")
