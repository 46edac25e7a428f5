"""`python -m bench.egp_request`: the CPU of one source cycle's EGP request, beside its floor.

    .venv/bin/python -m bench.egp_request --requests 3000 --rounds 2

A local EGP server (`fake-egp`, its own process) serves one account of one model. In one
process, in turn, each round times `--requests` listings the way a source's cycle makes them
(an `EGPClient` per cycle over the process's shared connections, retries, parsing into models)
and as many plain aiohttp GETs of the same page, read and decoded (the floor of any client in
this process). It reports CPU ms per request and the ratio. To measure another version of the
operator, put its source first on the path: `PYTHONPATH=/path/to/copy/operator`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.procs import one_model_egp
from egp_operator.egp.client import EGPClient, RetryPolicy, tls_context
from egp_operator.egp.connections import SharedConnections
from egp_operator.egp.endpoint import EndpointPolicy

API_KEY = "sk-bench-egp-request"
ACCOUNT = "acct-bench"


async def _operator_requests(url: str, requests: int) -> float:
    connections = SharedConnections(EndpointPolicy())
    started = time.process_time()
    for _ in range(requests):
        async with EGPClient(
            api_key=API_KEY,
            base_url=url,
            account_id=ACCOUNT,
            retry=RetryPolicy(max_retries=3),
            transport=connections.transport(tls_context(True)),
        ) as client:
            listing = await client.list_models(page_size=100)
            assert len(listing.models) == 1
    spent = time.process_time() - started
    await connections.aclose()
    return spent


async def _plain_requests(url: str, requests: int) -> float:
    headers = {"x-api-key": API_KEY, "x-selected-account-id": ACCOUNT}
    async with aiohttp.ClientSession() as session:
        started = time.process_time()
        for _ in range(requests):
            async with session.get(f"{url}/v5/models", params={"limit": 100}, headers=headers) as r:
                page = json.loads(await r.read())
                assert len(page["items"]) == 1
        return time.process_time() - started


async def _measure(url: str, requests: int, rounds: int) -> None:
    runs: dict[str, Callable[[str, int], Awaitable[float]]] = {
        "operator": _operator_requests,
        "plain aiohttp": _plain_requests,
    }
    for round_ in range(1, rounds + 1):
        spent = {name: await run(url, requests) for name, run in runs.items()}
        per_request = {name: 1000 * seconds / requests for name, seconds in spent.items()}
        ratio = per_request["operator"] / per_request["plain aiohttp"]
        print(
            f"round {round_}: operator {per_request['operator']:.3f} ms/request,"
            f" plain aiohttp {per_request['plain aiohttp']:.3f} ms/request ({ratio:.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.egp_request", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with one_model_egp(API_KEY, ACCOUNT) as url:
        asyncio.run(_measure(url, args.requests, args.rounds))


if __name__ == "__main__":
    main()
