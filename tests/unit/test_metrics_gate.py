"""Who may read /metrics, and what deciding costs the API server: `MetricsGate`'s decisions
over a scripted reviewer and a clock the test moves. (The real TokenReview and
SubjectAccessReview are asked in tests/e2e/test_install.py and test_helm_install.py.)"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from egp_operator.metrics_server import (
    ALLOWED_TTL,
    KNOWN_FOR,
    MAX_KNOWN,
    MAX_REFUSED,
    REFUSED_TTL,
    REVIEW_BURST,
    REVIEW_CONCURRENCY,
    REVIEW_RATE,
    Decision,
    MetricsGate,
    ReviewError,
)

READER, STRANGER, NOBODY = "tok-reader", "tok-stranger", "tok-nobody"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reviewer:
    """The API server as the gate sees it: READER may get /metrics, STRANGER is a valid token
    without the role, anything else is not a token; `down` makes every review fail."""

    valid = frozenset({READER, STRANGER})

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.allowed = {READER}
        self.down = False
        self.gate: asyncio.Event | None = None
        self.running = self.most_running = 0

    async def review(self, token: str) -> Decision:
        self.asked.append(token)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.down:
                raise ReviewError("connection refused")
            if token in self.allowed:
                return Decision(200, "allowed")
            if token in self.valid:
                return Decision(403, "system:serviceaccount:team-a:default may not get /metrics")
            return Decision(401, "the bearer token is not valid")
        finally:
            self.running -= 1

    async def aclose(self) -> None:
        """Nothing held."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reviewer() -> Reviewer:
    return Reviewer()


@pytest.fixture
def gate(reviewer: Reviewer, clock: Clock) -> MetricsGate:
    return MetricsGate(reviewer, clock=clock)


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer   ",
        f"Basic {READER}",
        READER,
        "Bearer " + "x" * 9000,
        "Bearer é",
    ],
)
async def test_a_request_without_a_well_formed_bearer_token_is_401_without_a_review(
    gate: MetricsGate, reviewer: Reviewer, header: str | None
) -> None:
    decision = await gate.decide(header)

    assert decision.status == 401
    assert reviewer.asked == []


async def test_the_reviewers_answer_is_the_decision(gate: MetricsGate) -> None:
    assert (await gate.decide(bearer(READER))).status == 200
    assert (await gate.decide(bearer(STRANGER))).status == 403
    assert (await gate.decide(bearer(NOBODY))).status == 401
    assert (await gate.decide(f"bearer  {READER} ")).status == 200  # the scheme in any case


async def test_an_allowed_token_is_reviewed_once_a_minute(
    gate: MetricsGate, reviewer: Reviewer, clock: Clock
) -> None:
    for _ in range(5):
        assert (await gate.decide(bearer(READER))).allowed
        clock.now += ALLOWED_TTL / 10
    assert reviewer.asked == [READER]

    clock.now += ALLOWED_TTL
    assert (await gate.decide(bearer(READER))).allowed
    assert reviewer.asked == [READER, READER]


async def test_a_refusal_is_kept_for_a_while_and_then_asked_again(
    gate: MetricsGate, reviewer: Reviewer, clock: Clock
) -> None:
    for _ in range(20):
        assert (await gate.decide(bearer(STRANGER))).status == 403
        assert (await gate.decide(bearer(NOBODY))).status == 401
    assert reviewer.asked == [STRANGER, NOBODY]

    reviewer.allowed.add(STRANGER)  # a ClusterRoleBinding made since
    clock.now += REFUSED_TTL
    assert (await gate.decide(bearer(STRANGER))).allowed


async def test_a_revoked_reader_is_refused_once_its_decision_expires(
    gate: MetricsGate, reviewer: Reviewer, clock: Clock
) -> None:
    assert (await gate.decide(bearer(READER))).allowed
    reviewer.allowed.clear()

    assert (await gate.decide(bearer(READER))).allowed  # still within ALLOWED_TTL
    clock.now += ALLOWED_TTL
    assert (await gate.decide(bearer(READER))).status == 403
    assert (await gate.decide(bearer(READER))).status == 403
    assert reviewer.asked == [READER, READER]


