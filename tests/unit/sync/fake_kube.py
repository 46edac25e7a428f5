"""A small in-memory stand-in for `KubeClient`, for unit tests of the cycle's decisions: it
answers GETs from a dict of objects by path and records every request it was asked."""

from __future__ import annotations

from typing import Any

from egp_operator.kube import KubeError


class FakeKube:
    concurrency = 4

    def __init__(self, objects: dict[str, Any] | None = None) -> None:
        self.objects: dict[str, Any] = dict(objects or {})
        self.requests: list[tuple[str, str, Any]] = []
        self.create_errors: dict[str, KubeError] = {}

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        self.requests.append(("GET", path, params))
        if path not in self.objects:
            raise KubeError(404, "NotFound", f"{path} not found")
        return self.objects[path]

    async def create(self, path: str, body: Any) -> Any:
        self.requests.append(("POST", path, body))
        name = body.get("metadata", {}).get("name", "")
        if name in self.create_errors:
            raise self.create_errors[name]
        return body

    async def json_patch(self, path: str, operations: list[dict[str, Any]]) -> Any:
        self.requests.append(("PATCH", path, operations))
        return {}

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        self.requests.append(("PATCH", path, body))
        return {}

    async def delete(self, path: str) -> Any:
        self.requests.append(("DELETE", path, None))
        return {}

    def paths(self, method: str) -> list[str]:
        return [path for verb, path, _ in self.requests if verb == method]

    def status_writes(self) -> list[Any]:
        return [
            body
            for verb, path, body in self.requests
            if verb == "PATCH" and path.endswith("/status")
        ]
