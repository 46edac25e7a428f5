"""A listing's memory is what it keeps, not what its bytes became once parsed: the real client,
over real HTTP on loopback, walks eight pages of 1,000 valid models padded with an unknown
field of empty JSON objects (~30 times their bytes once decoded), reducing each page to the
records a mirror keeps as it goes. It once held every parsed page until planning."""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Final

from egp_operator.egp import EGPClient
from egp_operator.egp.client import ReadLimits
from egp_operator.sync.upstream import keep_for_mirror
from tests.integration.hostile_server import HostileServer, RecordedRequest, Reply, Respond

MIB: Final = 1024 * 1024
PAGES: Final = 8
PER_PAGE: Final = 1000
PAGE_BYTES: Final = 1 * MIB


def padded_page(number: int) -> bytes:
    head = b'{"total":%d,"has_more":%s,"items":[' % (
        PAGES * PER_PAGE,
        b"true" if number < PAGES - 1 else b"false",
    )
    model = b'{"id":"m-%d-%04d","name":"m","status":"ready","model_vendor":"launch","padding":[%s]}'
    room = (PAGE_BYTES - len(head) - 64) // PER_PAGE - len(model % (number, 9999, b""))
    padding = b",".join([b"{}"] * ((room + 1) // 3))
    return head + b",".join(model % (number, i, padding) for i in range(PER_PAGE)) + b"]}"


PAGES_BYTES: Final = [padded_page(n) for n in range(PAGES)]


async def padded_account(request: RecordedRequest, reply: Reply) -> None:
    cursor = request.query.get("starting_after", [""])[0]
    number = int(cursor.split("-")[1]) + 1 if cursor else 0
    await Respond(200, PAGES_BYTES[number])(request, reply)


def peak_of_parsing_one_page() -> int:
    gc.collect()
    tracemalloc.start()
    parsed = json.loads(PAGES_BYTES[0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del parsed
    return peak


async def test_a_listing_of_padded_pages_holds_one_parsed_page_at_a_time() -> None:
    one_page = peak_of_parsing_one_page()
    limits = ReadLimits(max_page_bytes=2 * MIB, max_models=PAGES * PER_PAGE)
    with HostileServer(padded_account) as endpoint:
        async with EGPClient(base_url=endpoint.url, api_key="sk-padded", limits=limits) as egp:
            gc.collect()
            tracemalloc.start()
            listing = await egp.walk_models(keep_for_mirror, page_size=PER_PAGE)
            held, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()

    assert len(listing.models) == PAGES * PER_PAGE
    print(
        f"MEMORY {PAGES} padded pages: peak {peak / MIB:.1f} MiB (one parsed page"
        f" {one_page / MIB:.1f} MiB), held after {held / MIB:.1f} MiB"
    )
    assert peak < 2 * one_page  # held all together, they were 8 times one page
    assert held < one_page / 2  # what is kept: the records, each a few KiB
