"""What the local EGP server holds: accounts and their models, API keys, behaviour switches,
injected faults and a request log. Mutated only from the server's event loop (through the admin
API), so it needs no lock."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, Literal

from pydantic import BaseModel, Field

from egp_operator.egp.models import MODEL_VENDORS

#: The vendor list of the May-2025 API (egp-api.md section 6.1); newer servers add fireworks_ai.
VENDORS_2025_05 = tuple(vendor for vendor in MODEL_VENDORS if vendor != "fireworks_ai")

Endpoint = Literal["list", "get", "any"]
Mutation = Literal["empty_page_has_more", "repeat_previous_id", "drop_has_more", "wrong_shape"]


class ServerConfig(BaseModel):
    """Switches for behaviour the real API leaves undocumented (egp-api.md section 4.2)."""

    vendors: tuple[str, ...] = MODEL_VENDORS
    page_size_override: int | None = Field(default=None, ge=1)
    unknown_cursor: Literal["not_found", "restart", "empty"] = "not_found"
    omit_nulls: bool = False
    extra_fields: bool = False
    require_account_header: bool = False


class Fault(BaseModel):
    """One injected misbehaviour; the first matching fault answers a request.

    `status` answers with that status and a FastAPI-style body (or `body` verbatim), `delay`
    stalls first (a slow or timing-out server), `disconnect` drops the connection halfway
    through the body, `page` limits it to the k-th page of a list walk, `mutation` corrupts an
    otherwise good page, `times` expires it after that many uses.
    """

    endpoint: Endpoint = "list"
    status: int | None = Field(default=None, ge=100, le=599)
    body: str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = Field(default_factory=dict)
    delay: float = Field(default=0.0, ge=0, le=600)
    page: int | None = Field(default=None, ge=1)
    mutation: Mutation | None = None
    disconnect: bool = False
    times: int | None = Field(default=None, ge=1)

    def matches(self, endpoint: str, page: int | None) -> bool:
        if self.endpoint not in ("any", endpoint):
            return False
        return self.page is None or self.page == page


class FakeEGPState:
    """Everything the server knows; tests change it through the admin API."""

    def __init__(self, *, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.accounts: dict[str, dict[str, dict[str, Any]]] = {}
        self.api_keys: dict[str, list[str]] = {}
        self.faults: list[Fault] = []
        self.request_counts: Counter[str] = Counter()
        self.recent_requests: deque[dict[str, Any]] = deque(maxlen=2000)
        #: Every x-api-key sent to the API, valid or not: what tests check no key leaks to.
        self.api_keys_seen: set[str] = set()

    def add_key(self, api_key: str, account_id: str) -> None:
        self.api_keys.setdefault(api_key, [])
        if account_id not in self.api_keys[api_key]:
            self.api_keys[api_key].append(account_id)
        self.accounts.setdefault(account_id, {})

    def upsert_models(self, account_id: str, models: list[dict[str, Any]]) -> None:
        store = self.accounts.setdefault(account_id, {})
        for model in models:
            store[str(model["id"])] = dict(model)

    def take_fault(self, endpoint: str, page: int | None) -> Fault | None:
        """The first fault for this request, used up by one if it is counted."""
        for fault in self.faults:
            if fault.matches(endpoint, page):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                return fault
        return None

    def record(self, endpoint: str, status: int, query: dict[str, str]) -> None:
        self.request_counts[f"{endpoint} {status}"] += 1
        self.request_counts[endpoint] += 1
        self.recent_requests.append({"endpoint": endpoint, "status": status, "query": query})
