"""HTTP failures surface as typed errors with their detail; transient ones are retried with the
server's requested delay or a capped, jittered backoff."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from egp_operator.egp import (
    AuthenticationError,
    EGPClient,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
)
from egp_operator.egp.client import RetryPolicy
from egp_operator.egp.rate_limits import RateLimits
from egp_testbench.fake_egp import FakeEGPServer, Fault, generate_models
from tests.integration.conftest import ACCOUNT, API_KEY, RecordedSleep, client_maker

MakeClient = Callable[..., EGPClient]


async def test_a_wrong_key_is_an_authentication_error_with_the_servers_detail(
    make_client: MakeClient,
) -> None:
    with pytest.raises(AuthenticationError, match=r"401.*Invalid API key"):
        await make_client(api_key="sk-wrong").list_models()


async def test_a_rejected_query_is_a_validation_error_carrying_the_422_detail(
    make_client: MakeClient,
) -> None:
    with pytest.raises(ValidationError) as raised:
        await make_client().list_models(model_vendor="not-a-vendor")

    [entry] = raised.value.detail
    assert entry["loc"] == ["query", "model_vendor"]
    assert entry["type"] == "enum"
    assert entry["input"] == "not-a-vendor"


async def test_429_is_retried_after_the_seconds_in_retry_after(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.add_models(generate_models(5))
    egp_server.inject(Fault(status=429, headers={"Retry-After": "7"}, times=2))

    listing = await make_client().list_models()

    assert len(listing.models) == 5
    assert sleeps.delays == [7.0, 7.0]
    assert listing.requests == 3


async def test_retry_after_ms_takes_precedence_and_is_read_in_milliseconds(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.inject(
        Fault(status=503, headers={"retry-after-ms": "250", "Retry-After": "9"}, times=1)
    )

    await make_client().list_models()

    assert sleeps.delays == [0.25]


async def test_retry_after_as_an_http_date_is_honoured(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    egp_server.inject(Fault(status=429, headers={"Retry-After": when}, times=1))

    await make_client().list_models()

    [delay] = sleeps.delays
    assert 25 <= delay <= 31


async def test_without_retry_after_the_backoff_grows_and_is_capped(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.inject(Fault(status=502, times=5))
    policy = RetryPolicy(max_retries=5, initial_delay=0.5, max_delay=2.0)

    await make_client(retry=policy).list_models()

    ceilings = [0.5, 1.0, 2.0, 2.0, 2.0]
    assert len(sleeps.delays) == 5
    for delay, ceiling in zip(sleeps.delays, ceilings, strict=True):
        assert 0.75 * ceiling <= delay <= ceiling


async def test_a_retry_after_beyond_a_minute_falls_back_to_backoff(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.inject(Fault(status=429, headers={"Retry-After": "3600"}, times=1))

    await make_client().list_models()

    assert sleeps.delays[0] <= 0.5


async def test_when_retries_run_out_the_last_error_is_raised(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.inject(Fault(status=503))
    egp_server.reset_request_log()

    with pytest.raises(ServerError, match="503"):
        await make_client(retry=RetryPolicy(max_retries=2)).list_models()

    assert egp_server.request_counts()["list 503"] == 3
    assert len(sleeps.delays) == 2


async def test_rate_limiting_that_never_ends_is_a_rate_limited_error(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.inject(Fault(status=429, headers={"Retry-After": "1"}))

    with pytest.raises(RateLimitedError):
        await make_client(retry=RetryPolicy(max_retries=1)).list_models()


async def test_x_should_retry_false_stops_retries(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.inject(Fault(status=503, headers={"x-should-retry": "false"}))

    with pytest.raises(ServerError):
        await make_client().list_models()

    assert sleeps.delays == []


async def test_authentication_errors_are_not_retried(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.reset_request_log()

    with pytest.raises(AuthenticationError):
        await make_client(api_key="sk-revoked").list_models()

    assert egp_server.request_counts()["list"] == 1
    assert sleeps.delays == []


async def test_a_slow_server_times_out_and_a_retry_recovers(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.add_models(generate_models(3))
    egp_server.inject(Fault(delay=2.0, times=1))

    listing = await make_client(timeout=0.3).list_models()

    assert len(listing.models) == 3
    assert len(sleeps.delays) == 1


async def test_a_server_that_stays_slow_is_a_transport_error(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.inject(Fault(delay=2.0))

    with pytest.raises(TransportError, match="timed out"):
        await make_client(timeout=0.3, retry=RetryPolicy(max_retries=1)).list_models()


async def test_a_refused_connection_is_a_transport_error(make_client: MakeClient) -> None:
    with pytest.raises(TransportError, match="could not reach EGP"):
        await make_client(
            base_url="http://127.0.0.1:9", retry=RetryPolicy(max_retries=1)
        ).list_models()


async def test_a_body_that_is_not_json_is_a_malformed_response(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.inject(Fault(status=200, body='{"object": "list", "items": [', times=1))

    with pytest.raises(MalformedResponseError, match="not JSON"):
        await make_client().list_models()


async def test_a_body_of_the_wrong_shape_is_a_malformed_response(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.add_models(generate_models(3))
    egp_server.inject(Fault(mutation="wrong_shape"))

    with pytest.raises(MalformedResponseError, match=r"wrong shape.*items"):
        await make_client().list_models()


async def test_a_404_is_a_not_found_error_with_the_servers_detail(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.inject(Fault(status=404, body=json.dumps({"detail": "No such models endpoint"})))

    with pytest.raises(NotFoundError, match=r"404.*No such models endpoint"):
        await make_client().list_models()


async def test_a_listed_record_keeps_its_fields(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    [model] = generate_models(1, seed=21)
    egp_server.add_models([model])

    [fetched] = (await make_client().list_models()).models

    assert fetched.name == model["name"]
    assert fetched.vendor_configuration == model["vendor_configuration"]


async def test_the_api_key_never_reaches_logs_errors_or_reprs(
    egp_server: FakeEGPServer,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hostile server echoes the key back in its error body; nothing passes it on."""
    caplog.set_level(logging.DEBUG)
    echo = json.dumps({"detail": f"bad key {API_KEY}"})
    egp_server.inject(Fault(status=503, body=echo, times=2), Fault(status=400, body=echo))
    client = make_client()
    texts: list[str] = [repr(client), str(client)]

    with pytest.raises(Exception) as raised:  # noqa: PT011 - any error; its text is checked
        await client.list_models()
    texts += [str(raised.value), repr(raised.value), repr(raised.value.__cause__)]
    egp_server.clear_faults()
    egp_server.inject(Fault(status=200, body=f"not json {API_KEY}"))
    with pytest.raises(MalformedResponseError) as malformed:
        await client.list_models()
    texts.append(str(malformed.value))

    assert "bad key ***" in texts[2]
    assert all(API_KEY not in text for text in texts)
    assert API_KEY not in caplog.text
    assert "retry" in caplog.text  # the retries were logged, without the key


