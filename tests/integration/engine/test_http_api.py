"""The Dapr-compatible HTTP API on a real loopback port, over a runtime on the real broker."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from engine import WorkflowRuntime
from engine.api.http_api import serve_in_thread
from engine.state.config import Settings
from examples import order_processing
from tests.integration.engine.inbox_barrier import wait_inbox_processed

BASE = "/v1.0-beta1/workflows/dapr"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def waiting_workflow(ctx: Any, _: Any) -> Any:
    approval = yield ctx.wait_for_external_event("approval")
    return {"approved_by": approval["by"]}


@pytest.fixture
def api(start_runtime: Callable[..., WorkflowRuntime]) -> Iterator[httpx.Client]:
    def register(runtime: WorkflowRuntime) -> None:
        order_processing.register(runtime)
        runtime.register_workflow(waiting_workflow)

    runtime = start_runtime(register)
    port = free_port()
    server = serve_in_thread(runtime, "127.0.0.1", port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        yield http
    server.stop()


def poll(http: httpx.Client, instance_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(f"{BASE}/{instance_id}").json()
        if body.get("runtimeStatus") in statuses or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_seed_curl_flow_completes_with_processed_true(api: httpx.Client) -> None:
    started = api.post(f"{BASE}/OrderProcessingWorkflow/start?instanceID=12345678",
                       content=b'{"Name":"Paperclips","Quantity":1,"TotalCost":9.95}')
    assert started.status_code == 202, started.text
    assert started.json() == {"instanceID": "12345678"}
    body = poll(api, "12345678", {"COMPLETED", "FAILED", "TERMINATED"})
    assert body["runtimeStatus"] == "COMPLETED", body
    assert body["workflowName"] == "OrderProcessingWorkflow"
    assert json.loads(body["properties"]["dapr.workflow.output"]) == {"Processed": True}
    assert json.loads(body["properties"]["dapr.workflow.input"]) == {"Name": "Paperclips", "Quantity": 1,
                                                                     "TotalCost": 9.95}
    assert body["createdAt"].endswith("Z") and body["lastUpdatedAt"] >= body["createdAt"]
    # The same routes answer under /v1.0 too.
    assert api.get("/v1.0/workflows/dapr/12345678").json()["runtimeStatus"] == "COMPLETED"
    history = api.get(f"{BASE}/12345678/history").json()
    assert [row["name"] for row in history["timeline"] if row["kind"] == "activity"] == [
        "notify", "reserve_inventory", "process_payment", "ship_order", "notify"]


def test_raise_pause_resume_terminate_purge(api: httpx.Client, settings: Settings) -> None:
    instance = api.post(f"{BASE}/waiting_workflow/start").json()["instanceID"]
    assert poll(api, instance, {"RUNNING"})["runtimeStatus"] == "RUNNING"
    assert api.post(f"{BASE}/{instance}/pause").status_code == 202
    assert api.get(f"{BASE}/{instance}").json()["runtimeStatus"] == "SUSPENDED"
    assert api.post(f"{BASE}/{instance}/raiseEvent/approval", content=b'{"by": "Jane"}').status_code == 202
    wait_inbox_processed(settings, instance)  # the runtime has had the event: it holds it while suspended
    assert api.get(f"{BASE}/{instance}").json()["runtimeStatus"] == "SUSPENDED"
    assert api.post(f"{BASE}/{instance}/resume").status_code == 202
    done = poll(api, instance, {"COMPLETED"})
    assert json.loads(done["properties"]["dapr.workflow.output"]) == {"approved_by": "Jane"}

    other = api.post(f"{BASE}/waiting_workflow/start?instanceID=to-terminate").json()["instanceID"]
    poll(api, other, {"RUNNING"})
    assert api.post(f"{BASE}/{other}/purge").status_code == 409  # still running
    assert api.post(f"{BASE}/{other}/terminate", content=b'"stopped"').status_code == 202
    terminated = api.get(f"{BASE}/{other}").json()
    assert terminated["runtimeStatus"] == "TERMINATED"
    assert json.loads(terminated["properties"]["dapr.workflow.output"]) == "stopped"
    assert api.post(f"{BASE}/{other}/purge").status_code == 202
    assert api.get(f"{BASE}/{other}").status_code == 404


def test_error_answers(api: httpx.Client) -> None:
    missing = api.get(f"{BASE}/no-such-instance")
    assert missing.status_code == 404 and missing.json()["errorCode"] == "ERR_INSTANCE_ID_NOT_FOUND"
    bad_id = api.post(f"{BASE}/waiting_workflow/start", params={"instanceID": "bad id!"})
    assert bad_id.status_code == 400 and "invalid instance ID" in bad_id.json()["message"]
    bad_json = api.post(f"{BASE}/waiting_workflow/start", content=b"{not json")
    assert bad_json.status_code == 400 and bad_json.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert api.post(f"{BASE}/waiting_workflow/start?instanceID=dup-1").status_code == 202
    conflict = api.post(f"{BASE}/waiting_workflow/start?instanceID=dup-1")
    assert conflict.status_code == 409 and "already exists" in conflict.json()["message"]
    assert api.post(f"{BASE}/no-such-instance/raiseEvent/x", content=b"1").status_code == 404
    assert api.get("/healthz").json() == {"status": "ok"}
    assert "/v1.0-beta1/workflows/{component}/{name}/start" in api.get("/openapi.json").json()["paths"]


def test_token_is_required_when_configured(settings: Settings, start_runtime: Callable[..., WorkflowRuntime]) -> None:
    runtime = start_runtime(lambda r: r.register_workflow(waiting_workflow))
    runtime.settings = replace(settings, api_token="s3cret")
    port = free_port()
    server = serve_in_thread(runtime, "127.0.0.1", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            denied = http.get(f"{BASE}/anything")
            assert denied.status_code == 401 and denied.json()["errorCode"] == "ERR_UNAUTHORIZED"
            assert http.get(f"{BASE}/anything", headers={"dapr-api-token": "wrong"}).status_code == 401
            assert http.get(f"{BASE}/anything", headers={"dapr-api-token": "s3cret"}).status_code == 404
    finally:
        server.stop()
