"""Parsing of `/v5/models` records, without a server."""

from __future__ import annotations

import pytest

from egp_operator.egp import EGPClient, InferenceModel, InferenceModelList


def test_a_record_with_only_an_id_parses() -> None:
    model = InferenceModel.model_validate({"id": "m-1"})

    assert model.status is None
    assert model.vendor_configuration is None


def test_missing_and_null_optional_fields_read_the_same() -> None:
    omitted = InferenceModel.model_validate({"id": "m-1", "name": "a"})
    nulled = InferenceModel.model_validate(
        {"id": "m-1", "name": "a", "status_reason": None, "model_metadata": None}
    )

    assert omitted == nulled


def test_a_numeric_name_is_read_as_text_rather_than_failing_the_page() -> None:
    assert InferenceModel.model_validate({"id": "m-1", "name": 42}).name == "42"


def test_a_page_without_items_is_rejected() -> None:
    with pytest.raises(ValueError, match="items"):
        InferenceModelList.model_validate({"object": "list", "total": 0})


def test_an_empty_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        EGPClient(api_key="")


def test_the_client_repr_names_the_account_not_the_key() -> None:
    client = EGPClient(api_key="sk-very-secret", account_id="acct-1")

    assert "sk-very-secret" not in repr(client)
    assert "acct-1" in repr(client)
