"""An in-memory stand-in for the Kubernetes API, the one both the tests (the cycle's, the
applier's and the peering checks' decisions) and the bench (bench/source_cycle.py: a cycle's
CPU without a network) use. It lives here, in a package mypy checks, so that a change to
`kube.KubeAPI` that it does not follow is a type error, not a test that quietly stops testing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from egp_operator.kube import KubeAPI, KubeError


class FakeKube:
    """Objects by path, and every request it was asked, in order, in `requests`.

    A GET answers `objects[path]` as it is (a collection too: a test stores its list answer
    under the collection's path), else NotFound. A create stores the object under its name,
    with a uid and a generation as the API server gives them; a status patch (JSON patch of
    `/status`, or a merge patch) changes the stored object. A write to an object it does not
    hold is answered and stores nothing, so that a test of decisions need not seed every object
    they touch: a test that needs a NotFound, or any failure, puts it in `errors` (by method
    and path) or `create_errors` (by the created object's name). A request that fails is
    recorded all the same. It watches nothing: the Secret watches take a `KubeWatcher`, which
    their tests fake apart.
    """

    def __init__(self, objects: Mapping[str, Any] | None = None, *, concurrency: int = 4) -> None:
        self.objects: dict[str, Any] = dict(objects or {})
        self.concurrency = concurrency
        #: (method, path, body) of every request; a GET's params stand for its body.
        self.requests: list[tuple[str, str, Any]] = []
        #: Creates that fail, by the object's name.
        self.create_errors: dict[str, KubeError] = {}
        #: Other requests that fail, by (method, path).
        self.errors: dict[tuple[str, str], KubeError] = {}

    def _record(self, method: str, path: str, body: Any) -> None:
        self.requests.append((method, path, body))
        if (method, path) in self.errors:
            raise self.errors[method, path]

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        self._record("GET", path, params)
        if path not in self.objects:
            raise KubeError(404, "NotFound", f"{path} not found")
        return self.objects[path]

    async def create(self, path: str, body: Any) -> Any:
        self._record("POST", path, body)
        metadata = body.get("metadata", {})
        name = metadata.get("name", "")
        if name in self.create_errors:
            raise self.create_errors[name]
        stored = {**body, "metadata": {"uid": f"uid-{name}", "generation": 1, **metadata}}
        self.objects[f"{path}/{name}"] = stored
        return stored

    async def json_patch(self, path: str, operations: list[dict[str, Any]] | str) -> Any:
        steps: list[dict[str, Any]] = (
            json.loads(operations) if isinstance(operations, str) else operations
        )
        self._record("PATCH", path, steps)
        target = path.removesuffix("/status")
        if target not in self.objects:
            return {}
        patched = dict(self.objects[target])
        for step in steps:
            member = step["path"].removeprefix("/")
            if "/" in member or step["op"] not in ("add", "replace", "remove"):
                raise NotImplementedError(f"the fake applies no {step['op']} of {step['path']}")
            if step["op"] == "remove":
                patched.pop(member, None)
            else:
                patched[member] = step["value"]
        self.objects[target] = patched
        return patched

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        self._record("PATCH", path, body)
        target = path.removesuffix("/status")
        if target not in self.objects:
            return {}
        self.objects[target] = _merged(self.objects[target], body)
        return self.objects[target]

    async def delete(self, path: str) -> Any:
        self._record("DELETE", path, None)
        return self.objects.pop(path, {})

    def paths(self, method: str) -> list[str]:
        """The paths of the requests of `method`, in order."""
        return [path for verb, path, _ in self.requests if verb == method]

    def status_writes(self) -> list[Any]:
        """The body of every status write, in order: JSON patch steps, or a merge patch."""
        return [
            body
            for verb, path, body in self.requests
            if verb == "PATCH" and path.endswith("/status")
        ]

    def writes(self) -> int:
        """Requests that are not GETs, failed ones included."""
        return sum(verb != "GET" for verb, _, _ in self.requests)


def _merged(target: Any, patch: Any) -> Any:
    """`patch` merged over `target` as a JSON merge patch (RFC 7386) does; new dicts along the
    patched keys, so that neither the stored object nor a recorded body is changed in place."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merged(merged.get(key), value)
    return merged


#: What keeps the fake to the protocol: a method it lacks, or one whose signature drifted, is
#: a type error here.
_: type[KubeAPI] = FakeKube