async def test_a_connection_dropped_mid_body_is_retried(
    egp_server: FakeEGPServer, make_client: MakeClient, sleeps: RecordedSleep
) -> None:
    egp_server.add_models(generate_models(3))
    egp_server.inject(Fault(disconnect=True, times=1))

    listing = await make_client().list_models()

    assert len(listing.models) == 3
    assert len(sleeps.delays) == 1


async def test_a_connection_that_keeps_dropping_is_a_transport_error(
    egp_server: FakeEGPServer, make_client: MakeClient
) -> None:
    egp_server.inject(Fault(disconnect=True))

    with pytest.raises(TransportError, match="could not reach EGP"):
        await make_client(retry=RetryPolicy(max_retries=1)).list_models()


async def test_a_429_holds_every_client_of_the_same_key_and_account(
    egp_server: FakeEGPServer, sleeps: RecordedSleep
) -> None:
    """Sources sharing a key and account share EGP's limit: the second client waits out the
    delay EGP gave the first, instead of meeting the 429 itself."""
    egp_server.add_models(generate_models(3))
    egp_server.add_key("sk-other-team-91c2", ACCOUNT)
    egp_server.inject(Fault(status=429, headers={"Retry-After": "5"}, times=1))
    shared = RateLimits(clock=sleeps.clock)
    async with client_maker(
        base_url=egp_server.url, account_id=ACCOUNT, sleep=sleeps, rate_limits=shared
    ) as make:
        with pytest.raises(RateLimitedError):
            await make(api_key=API_KEY, retry=RetryPolicy(max_retries=0)).list_models()
        same = make(api_key=API_KEY)
        other_key = make(api_key="sk-other-team-91c2")

        await other_key.list_models()
        assert sleeps.delays == []  # another key's limit is its own
        await same.list_models()

    assert sleeps.delays == [5.0]
    assert same.status_counts == {"200": 1}  # it never met the 429
