"""The client walks `/v5/models` over real HTTP and returns a listing only when it is complete."""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx
import pytest

from egp_operator.egp import (
    EGPClient,
    IncompleteListingError,
    NotFoundError,
    PermissionDeniedError,
    ResponseTooLargeError,
    ServerError,
    TooManyModelsError,
)
from egp_operator.egp.client import ReadLimits
from egp_testbench.fake_egp import FakeEGPServer, Fault, generate_models
from tests.integration.conftest import ACCOUNT, API_KEY

MakeClient = Callable[..., EGPClient]


def pages_served(server: FakeEGPServer) -> int:
    """The list requests the server answered: one per page of a walk without retries."""
    return sum(request["endpoint"] == "list" for request in server.recent_requests())


@pytest.mark.parametrize(
    ("count", "page_size"),
    [
        (0, 100),
        (1, 100),
        (100, 100),  # exactly one full page
        (101, 100),  # one more than a page
        (2500, 1000),
        (2500, 500),
        (2500, 37),
        (7, 1),
    ],
)
async def test_walk_returns_every_model_exactly_once(
    egp_server: FakeEGPServer, make_client: MakeClient, count: int, page_size: int
) -> None:
    models = generate_models(count, seed=count)
    egp_server.add_models(models)

    listing = await make_client().list_models(page_size=page_size)

    assert sorted(m.id for m in listing.models) == sorted(m["id"] for m in models)
    assert pages_served(egp_server) == max(1, math.ceil(count / page_size))


