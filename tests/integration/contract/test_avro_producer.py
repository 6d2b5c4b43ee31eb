"""A producer that knows only the .avsc files drives a workflow through the inbox and reads
its result from the status topic (schemas/README.md, "Producing commands" and "Reading results").
"""

from __future__ import annotations

import json
import uuid

from engine import WorkflowRuntime
from tests.integration.contract.wire import StatusReader, history_event, producer, send


def test_avro_start_and_raise_run_a_workflow_to_completion(
    kafka_bootstrap: str, topic_prefix: str, approval_runtime: WorkflowRuntime
) -> None:
    inbox = f"{topic_prefix}.inbox"
    instance_id = f"order-{uuid.uuid4().hex[:8]}"
    order = {"item": "book", "qty": 2}
    p = producer(kafka_bootstrap)
    status = StatusReader(kafka_bootstrap, topic_prefix)
    try:
        send(p, inbox, instance_id, history_event(instance_id, "ExecutionStarted", {
            "name": "approval", "input": json.dumps(order), "parent": None, "scheduled_start": None,
        }))
        running = status.wait_for_status(instance_id, "RUNNING")
        assert running["name"] == "approval" and json.loads(running["input"]) == order
        assert running["execution_id"], "the runtime allocates the execution ID of a start"

        send(p, inbox, instance_id, history_event(instance_id, "EventRaised", {
            "name": "approval", "data": json.dumps({"by": "alice"}),
        }))
        done = status.wait_for_status(instance_id, "COMPLETED")
        assert json.loads(done["output"]) == {"shipped": "book", "qty": 2, "approved_by": "alice"}
        assert done["failure"] is None and done["execution_id"] == running["execution_id"]

        send(p, inbox, instance_id, history_event(instance_id, "PurgeRequested", {}))
        status.wait_for_tombstone(instance_id)
    finally:
        status.close()
