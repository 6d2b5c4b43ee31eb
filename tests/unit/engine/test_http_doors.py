"""The HTTP API without a broker: the token on every route, the list's filter and paging, KWF_* settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api.client import WorkflowPage, WorkflowState
from engine.api.http_api import create_app
from engine.api.status_view import StatusView
from engine.core.history import WorkflowStatus
from engine.state.config import MIB, Settings

BASE = "/v1.0-beta1/workflows/dapr"
TOKEN = "t0ken-for-tests"


@dataclass
class StubClient:
    """Stands in for WorkflowClient: known instances, no broker."""

    settings: Settings
    states: list[WorkflowState]

    def list_workflows(self, *, status: WorkflowStatus | None = None, name: str | None = None,
                       created_after: datetime | None = None,
                       created_before: datetime | None = None) -> list[WorkflowState]:
        return [s for s in self.states if (status is None or s.runtime_status is status)
                and (name is None or s.name == name)
                and (created_after is None or s.created_at >= created_after)
                and (created_before is None or s.created_at < created_before)]

    def list_workflows_page(self, *, page_size: int, continuation_token: str | None,
                            **query: Any) -> WorkflowPage:
        if continuation_token is not None and not continuation_token.isdigit():
            raise ValueError(f"continuation token {continuation_token!r} is not one this API handed out")
        states = self.list_workflows(**query)
        first = int(continuation_token or 0)
        more = first + page_size < len(states)
        return WorkflowPage(states[first:first + page_size], str(first + page_size) if more else None)

    def get_workflow_state(self, instance_id: str, **_: Any) -> WorkflowState | None:
        return next((s for s in self.states if s.instance_id == instance_id), None)

    def __getattr__(self, name: str) -> Any:  # schedule_new_workflow, raise_workflow_event, ...
        return lambda *args, **kwargs: "stub"


def state(n: int, status: WorkflowStatus, name: str = "wf") -> WorkflowState:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return WorkflowState(instance_id=f"i-{n:03d}", name=name, runtime_status=status, created_at=at,
                         last_updated_at=at, serialized_input=None, serialized_output=None,
                         serialized_custom_status=None, failure_details=None)


def api(token: str | None = None, states: list[WorkflowState] | None = None) -> TestClient:
    settings = Settings(bootstrap_servers="127.0.0.1:1", api_token=token)
    return TestClient(create_app(StubClient(settings, states or [])), raise_server_exceptions=False)  # type: ignore[arg-type]


def every_route(client: TestClient) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json", headers={"dapr-api-token": TOKEN}).json()
    return [(method.upper(), re.sub(r"\{[^}]+\}", lambda m: "dapr" if m.group() == "{component}" else "x-1", path))
            for path, item in spec["paths"].items() for method in item]


def test_the_token_guards_every_route_not_only_one() -> None:
    client = api(token=TOKEN)
    routes = [route for route in every_route(client) if route != ("GET", "/healthz")]
    assert len(routes) >= 18, routes  # every workflow route, under both prefixes
    assert {path.split("/")[1] for _, path in routes} >= {"v1.0-beta1", "v1.0"}
    for method, path in [*routes, ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/nowhere")]:
        for headers in ({}, {"dapr-api-token": "wrong"}, {"dapr-api-token": TOKEN + "x"}):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.status_code)
            assert response.json()["errorCode"] == "ERR_UNAUTHORIZED"
        answered = client.request(method, path, headers={"dapr-api-token": TOKEN})
        assert answered.status_code != 401, (method, path)
    # Only the health check and the page's files are open: they hold no instance data.
    assert client.get("/healthz").status_code == 200
    assert client.get("/ui/").status_code == 200
    StatusView.close_shared()  # the status routes opened this process's view (of no broker)


def test_the_list_filters_by_status_and_pages() -> None:
    states = [state(n, WorkflowStatus.COMPLETED if n % 3 else WorkflowStatus.RUNNING) for n in range(10)]
    states.append(state(99, WorkflowStatus.RUNNING, name="other"))
    client = api(states=states)

    running = client.get(BASE, params={"status": "running"}).json()  # case does not matter
    assert [w["instanceID"] for w in running["workflows"]] == ["i-000", "i-003", "i-006", "i-009", "i-099"]
    assert {w["runtimeStatus"] for w in running["workflows"]} == {"RUNNING"}
    assert running["continuationToken"] is None
    named = client.get(BASE, params={"status": "RUNNING", "name": "other"}).json()
    assert [w["instanceID"] for w in named["workflows"]] == ["i-099"]

    pages, offset = [], 0
    while offset is not None:
        page = client.get(BASE, params={"status": "COMPLETED", "limit": 2, "offset": offset}).json()
        assert page["total"] == 6 and len(page["workflows"]) <= 2
        pages.append([w["instanceID"] for w in page["workflows"]])
        offset = page["nextOffset"]
    assert pages == [["i-001", "i-002"], ["i-004", "i-005"], ["i-007", "i-008"]]
    assert client.get(BASE, params={"offset": 50}).json() == {"workflows": [], "total": 11, "nextOffset": None}

    pages, token = [], None
    while True:
        page = client.get(BASE, params={"status": "COMPLETED", "page_size": 2, "continuation_token": token,
                                        "created_after": "2026-01-01T00:00:02Z"}).json()
        pages.append([w["instanceID"] for w in page["workflows"]])
        token = page["continuationToken"]
        if token is None:
            break
    assert pages == [["i-002", "i-004"], ["i-005", "i-007"], ["i-008"]]

    for bad in ({"status": "NOPE"}, {"limit": 0}, {"limit": 100_000}, {"offset": -1}, {"page_size": 0},
                {"page_size": 1001}, {"continuation_token": "not-a-token"}, {"created_after": "yesterday"},
                {"created_before": "2026-13-01"}):
        response = client.get(BASE, params=bad)
        assert response.status_code == 400, (bad, response.text)
        assert set(response.json()) == {"errorCode", "message"}


def test_token_payload_limit_and_process_id_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("KWF_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("KWF_STATE_DIR", str(tmp_path))
    plain = Settings.from_env()
    assert plain.api_token is None and plain.max_payload_bytes == MIB
    assert plain.process_id and plain.process_id == Settings.from_env().process_id  # stable per state folder

    monkeypatch.setenv("KWF_API_TOKEN", TOKEN)
    monkeypatch.setenv("KWF_MAX_PAYLOAD_BYTES", "2048")
    monkeypatch.setenv("KWF_PROCESS_ID", "orders-eu-1")
    settings = Settings.from_env()
    assert (settings.api_token, settings.max_payload_bytes, settings.process_id) == (TOKEN, 2048, "orders-eu-1")
    assert Settings.from_env(process_id="override").process_id == "override"
    # They reach the API: the token is wanted, the limit applied.
    client = TestClient(create_app(StubClient(settings, [])), raise_server_exceptions=False)  # type: ignore[arg-type]
    assert client.get(BASE).status_code == 401
    big = client.post(f"{BASE}/wf/start", content=b'"' + b"x" * 2048 + b'"', headers={"dapr-api-token": TOKEN})
    assert big.status_code == 413 and "the limit is 2048 bytes" in big.json()["message"]
    # ... and the transactional IDs of the processors.
    from engine.orchestration.orchestrator import Orchestrator
    from engine.replay.registry import Registry

    assert Orchestrator(settings, Registry(), 4).processor_config().transactional_id.endswith("-orders-eu-1")
