"""Fields and enum values the client does not know are kept; missing and null read alike."""

from __future__ import annotations

from collections.abc import Callable

from egp_operator.egp import EGPClient
from egp_testbench.fake_egp import FakeEGPServer, generate_models

MakeClient = Callable[..., EGPClient]


async def test_unknown_enum_values_and_extra_fields_are_preserved(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    [model] = generate_models(1, seed=31)
    model |= {"status": "paused", "model_vendor": "mistral_cloud", "region": "eu-west-1"}
    egp_server.add_models([model])
    egp_server.configure(extra_fields=True)

    [listed] = (await make_client().list_models()).models

    assert listed.status == "paused"
    assert listed.model_vendor == "mistral_cloud"
    assert listed.extra_fields["region"] == "eu-west-1"
    assert "x_added_later" in listed.extra_fields


async def test_omitted_optional_keys_read_as_null(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    [model] = generate_models(1, seed=32)
    model |= {"vendor_configuration": None, "status_reason": None, "model_availability": None}
    egp_server.add_models([model])
    egp_server.configure(omit_nulls=True)

    [listed] = (await make_client().list_models()).models

    assert listed.vendor_configuration is None
    assert listed.status_reason is None
    assert listed.model_availability is None
    assert listed.name == model["name"]
