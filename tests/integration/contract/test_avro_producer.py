"""A producer that knows only the .avsc files drives a workflow through the inbox and reads
its result from the status topic (schemas/README.md, "Producing commands" and "Reading results").
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from engine import WorkflowRuntime
from tests.integration.contract.wire import SCHEMAS, StatusReader, encode, history_event, producer, send

README = SCHEMAS / "README.md"
# The worked example of schemas/README.md.
EXAMPLE: dict[str, Any] = {
    "instance_id": "order-1", "execution_id": "", "sequence": -1,
    "timestamp": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    "event": ("kwf.ExecutionStarted", {"name": "order_processing", "input": '{"item":"book","qty":2}',
                                       "parent": None, "scheduled_start": None}),
}


def test_the_readme_example_is_the_contracts_encoding() -> None:
    text = README.read_text()
    expected = encode("kwf.HistoryEvent", EXAMPLE)
    assert expected.hex(" ") in text, "the hex dump in schemas/README.md is out of date"
    # The README's fastavro snippet writes the same bytes.
    snippet = re.search(r"```python\n(.*?)```", text, re.S)
    assert snippet is not None
    scope: dict[str, Any] = {}
    exec(compile(snippet.group(1).replace('"schemas/', f'"{SCHEMAS}/'), str(README), "exec"), scope)
    assert scope["encode"](EXAMPLE) == expected


def test_the_runtime_encodes_the_readme_example_the_same_way() -> None:
    from engine.core.history import ExecutionStarted, HistoryEvent
    from engine.state.codec import encode_event

    start = ExecutionStarted("order_processing", '{"item":"book","qty":2}')
    ours = encode_event(HistoryEvent("order-1", "", -1, EXAMPLE["timestamp"], start))
    assert ours[:10].hex(" ") == encode("kwf.HistoryEvent", EXAMPLE)[:10].hex(" "), \
        "the runtime's single-object header is not the Avro spec's (fingerprint byte order?)"
    assert ours == encode("kwf.HistoryEvent", EXAMPLE)


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
