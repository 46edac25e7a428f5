"""Run the local EGP server: in a background thread for tests and the demo, or in the foreground
for `fake-egp`."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from egp_testbench.fake_egp.app import create_app
from egp_testbench.fake_egp.generator import generate_models
from egp_testbench.fake_egp.state import FakeEGPState, Fault, ServerConfig

_START_TIMEOUT = 15.0


def load_models_file(path: Path) -> list[dict[str, Any]]:
    """A JSON list of models, or a `{"items": [...]}` page as the API returns it."""
    data = json.loads(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list) or not all(isinstance(m, dict) and "id" in m for m in data):
        raise ValueError(f"{path}: expected a JSON list of model objects, each with an id")
    return data


def build_state(
    *,
    api_key: str,
    account_id: str,
    models: list[dict[str, Any]] | None = None,
    config: ServerConfig | None = None,
) -> FakeEGPState:
    state = FakeEGPState(config=config)
    state.add_key(api_key, account_id)
    state.upsert_models(account_id, models or [])
    return state


class FakeEGPServer:
    """A local EGP server on a free loopback port, with helpers that go through its admin API."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        account_id: str = "acct-test",
        models: list[dict[str, Any]] | None = None,
        model_count: int = 0,
        seed: int = 0,
        config: ServerConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path_prefix: str = "",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """`tls` is (certificate file, key file): serve HTTPS with them."""
        self.api_key = api_key
        self.account_id = account_id
        initial = (models or []) + generate_models(model_count, seed)
        self.state = build_state(
            api_key=api_key, account_id=account_id, models=initial, config=config
        )
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self._prefix = path_prefix.rstrip("/")
        app = create_app(self.state)
        if self._prefix:
            # A base URL with a path, as the SDK's development URL has (egp-api.md section 1).
            outer = FastAPI()
            outer.mount(self._prefix, app)
            app = outer
        self._scheme = "https" if tls else "http"
        certfile, keyfile = tls or (None, None)
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                lifespan="off",
                access_log=False,
                ssl_certfile=certfile,
                ssl_keyfile=keyfile,
            )
        )
        self._thread = threading.Thread(target=self._serve, name="fake-egp", daemon=True)
        self._admin: httpx.Client | None = None

    @property
    def url(self) -> str:
        """The base URL a client is given (with the path prefix, if any)."""
        return f"{self._scheme}://{self.host}:{self.port}{self._prefix}"

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> FakeEGPServer:
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local EGP server did not start")
            time.sleep(0.01)
        self._admin = httpx.Client(base_url=f"{self.url}/_admin", timeout=30, verify=False)  # noqa: S501 - our own test server
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()  # first: an open keep-alive connection delays the shutdown
        self._server.should_exit = True
        self._thread.join(timeout=_START_TIMEOUT)
        self._socket.close()

    def __enter__(self) -> FakeEGPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Admin helpers: every change goes through HTTP so it runs on the server's own event loop.

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._admin is None:
            raise RuntimeError("the local EGP server is not started")
        response = self._admin.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def add_models(self, models: list[dict[str, Any]], account_id: str | None = None) -> None:
        self.admin("POST", f"/accounts/{account_id or self.account_id}/models", json=models)

    def update_model(self, model_id: str, account_id: str | None = None, **changes: Any) -> None:
        self.admin(
            "PATCH", f"/accounts/{account_id or self.account_id}/models/{model_id}", json=changes
        )

    def update_models(
        self, changes: dict[str, Any], ids: list[str] | None = None, account_id: str | None = None
    ) -> int:
        body = {"changes": changes, "ids": ids}
        answer = self.admin("PATCH", f"/accounts/{account_id or self.account_id}/models", json=body)
        return int(answer["changed"])

    def delete_model(self, model_id: str, account_id: str | None = None) -> None:
        self.admin("DELETE", f"/accounts/{account_id or self.account_id}/models/{model_id}")

    def models(self, account_id: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin(
            "GET", f"/accounts/{account_id or self.account_id}/models"
        )
        return result

    def inject(self, *faults: Fault) -> None:
        self.admin("POST", "/faults", json=[fault.model_dump() for fault in faults])

    def clear_faults(self) -> None:
        self.admin("DELETE", "/faults")

    def configure(self, **changes: Any) -> None:
        self.admin("PATCH", "/config", json=changes)

    def add_key(self, api_key: str, account_id: str) -> None:
        self.admin("POST", "/keys", json={"api_key": api_key, "account_id": account_id})

    def revoke_key(self, api_key: str) -> None:
        self.admin("POST", "/keys/revoke", json={"api_key": api_key})

    def request_counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.admin("GET", "/requests")["counts"]
        return counts

    def recent_requests(self) -> list[dict[str, Any]]:
        recent: list[dict[str, Any]] = self.admin("GET", "/requests")["recent"]
        return recent

    def api_keys_seen(self) -> set[str]:
        """Every x-api-key any request to the API carried, valid or not."""
        return set(self.admin("GET", "/requests")["api_keys"])

    def reset_request_log(self) -> None:
        self.admin("DELETE", "/requests")


def serve_forever(
    *, host: str, port: int, api_key: str, account_id: str, models: list[dict[str, Any]]
) -> None:
    """Serve in the foreground until interrupted (`fake-egp`)."""
    state = build_state(api_key=api_key, account_id=account_id, models=models)
    uvicorn.run(create_app(state), host=host, port=port, log_level="info", lifespan="off")
