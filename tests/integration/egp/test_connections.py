"""Sources reaching the same endpoint share connections across their cycles."""

from __future__ import annotations

from egp_operator.egp import EGPClient
from egp_operator.egp.client import tls_context
from egp_operator.egp.connections import SharedConnections
from egp_operator.egp.endpoint import EndpointPolicy
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from tests.integration.conftest import ACCOUNT, API_KEY


async def test_cycles_of_different_sources_reuse_one_connection(
    egp_server: FakeEGPServer,
) -> None:
    egp_server.add_models(generate_models(3))
    egp_server.add_key("sk-other-team-91c2", ACCOUNT)
    connections = SharedConnections(EndpointPolicy())
    context = tls_context(True)
    try:
        for key in (API_KEY, "sk-other-team-91c2", API_KEY):  # three cycles, two sources
            async with EGPClient(
                base_url=egp_server.url,
                api_key=key,
                account_id=ACCOUNT,
                transport=connections.transport(context),
            ) as client:
                listing = await client.list_models()
                assert len(listing.models) == 3

        assert connections.connections_opened() == 1  # closing a client left the pool open
    finally:
        await connections.aclose()
