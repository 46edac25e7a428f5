"""The FastAPI app of the local EGP server.

`GET /v5/models` follows egp-api.md section 4.2: authenticate, validate (FastAPI's own pydantic-v2
422 bodies), filter, sort with a total order, apply the cursor, answer with `total` and
`has_more`. `/_admin` changes models, keys, switches and faults at run time.

No `from __future__ import annotations` here: FastAPI must evaluate the route annotations, and
the vendor enum is built per app.
"""

import asyncio
import enum
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, HTTPException, Query, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp

from egp_testbench.fake_egp.generator import generate_models
from egp_testbench.fake_egp.state import FakeEGPState, Fault, ServerConfig

_DEFAULT_DETAILS = {
    400: "Bad Request",
    401: "Invalid API key",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_SORTABLE = ("created_at", "name", "id")
_API_PREFIX = "/v5/"


def create_app(state: FakeEGPState) -> FastAPI:
    """An app serving `state`; the vendor list of the 422 message is fixed at creation."""
    vendor_enum: Any = enum.Enum(  # type: ignore[misc]
        "ModelVendor", {vendor: vendor for vendor in state.config.vendors}, type=str
    )
    app = FastAPI(title="Local EGP server", docs_url=None, redoc_url=None)
    app.state.egp = state
    app.add_middleware(_Authentication, state=state)

    @app.exception_handler(RequestValidationError)
    async def count_rejected_query(request: Request, error: RequestValidationError) -> Response:
        """FastAPI's own 422 body, counted like every other answer."""
        endpoint = "list" if _api_path(request).rstrip("/") == "/v5/models" else "other"
        state.record(endpoint, 422, dict(request.query_params))
        return await request_validation_exception_handler(request, error)

    @app.get("/v5/models")
    async def list_models(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        model_vendor: Annotated[vendor_enum | None, Query()] = None,
        name: str | None = None,
        starting_after: str | None = None,
        ending_before: str | None = None,
        sort_by: str | None = None,
        sort_order: Literal["asc", "desc"] | None = None,
    ) -> Response:
        query = dict(request.query_params)
        if starting_after is not None and ending_before is not None:
            raise HTTPException(422, "starting_after and ending_before are mutually exclusive")
        rows = _filtered_rows(
            state,
            request.state.account_id,
            vendor=model_vendor.value if model_vendor is not None else None,
            name=name,
            sort_by=sort_by,
            descending=sort_order != "asc" if sort_order else sort_by in (None, "created_at"),
        )
        page_size = state.config.page_size_override or limit
        window = _window(rows, page_size, starting_after, ending_before, state.config)
        if window is None:
            cursor = starting_after or ending_before
            return _answer(state, "list", query, 404, {"detail": f"Model {cursor} not found"})
        items, has_more, page_number, previous = window
        fault = state.take_fault("list", page_number)
        if fault is not None and (faulted := await _apply_fault(state, fault, "list", query)):
            return faulted
        body: dict[str, Any] = {
            "object": "list",
            "items": [_render(model, state.config) for model in items],
            "limit": limit,
            "total": len(rows),
            "has_more": has_more,
        }
        if state.config.extra_fields:
            body["next_page_token"] = None
        if fault is not None and fault.mutation:
            body = _mutate(body, fault.mutation, previous, state.config)
        return _answer(state, "list", query, 200, body)

    @app.get("/v5/models/{model_id}")
    async def get_model(request: Request, model_id: str) -> Response:
        fault = state.take_fault("get", None)
        if fault is not None and (faulted := await _apply_fault(state, fault, "get", {})):
            return faulted
        model = state.accounts.get(request.state.account_id, {}).get(model_id)
        if model is None:
            return _answer(state, "get", {}, 404, {"detail": f"Model {model_id} not found"})
        return _answer(state, "get", {}, 200, _render(model, state.config))

    _add_admin_routes(app, state)
    return app


class _Authentication(BaseHTTPMiddleware):
    """401/403 before query validation, as a real auth layer in front of the handlers would."""

    def __init__(self, app: ASGIApp, *, state: FakeEGPState) -> None:
        super().__init__(app)
        self.state = state

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = _api_path(request)
        if not path.startswith(_API_PREFIX):
            return await call_next(request)
        api_key = request.headers.get("x-api-key", "")
        self.state.api_keys_seen.add(api_key)
        accounts = self.state.api_keys.get(api_key)
        endpoint = "list" if path.rstrip("/") == "/v5/models" else "get"
        if accounts is None:
            return _answer(self.state, endpoint, {}, 401, {"detail": "Invalid API key"})
        selected = request.headers.get("x-selected-account-id")
        if selected is None and self.state.config.require_account_header:
            return _answer(self.state, endpoint, {}, 403, {"detail": "No account selected"})
        account_id = selected or accounts[0]
        if account_id not in accounts:
            detail = {"detail": f"You do not have access to account {account_id}"}
            return _answer(self.state, endpoint, {}, 403, detail)
        request.state.account_id = account_id
        return await call_next(request)


def _api_path(request: Request) -> str:
    """The path below any mount prefix, so the app works under a base-URL path too."""
    return request.url.path.removeprefix(request.scope.get("root_path", "")) or "/"


def _answer(
    state: FakeEGPState, endpoint: str, query: dict[str, str], status: int, body: Any
) -> Response:
    state.record(endpoint, status, query)
    return JSONResponse(body, status_code=status)


def _filtered_rows(
    state: FakeEGPState,
    account_id: str,
    *,
    vendor: str | None,
    name: str | None,
    sort_by: str | None,
    descending: bool,
) -> list[dict[str, Any]]:
    """The account's models matching the filters, in a total, stable order (id breaks ties)."""
    rows = [
        model
        for model in state.accounts.get(account_id, {}).values()
        if (vendor is None or model.get("model_vendor") == vendor)
        and (name is None or model.get("name") == name)
    ]
    key = sort_by if sort_by in _SORTABLE else "created_at"
    rows.sort(key=lambda model: (str(model.get(key) or ""), str(model["id"])), reverse=descending)
    return rows


def _window(
    rows: list[dict[str, Any]],
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
    config: ServerConfig,
) -> tuple[list[dict[str, Any]], bool, int | None, dict[str, Any] | None] | None:
    """(page, has_more, 1-based page number, the row before the page), or None for an unknown
    cursor that the server is configured to answer with 404."""
    cursor = starting_after or ending_before
    if cursor is None:
        return rows[:limit], len(rows) > limit, 1, None
    index = next((i for i, row in enumerate(rows) if row["id"] == cursor), None)
    if index is None:
        if config.unknown_cursor == "not_found":
            return None
        if config.unknown_cursor == "empty":
            return [], False, None, None
        return rows[:limit], len(rows) > limit, None, None
    if ending_before is not None:
        rest = rows[:index]
        return rest[-limit:], len(rest) > limit, None, None
    rest = rows[index + 1 :]
    return rest[:limit], len(rest) > limit, (index + 1) // limit + 1, rows[index]


async def _apply_fault(
    state: FakeEGPState, fault: Fault, endpoint: str, query: dict[str, str]
) -> Response | None:
    """Stall, then answer as the fault says; None lets the request go on (delay or mutation)."""
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.disconnect:
        state.record(endpoint, 0, query)
        return _dropped_connection()
    if fault.status is None and fault.body is None:
        return None
    status = fault.status or 200
    state.record(endpoint, status, query)
    content = (
        fault.body
        if fault.body is not None
        else json.dumps({"detail": _DEFAULT_DETAILS.get(status, "Error")})
    )
    return Response(
        content, status_code=status, headers=fault.headers, media_type=fault.content_type
    )


def _dropped_connection() -> Response:
    """Headers promise a body that never arrives: the server closes the connection midway."""

    async def half_a_body() -> AsyncIterator[bytes]:
        yield b'{"object": "list", "items": ['
        raise ConnectionResetError("fault: connection dropped")

    return StreamingResponse(
        half_a_body(), media_type="application/json", headers={"Content-Length": "4096"}
    )


def _render(model: dict[str, Any], config: ServerConfig) -> dict[str, Any]:
    rendered = {
        key: value for key, value in model.items() if value is not None or not config.omit_nulls
    }
    if config.extra_fields:
        rendered.setdefault("x_added_later", {"note": "a field this client does not know"})
    return rendered


def _mutate(
    body: dict[str, Any],
    mutation: str,
    previous: dict[str, Any] | None,
    config: ServerConfig,
) -> dict[str, Any]:
    if mutation == "empty_page_has_more":
        return {**body, "items": [], "has_more": True}
    if mutation == "repeat_previous_id" and previous is not None and body["items"]:
        return {**body, "items": [_render(previous, config), *body["items"][1:]]}
    if mutation == "drop_has_more":
        return {key: value for key, value in body.items() if key != "has_more"}
    if mutation == "wrong_shape":
        return {"data": body["items"], "count": body["total"]}
    return body


def _add_admin_routes(app: FastAPI, state: FakeEGPState) -> None:
    """`/_admin`: what tests and the demo change while the server runs. No auth: loopback only."""

    def models_of(account_id: str) -> dict[str, dict[str, Any]]:
        return state.accounts.setdefault(account_id, {})

    @app.get("/_admin/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/_admin/accounts/{account_id}/models")
    async def all_models(account_id: str) -> list[dict[str, Any]]:
        return list(models_of(account_id).values())

    @app.post("/_admin/accounts/{account_id}/models")
    async def upsert_models(
        account_id: str, models: Annotated[list[dict[str, Any]], Body()]
    ) -> dict[str, int]:
        if any("id" not in model for model in models):
            raise HTTPException(422, "every model needs an id")
        state.upsert_models(account_id, models)
        return {"count": len(models_of(account_id))}

    @app.post("/_admin/accounts/{account_id}/generate")
    async def generate(
        account_id: str, count: Annotated[int, Body(ge=0)], seed: Annotated[int, Body()] = 0
    ) -> dict[str, int]:
        state.upsert_models(account_id, generate_models(count, seed))
        return {"count": len(models_of(account_id))}

    @app.patch("/_admin/accounts/{account_id}/models")
    async def patch_many(
        account_id: str,
        changes: Annotated[dict[str, Any], Body()],
        ids: Annotated[list[str] | None, Body()] = None,
    ) -> dict[str, int]:
        """Merge `changes` into the models `ids` (all when omitted): a status flip, a rename."""
        store = models_of(account_id)
        targets = store.keys() if ids is None else [i for i in ids if i in store]
        for model_id in list(targets):
            store[model_id] = {**store[model_id], **changes}
        return {"changed": len(list(targets))}

    @app.patch("/_admin/accounts/{account_id}/models/{model_id}")
    async def patch_one(
        account_id: str, model_id: str, changes: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        store = models_of(account_id)
        if model_id not in store:
            raise HTTPException(404, f"Model {model_id} not found")
        store[model_id] = {**store[model_id], **changes}
        return store[model_id]

    @app.delete("/_admin/accounts/{account_id}/models/{model_id}")
    async def delete_one(account_id: str, model_id: str) -> dict[str, Any]:
        if models_of(account_id).pop(model_id, None) is None:
            raise HTTPException(404, f"Model {model_id} not found")
        return {"id": model_id, "object": "model", "deleted": True}

    @app.delete("/_admin/accounts/{account_id}/models")
    async def delete_all(account_id: str) -> dict[str, int]:
        deleted = len(models_of(account_id))
        models_of(account_id).clear()
        return {"deleted": deleted}

    @app.post("/_admin/keys")
    async def add_key(
        api_key: Annotated[str, Body(min_length=1)], account_id: Annotated[str, Body()]
    ) -> dict[str, str]:
        state.add_key(api_key, account_id)
        return {"status": "added"}

    @app.post("/_admin/keys/revoke")
    async def revoke_key(api_key: Annotated[str, Body(embed=True)]) -> dict[str, str]:
        state.api_keys.pop(api_key, None)
        return {"status": "revoked"}

    @app.get("/_admin/faults")
    async def list_faults() -> list[Fault]:
        return state.faults

    @app.post("/_admin/faults")
    async def add_faults(faults: list[Fault]) -> list[Fault]:
        state.faults.extend(faults)
        return state.faults

    @app.delete("/_admin/faults")
    async def clear_faults() -> dict[str, str]:
        state.faults.clear()
        return {"status": "cleared"}

    @app.patch("/_admin/config")
    async def patch_config(changes: Annotated[dict[str, Any], Body()]) -> ServerConfig:
        if "vendors" in changes:
            raise HTTPException(422, "the vendor list is fixed when the server starts")
        state.config = ServerConfig.model_validate({**state.config.model_dump(), **changes})
        return state.config

    @app.get("/_admin/requests")
    async def requests_seen() -> dict[str, Any]:
        return {
            "counts": dict(state.request_counts),
            "recent": list(state.recent_requests),
            "api_keys": sorted(state.api_keys_seen),
        }

    @app.delete("/_admin/requests")
    async def reset_requests() -> dict[str, str]:
        state.request_counts.clear()
        state.recent_requests.clear()
        return {"status": "cleared"}