async def test_requests_with_one_token_at_once_share_one_review(
    gate: MetricsGate, reviewer: Reviewer
) -> None:
    reviewer.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(gate.decide(bearer(READER))) for _ in range(50)]
    await asyncio.sleep(0)
    reviewer.gate.set()

    assert {decision.status for decision in await asyncio.gather(*waiting)} == {200}
    assert reviewer.asked == [READER]


async def test_a_flood_of_unknown_tokens_makes_a_bounded_number_of_reviews(
    gate: MetricsGate, reviewer: Reviewer, clock: Clock
) -> None:
    flood = [bearer(f"random-{n}") for n in range(1000)]

    statuses = [decision.status for decision in await asyncio.gather(*map(gate.decide, flood))]

    assert len(reviewer.asked) == REVIEW_BURST
    assert statuses.count(401) == REVIEW_BURST
    assert statuses.count(429) == len(flood) - REVIEW_BURST
    # Refilled at REVIEW_RATE a second, and never beyond the burst.
    clock.now += 5
    await asyncio.gather(*(gate.decide(bearer(f"later-{n}")) for n in range(100)))
    assert len(reviewer.asked) == REVIEW_BURST + int(5 * REVIEW_RATE)
    clock.now += 3600
    await asyncio.gather(*(gate.decide(bearer(f"hour-{n}")) for n in range(100)))
    assert len(reviewer.asked) == 2 * REVIEW_BURST + int(5 * REVIEW_RATE)


async def test_a_flood_does_not_lock_out_a_reader_the_api_server_allowed_before(
    gate: MetricsGate, reviewer: Reviewer, clock: Clock
) -> None:
    assert (await gate.decide(bearer(READER))).allowed
    clock.now += ALLOWED_TTL  # its decision expired ...
    await asyncio.gather(*(gate.decide(bearer(f"random-{n}")) for n in range(100)))
    assert (await gate.decide(bearer("one-more"))).status == 429  # ... and the budget is spent

    assert (await gate.decide(bearer(READER))).allowed
    assert reviewer.asked.count(READER) == 2
    # Only for KNOWN_FOR after it was last allowed; then it is a stranger again.
    clock.now += KNOWN_FOR + 1
    await asyncio.gather(*(gate.decide(bearer(f"again-{n}")) for n in range(100)))
    assert (await gate.decide(bearer(READER))).status == 429


async def test_a_review_that_fails_is_503_and_not_kept(
    gate: MetricsGate, reviewer: Reviewer
) -> None:
    reviewer.down = True
    assert (await gate.decide(bearer(READER))).status == 503
    reviewer.down = False
    assert (await gate.decide(bearer(READER))).allowed
    assert reviewer.asked == [READER, READER]


async def test_at_most_a_few_reviews_run_at_once(gate: MetricsGate, reviewer: Reviewer) -> None:
    reviewer.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(gate.decide(bearer(f"t-{n}"))) for n in range(REVIEW_BURST)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert reviewer.running == REVIEW_CONCURRENCY
    reviewer.gate.set()
    await asyncio.gather(*waiting)
    assert reviewer.most_running == REVIEW_CONCURRENCY


async def test_decisions_are_kept_under_a_hash_of_the_token_in_bounded_maps(
    reviewer: Reviewer, clock: Clock
) -> None:
    gate = MetricsGate(reviewer, clock=clock, burst=10_000, rate=0)
    readers = [f"reader-{n}" for n in range(MAX_KNOWN * 2)]
    reviewer.allowed.update(readers)
    for token in [*readers, *(f"nobody-{n}" for n in range(MAX_REFUSED * 2))]:
        await gate.decide(bearer(token))

    known, refused = gate._known, gate._refused
    assert len(known) == MAX_KNOWN
    assert len(refused) == MAX_REFUSED
    assert hashlib.sha256(readers[-1].encode()).digest() in known
    state = repr(vars(gate)) + repr(list(known)) + repr(list(refused))
    assert "reader-" not in state
    assert "nobody-" not in state
