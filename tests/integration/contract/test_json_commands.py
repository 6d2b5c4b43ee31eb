"""JSON commands on ``{prefix}.commands`` drive workflows through the commands door; malformed
ones land in ``{prefix}.dlq`` with the reason. The test side is plain confluent-kafka.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Producer

from engine import WorkflowRuntime
from tests.integration.contract.wire import WAIT_S, StatusReader, TopicReader, producer


def command(p: Producer, prefix: str, key: str | None, body: dict[str, Any] | bytes) -> None:
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    p.produce(f"{prefix}.commands", key=None if key is None else key.encode(), value=value)
    assert p.flush(30) == 0, "command not delivered"


def test_json_commands_run_and_manage_workflows(
    kafka_bootstrap: str, topic_prefix: str, approval_runtime: WorkflowRuntime, commands_door: WorkflowRuntime
) -> None:
    p = producer(kafka_bootstrap)
    status = StatusReader(kafka_bootstrap, topic_prefix)
    order_id, held_id = f"order-{uuid.uuid4().hex[:8]}", f"held-{uuid.uuid4().hex[:8]}"
    try:
        # Start and approve: the workflow runs to completion.
        command(p, topic_prefix, order_id, {"type": "start", "workflow": "approval", "instanceID": order_id,
                                            "input": {"item": "lamp", "qty": 1}})
        command(p, topic_prefix, order_id, {"type": "raise", "instanceID": order_id, "event": "Approval",
                                            "data": {"by": "bob"}})
        done = status.wait_for_status(order_id, "COMPLETED")
        assert json.loads(done["output"]) == {"shipped": "lamp", "qty": 1, "approved_by": "bob"}

        # Suspend, resume, terminate with an output, purge (the key alone names the instance).
        command(p, topic_prefix, held_id, {"type": "start", "workflow": "approval", "input": {"item": "x", "qty": 0}})
        status.wait_for_status(held_id, "RUNNING")
        command(p, topic_prefix, held_id, {"type": "suspend", "reason": "maintenance"})
        status.wait_for_status(held_id, "SUSPENDED")
        command(p, topic_prefix, held_id, {"type": "resume"})
        status.wait_for_status(held_id, "RUNNING")
        command(p, topic_prefix, held_id, {"type": "terminate", "output": "cancelled"})
        terminated = status.wait_for_status(held_id, "TERMINATED")
        assert json.loads(terminated["output"]) == "cancelled"
        command(p, topic_prefix, held_id, {"type": "purge"})
        status.wait_for_tombstone(held_id)
    finally:
        status.close()


def test_malformed_commands_go_to_the_dlq_with_the_reason(
    kafka_bootstrap: str, topic_prefix: str, commands_door: WorkflowRuntime
) -> None:
    p = producer(kafka_bootstrap)
    command(p, topic_prefix, "bad-1", b"{not json")
    command(p, topic_prefix, "bad-2", {"type": "launch", "instanceID": "bad-2"})
    command(p, topic_prefix, "bad 3", {"type": "purge"})
    expected = {
        "bad-1": "the value is not JSON",
        "bad-2": "unknown command type 'launch'",
        "bad 3": "invalid instance ID 'bad 3'",
    }
    dlq = TopicReader(kafka_bootstrap, f"{topic_prefix}.dlq")
    found: dict[str, dict[str, bytes]] = {}
    deadline = time.monotonic() + WAIT_S
    try:
        while set(found) != set(expected) and time.monotonic() < deadline:
            for message in dlq.batch():
                found[message.key().decode()] = {k: v for k, v in message.headers() or []}
    finally:
        dlq.close()
    assert set(found) == set(expected), f"in the DLQ: {sorted(found)}"
    for key, reason in expected.items():
        headers = found[key]
        assert reason in headers["streams.error"].decode(), headers
        assert headers["streams.error.type"] == b"MalformedCommand"
        assert headers["streams.source.topic"] == f"{topic_prefix}.commands".encode()
