"""The local EGP server answers as egp-api.md sections 4.2, 6 and 9 describe."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from egp_operator.sync.model_status import PHASE_BY_STATUS
from egp_testbench.fake_egp import FakeEGPServer, Fault, ServerConfig, generate_models
from egp_testbench.fake_egp.state import VENDORS_2025_05
from egp_testbench.processes import free_port

KEY = {"x-api-key": "test-key"}

SPEC_422 = json.loads((Path(__file__).parent / "spec_422_bodies.json").read_text())


@pytest.fixture
def server() -> Iterator[FakeEGPServer]:
    with FakeEGPServer(api_key="test-key", account_id="acct-a", model_count=25, seed=1) as s:
        yield s


def get(server: FakeEGPServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, headers=KEY)


@pytest.mark.parametrize("limit", ["0", "1001", "abc"])
def test_bad_limit_gets_the_pydantic_v2_body_of_the_spec(server: FakeEGPServer, limit: str) -> None:
    response = get(server, "/v5/models", limit=limit)

    assert response.status_code == 422
    assert response.json() == {"detail": [SPEC_422[f"limit={limit}"]]}


def test_bad_vendor_gets_the_may_2025_body_when_serving_that_vendor_list() -> None:
    config = ServerConfig(vendors=VENDORS_2025_05)
    with FakeEGPServer(api_key="test-key", config=config) as server:
        response = get(server, "/v5/models", model_vendor="foo")

    assert response.status_code == 422
    assert response.json() == {"detail": [SPEC_422["model_vendor=foo"]]}


def test_bad_vendor_lists_fireworks_ai_too_by_default(server: FakeEGPServer) -> None:
    [entry] = get(server, "/v5/models", model_vendor="foo").json()["detail"]

    assert entry["msg"].endswith("'bedrock', 'xai' or 'fireworks_ai'")


def test_every_vendor_is_accepted_on_the_filter(server: FakeEGPServer) -> None:
    for vendor in ServerConfig().vendors:
        assert get(server, "/v5/models", model_vendor=vendor).status_code == 200


def test_a_missing_or_wrong_key_is_401_before_any_validation(server: FakeEGPServer) -> None:
    missing = httpx.get(f"{server.url}/v5/models", params={"limit": "0"})
    wrong = httpx.get(f"{server.url}/v5/models", headers={"x-api-key": "nope"})

    assert (missing.status_code, missing.json()) == (401, {"detail": "Invalid API key"})
    assert wrong.status_code == 401


def test_another_account_is_403(server: FakeEGPServer) -> None:
    response = httpx.get(
        f"{server.url}/v5/models", headers={**KEY, "x-selected-account-id": "acct-b"}
    )

    assert response.status_code == 403


def test_the_first_page_echoes_limit_and_counts_the_whole_filtered_set(
    server: FakeEGPServer,
) -> None:
    body = get(server, "/v5/models", limit=10).json()

    assert body["object"] == "list"
    assert (body["limit"], body["total"], body["has_more"]) == (10, 25, True)
    assert len(body["items"]) == 10
    assert all(item["object"] == "model" for item in body["items"])


def test_default_order_is_newest_first(server: FakeEGPServer) -> None:
    items = get(server, "/v5/models", limit=25).json()["items"]

    stamps = [item["created_at"] for item in items]
    assert stamps == sorted(stamps, reverse=True)


def test_cursors_walk_forward_and_back_without_overlap(server: FakeEGPServer) -> None:
    everything = [i["id"] for i in get(server, "/v5/models", limit=25).json()["items"]]
    second = get(server, "/v5/models", limit=10, starting_after=everything[9]).json()
    last = get(server, "/v5/models", limit=10, starting_after=everything[19]).json()
    before = get(server, "/v5/models", limit=5, ending_before=everything[10]).json()

    assert [i["id"] for i in second["items"]] == everything[10:20]
    assert second["has_more"] is True
    assert [i["id"] for i in last["items"]] == everything[20:]
    assert last["has_more"] is False
    assert [i["id"] for i in before["items"]] == everything[5:10]
    assert before["has_more"] is True


def test_both_cursors_at_once_is_422(server: FakeEGPServer) -> None:
    response = get(server, "/v5/models", starting_after="a", ending_before="b")

    assert response.status_code == 422


def test_an_unknown_cursor_is_404_by_default(server: FakeEGPServer) -> None:
    response = get(server, "/v5/models", starting_after="gone")

    assert response.status_code == 404
    assert response.json() == {"detail": "Model gone not found"}


def test_page_size_override_caps_pages_but_echoes_the_request(server: FakeEGPServer) -> None:
    server.configure(page_size_override=3)

    body = get(server, "/v5/models", limit=10).json()

    assert (len(body["items"]), body["limit"], body["has_more"]) == (3, 10, True)


def test_get_one_model_and_an_unknown_one(server: FakeEGPServer) -> None:
    model_id = server.models()[0]["id"]

    assert get(server, f"/v5/models/{model_id}").json()["id"] == model_id
    assert get(server, "/v5/models/nope").status_code == 404


def test_unknown_query_parameters_and_headers_are_ignored(server: FakeEGPServer) -> None:
    response = httpx.get(
        f"{server.url}/v5/models",
        params={"sort_by": "name", "sort_order": "asc", "x": "y"},
        headers={**KEY, "X-Stainless-Lang": "python"},
    )

    names = [item["name"] for item in response.json()["items"]]
    assert response.status_code == 200
    assert names == sorted(names)


def test_a_fault_fires_its_number_of_times_then_expires(server: FakeEGPServer) -> None:
    server.inject(Fault(status=429, headers={"Retry-After": "3"}, times=2))

    statuses = [get(server, "/v5/models").status_code for _ in range(3)]

    assert statuses == [429, 429, 200]


def test_a_fault_on_page_k_leaves_other_pages_alone(server: FakeEGPServer) -> None:
    server.inject(Fault(page=2, status=500))
    first = get(server, "/v5/models", limit=10).json()
    cursor = first["items"][-1]["id"]

    second = get(server, "/v5/models", limit=10, starting_after=cursor)

    assert second.status_code == 500
    assert second.json() == {"detail": "Internal Server Error"}


def test_admin_changes_are_visible_to_the_api(server: FakeEGPServer) -> None:
    model_id = server.models()[0]["id"]
    server.update_model(model_id, status="failed", status_reason="OOMKilled")
    server.delete_model(server.models()[1]["id"])

    changed = get(server, f"/v5/models/{model_id}").json()

    assert (changed["status"], changed["status_reason"]) == ("failed", "OOMKilled")
    assert get(server, "/v5/models").json()["total"] == 24


def test_generated_models_are_reproducible_and_varied() -> None:
    models = generate_models(300, seed=7)

    assert models == generate_models(300, seed=7)
    assert models != generate_models(300, seed=8)
    assert len({m["id"] for m in models}) == 300
    assert {m["status"] for m in models} == set(PHASE_BY_STATUS)  # every status with a phase
    launch = [m for m in models if m["model_vendor"] == "launch"]
    llmengine = [m for m in models if m["model_vendor"] == "llmengine"]
    assert launch
    assert all("model_image" in m["vendor_configuration"] for m in launch)
    assert llmengine
    assert all("model" in m["vendor_configuration"] for m in llmengine)
    assert any(m["vendor_configuration"] is None for m in models)


def _wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            httpx.get(f"{url}/_admin/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)  # poll until the server answers, within the deadline
    raise AssertionError(f"{url} did not answer within 30s")


@pytest.mark.parametrize("shape", ["list", "page"])
def test_the_command_serves_a_models_file(tmp_path: Path, shape: str) -> None:
    models = generate_models(4, seed=3)
    models_file = tmp_path / "models.json"
    models_file.write_text(json.dumps(models if shape == "list" else {"items": models}))
    port = free_port()
    command = [sys.executable, "-m", "egp_testbench.fake_egp", "--port", str(port)]
    command += ["--api-key", "k", "--account-id", "acct-x", "--models-file", str(models_file)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_serving(url, process)
            body = httpx.get(f"{url}/v5/models", headers={"x-api-key": "k"}).json()
        finally:
            process.terminate()

    assert sorted(item["id"] for item in body["items"]) == sorted(m["id"] for m in models)


def test_the_command_generates_models_by_seed() -> None:
    port = free_port()
    command = [sys.executable, "-m", "egp_testbench.fake_egp", "--port", str(port)]
    command += ["--api-key", "k", "--models", "12", "--seed", "5"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_serving(url, process)
            body = httpx.get(f"{url}/v5/models", headers={"x-api-key": "k"}).json()
        finally:
            process.terminate()

    assert {item["id"] for item in body["items"]} == {m["id"] for m in generate_models(12, 5)}
