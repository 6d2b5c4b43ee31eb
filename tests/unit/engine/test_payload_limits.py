"""One payload limit (KWF_MAX_PAYLOAD_BYTES) at every door where a payload enters history.

The orchestrator's doors (the inbox, workflow outputs, child and activity inputs) are in
``test_orchestrator.py``; the client's and the commands topic's in ``test_security.py``
and ``test_commands.py``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api.client import WorkflowClient
from engine.api.http_api import create_app
from engine.core.history import TaskCompleted, TaskFailed
from engine.core.payload import PayloadTooLarge, check_size
from engine.edges.activities import ActivityOutcome
from engine.edges.bridge import BridgeRoute, PubSubBridge
from engine.edges.worker import ActivityWorker
from engine.replay.registry import Registry
from engine.state.codec import ActivityTask
from engine.state.config import Settings

LIMIT = 100
BASE = "/v1.0-beta1/workflows/dapr"


def settings() -> Settings:
    return Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="lim", partitions=4, state_dir=Path("/tmp/lim"),
                    process_id="p1", max_payload_bytes=LIMIT, kafka={"log_level": "0"})


def test_check_size_counts_utf8_bytes_and_names_what_and_the_limit() -> None:
    check_size(None, "input", LIMIT)
    check_size("x" * LIMIT, "input", LIMIT)
    check_size(b"x" * LIMIT, "input", LIMIT)
    with pytest.raises(PayloadTooLarge, match=r"the event data is 102 bytes of JSON; the limit is 100 bytes "
                                              r"\(KWF_MAX_PAYLOAD_BYTES\)"):
        check_size("é" * 51, "event data", LIMIT)  # 51 characters, 102 bytes


def test_an_activity_result_over_the_limit_fails_the_task_with_payload_too_large() -> None:
    worker = ActivityWorker(settings(), Registry())
    task = ActivityTask("wf-1", "e1", 3, "fetch", None, "wf", datetime.now(UTC))
    failed = worker._result(task, ActivityOutcome(json.dumps("r" * LIMIT)))
    assert isinstance(failed, TaskFailed) and failed.task_id == 3
    assert failed.failure.type == "PayloadTooLarge"
    assert "result of activity 'fetch'" in failed.failure.message and "KWF_MAX_PAYLOAD_BYTES" in failed.failure.message
    assert worker._result(task, ActivityOutcome('"small"')) == TaskCompleted(3, '"small"')


def test_a_bridge_record_over_the_limit_is_refused_before_history() -> None:
    bridge = PubSubBridge(settings(), BridgeRoute("payments", "paid", instance_id_field="order"), 4)
    small = json.dumps({"order": "o-1", "amount": 5}).encode()
    assert bridge.decode("payments", None, small).instance_id == "o-1"
    big = json.dumps({"order": "o-1", "note": "n" * LIMIT}).encode()
    # decode raising sends the record to the dead-letter topic with the error's type and message.
    with pytest.raises(PayloadTooLarge, match="event data is 1\\d\\d bytes .* the limit is 100"):
        bridge.decode("payments", None, big)


def api() -> TestClient:
    return TestClient(create_app(WorkflowClient(settings=settings())))


def test_a_chunked_body_is_refused_while_it_is_read() -> None:
    """No Content-Length: the API stops reading at the limit, it does not take the body whole first."""
    app = create_app(WorkflowClient(settings=settings()))
    chunk = b"x" * 40
    total_chunks = 1000
    sent = 0
    answer: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        return {"type": "http.request", "body": chunk, "more_body": sent < total_chunks}

    async def send(message: dict[str, Any]) -> None:
        answer.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": f"{BASE}/wf/start", "raw_path": f"{BASE}/wf/start".encode(), "query_string": b"",
             "headers": [(b"transfer-encoding", b"chunked"), (b"host", b"test")], "server": ("test", 80),
             "client": ("test", 1), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in answer if m["type"] == "http.response.start")
    body = json.loads(b"".join(m.get("body", b"") for m in answer if m["type"] == "http.response.body"))
    assert start["status"] == 413, body
    assert body["errorCode"] == "ERR_PAYLOAD_TOO_LARGE" and "the limit is 100 bytes" in body["message"]
    assert sent <= LIMIT // len(chunk) + 1, f"read {sent} chunks of {total_chunks} before refusing"


def test_paths_under_ui_that_are_no_file_answer_404_or_405_in_the_api_shape() -> None:
    client = api()
    assert client.get("/ui/").status_code == 200
    for method, path, status in [("GET", "/ui/nope.js", 404), ("GET", "/ui/x/y", 404), ("HEAD", "/ui/nope", 404),
                                 ("POST", "/ui/", 405), ("DELETE", "/ui/app.js", 405), ("PUT", "/ui/x", 405),
                                 ("GET", "/nowhere", 404), ("DELETE", "/healthz", 405)]:
        response = client.request(method, path)
        assert response.status_code == status, (method, path, response.status_code, response.text)
        if method != "HEAD":
            body = response.json()
            assert set(body) == {"errorCode", "message"}, (method, path, body)
            assert body["errorCode"] == ("ERR_NOT_FOUND" if status == 404 else "ERR_METHOD_NOT_ALLOWED")


def test_the_ui_page_works_with_a_token_configured_and_never_reads_one_from_the_url() -> None:
    client = TestClient(create_app(WorkflowClient(settings=replace(settings(), api_token="s3cret"))))
    assert client.get("/ui/").status_code == 200  # the page loads without the token
    script = client.get("/ui/app.js").text
    assert "sessionStorage" in script
    assert "searchParams.get(\"token\")" not in script and "token=" not in script