async def test_vendor_filter_and_limit_are_resent_on_every_page(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    models = generate_models(300, seed=3)
    egp_server.add_models(models)
    launch_ids = {m["id"] for m in models if m["model_vendor"] == "launch"}
    egp_server.reset_request_log()

    listing = await make_client().list_models(page_size=25, model_vendor="launch")

    assert {m.id for m in listing.models} == launch_ids
    queries = [r["query"] for r in egp_server.recent_requests()]
    assert len(queries) == math.ceil(len(launch_ids) / 25)
    assert all(q["model_vendor"] == "launch" and q["limit"] == "25" for q in queries)
    assert "starting_after" not in queries[0]
    assert all("starting_after" in q for q in queries[1:])


async def test_name_filter_selects_the_named_model(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    models = generate_models(20, seed=4)
    egp_server.add_models(models)

    listing = await make_client().list_models(name=models[5]["name"])

    assert [m.id for m in listing.models] == [models[5]["id"]]


async def test_selected_account_scopes_the_listing(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(3, seed=1))
    egp_server.add_key(API_KEY, "acct-beta")
    beta_models = generate_models(2, seed=2)
    egp_server.add_models(beta_models, account_id="acct-beta")

    listing = await make_client(account_id="acct-beta").list_models()

    assert {m.id for m in listing.models} == {m["id"] for m in beta_models}


async def test_an_account_the_key_cannot_read_is_permission_denied(
    make_client: MakeClient,
) -> None:
    with pytest.raises(PermissionDeniedError, match="acct-other"):
        await make_client(account_id="acct-other").list_models()


async def test_base_url_path_prefix_is_kept() -> None:
    with FakeEGPServer(
        api_key=API_KEY, account_id=ACCOUNT, model_count=3, path_prefix="/public"
    ) as server:
        assert server.url.endswith("/public")
        async with EGPClient(base_url=server.url, api_key=API_KEY, account_id=ACCOUNT) as client:
            listing = await client.list_models()
    assert len(listing.models) == 3


async def test_failure_on_page_k_gives_an_incomplete_listing_not_a_short_one(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(500, seed=5))
    egp_server.inject(Fault(page=3, status=500))

    with pytest.raises(IncompleteListingError) as raised:
        await make_client().list_models(page_size=100)

    assert raised.value.pages == 2
    assert raised.value.models_seen == 200
    assert isinstance(raised.value.cause, ServerError)


async def test_a_repeated_id_stops_the_walk_as_an_error(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(50, seed=6))
    egp_server.inject(Fault(page=2, mutation="repeat_previous_id"))

    with pytest.raises(IncompleteListingError, match="listed twice"):
        await make_client().list_models(page_size=10)


async def test_an_empty_page_that_claims_more_stops_the_walk_as_an_error(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(50, seed=7))
    egp_server.inject(Fault(page=3, mutation="empty_page_has_more"))

    with pytest.raises(IncompleteListingError, match="has_more=true"):
        await make_client().list_models(page_size=10)


async def test_a_cursor_that_restarts_the_listing_is_caught(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(50, seed=8))
    egp_server.configure(unknown_cursor="restart")

    class ForgetfulCursor(httpx.AsyncHTTPTransport):
        """Sends a cursor the server does not know, as after the cursor model was deleted."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if "starting_after" in request.url.params:
                request.url = request.url.copy_set_param("starting_after", "gone")
            return await super().handle_async_request(request)

    with pytest.raises(IncompleteListingError, match="listed twice"):
        await make_client(transport=ForgetfulCursor()).list_models(page_size=10)


async def test_a_cursor_model_deleted_mid_walk_gives_an_incomplete_listing(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    models = generate_models(30, seed=9)
    egp_server.add_models(models)

    class DeleteCursorAfterFirstPage(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            cursor = request.url.params.get("starting_after")
            if cursor is not None:
                egp_server.delete_model(cursor)
            return await super().handle_async_request(request)

    with pytest.raises(IncompleteListingError) as raised:
        await make_client(transport=DeleteCursorAfterFirstPage()).list_models(page_size=10)

    assert isinstance(raised.value.cause, NotFoundError)


async def test_a_short_listing_is_caught_by_total(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(30, seed=10))
    egp_server.configure(unknown_cursor="empty")

    class ForgetfulCursor(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if "starting_after" in request.url.params:
                request.url = request.url.copy_set_param("starting_after", "gone")
            return await super().handle_async_request(request)

    with pytest.raises(IncompleteListingError, match="reports 30 models but listed 10"):
        await make_client(transport=ForgetfulCursor()).list_models(page_size=10)


async def test_absent_has_more_does_not_end_the_walk_early(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(25, seed=11))
    egp_server.inject(Fault(mutation="drop_has_more"))

    listing = await make_client().list_models(page_size=10)

    assert len(listing.models) == 25
    assert pages_served(egp_server) == 4  # three full-or-partial pages, then an empty one


async def test_a_server_that_trickles_pages_is_stopped_by_the_page_cap(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(12, seed=12))
    egp_server.configure(page_size_override=1)

    with pytest.raises(IncompleteListingError, match="pages"):
        await make_client(limits=ReadLimits(max_models=15)).list_models(page_size=10)


async def test_a_listing_over_the_models_cap_is_refused_as_soon_as_total_says_so(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(40, seed=12))
    egp_server.reset_request_log()

    with pytest.raises(TooManyModelsError, match="40 models, more than the 15"):
        await make_client(limits=ReadLimits(max_models=15)).list_models(page_size=10)

    assert egp_server.request_counts()["list"] == 1


@pytest.mark.parametrize("page_size", [0, 1001, -5])
async def test_page_size_outside_1_to_1000_is_refused_before_any_request(
    egp_server: FakeEGPServer, make_client: MakeClient, page_size: int
) -> None:
    egp_server.reset_request_log()

    with pytest.raises(ValueError, match="between 1 and 1000"):
        await make_client().list_models(page_size=page_size)

    assert egp_server.request_counts() == {}


async def test_a_listing_whose_pages_add_up_past_the_listing_cap_is_refused(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(200, seed=13))
    limits = ReadLimits(max_page_bytes=1024 * 1024, max_listing_bytes=64 * 1024)

    with pytest.raises(ResponseTooLargeError, match="pages add up to more than 65536 bytes"):
        await make_client(limits=limits).list_models(page_size=20)
