"""The bulk purge and terminate routes: the filter they read, what they answer, what they refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api.bulk import bulk_command
from engine.api.http_api import create_app
from engine.core.bulk import PURGE, TERMINATE
from engine.state.config import Settings


class Accepted:
    def __init__(self, command: Any) -> None:
        self.command_id, self.partitions, self.matched = command.command_id, 4, ["a", "b"]

    def wait(self, timeout: float) -> int:
        return 2


class RecordingClient:
    """Records the bulk calls the API makes; checks the filter as the real client does."""

    settings = Settings()

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def purge_workflows(self, **filters: Any) -> Accepted:
        self.calls.append((PURGE, filters))
        return Accepted(bulk_command(PURGE, **filters))

    def terminate_workflows(self, *, output: Any = None, **filters: Any) -> Accepted:
        self.calls.append((TERMINATE, {**filters, "output": output}))
        return Accepted(bulk_command(TERMINATE, **filters))


@pytest.fixture
def client() -> RecordingClient:
    return RecordingClient()


@pytest.fixture
def api(client: RecordingClient) -> TestClient:
    return TestClient(create_app(client))  # type: ignore[arg-type]


def test_purge_by_filter_answers_once_accepted(api: TestClient, client: RecordingClient) -> None:
    response = api.post("/v1.0-beta1/workflows/dapr/purge?wait=5", json={
        "status": ["COMPLETED"], "name": "chain3", "createdBefore": "2026-11-01T00:00:00Z"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["partitions"] == 4 and body["matched"] == 2 and body["done"] is True and body["commandID"]
    assert client.calls == [(PURGE, {"status": ["COMPLETED"], "name": "chain3",
                                     "created_before": datetime(2026, 11, 1, tzinfo=UTC), "created_after": None})]


def test_terminate_by_filter_takes_an_output_and_no_body_means_everything(api: TestClient,
                                                                           client: RecordingClient) -> None:
    response = api.post("/v1.0/workflows/dapr/terminate", json={"name": "monitor", "output": "closed"})
    assert response.status_code == 202, response.text
    assert "done" not in response.json()
    assert client.calls[0][1]["output"] == "closed"
    assert api.post("/v1.0/workflows/dapr/purge").status_code == 202


@pytest.mark.parametrize("body", [
    {"status": ["RUNNING"]}, {"status": ["NOPE"]}, {"status": 3}, {"createdBefore": "yesterday"},
    {"createdAfter": 5}, {"name": ["x"]}, {"colour": "red"}, {"output": "x"}, [1, 2],
])
def test_a_bad_filter_is_a_400(api: TestClient, body: Any) -> None:
    response = api.post("/v1.0-beta1/workflows/dapr/purge", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["errorCode"] == "ERR_BAD_REQUEST"
