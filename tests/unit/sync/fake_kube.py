"""A small in-memory stand-in for the Kubernetes API (`kube.KubeAPI`), for unit tests of the
cycle's and the applier's decisions: it answers GETs from a dict of objects by path, fails the
requests a test tells it to, and records every request it was asked, in order."""

from __future__ import annotations

import json
from typing import Any

from egp_operator.kube import KubeError


class FakeKube:
    concurrency = 4

    def __init__(self, objects: dict[str, Any] | None = None) -> None:
        self.objects: dict[str, Any] = dict(objects or {})
        self.requests: list[tuple[str, str, Any]] = []
        #: Creates that fail, by the object's name.
        self.create_errors: dict[str, KubeError] = {}
        #: Other requests that fail, by (method, path).
        self.errors: dict[tuple[str, str], KubeError] = {}

    def _answer(self, method: str, path: str, body: Any) -> None:
        self.requests.append((method, path, body))
        if (method, path) in self.errors:
            raise self.errors[method, path]

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        self._answer("GET", path, params)
        if path not in self.objects:
            raise KubeError(404, "NotFound", f"{path} not found")
        return self.objects[path]

    async def create(self, path: str, body: Any) -> Any:
        self._answer("POST", path, body)
        name = body.get("metadata", {}).get("name", "")
        if name in self.create_errors:
            raise self.create_errors[name]
        return body

    async def json_patch(self, path: str, operations: list[dict[str, Any]] | str) -> Any:
        self._answer(
            "PATCH", path, json.loads(operations) if isinstance(operations, str) else operations
        )
        return {}

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        self._answer("PATCH", path, body)
        return {}

    async def delete(self, path: str) -> Any:
        self._answer("DELETE", path, None)
        return {}

    def paths(self, method: str) -> list[str]:
        return [path for verb, path, _ in self.requests if verb == method]

    def status_writes(self) -> list[Any]:
        return [
            body
            for verb, path, body in self.requests
            if verb == "PATCH" and path.endswith("/status")
        ]
