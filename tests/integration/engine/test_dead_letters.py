"""Every door that refuses a record writes the same dead-letter headers (streams/dlq.py,
schemas/README.md "When a record is refused"): the inbox (orchestrator), the activity
worker, a pub/sub bridge and the JSON commands door, all through the real consumers.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from confluent_kafka import Producer

from engine import WorkflowRuntime
from engine.edges.bridge import BridgeRoute
from engine.state.config import Settings
from tests.integration.engine.test_bridge import dead_letters

# The documented contract, spelled out rather than imported: a rename must break this test.
CONTRACT = {"streams.error", "streams.error.type", "streams.source.topic", "streams.source.partition",
            "streams.source.offset"}


def test_every_door_writes_the_same_dead_letter_headers(
        settings: Settings, start_runtime: Callable[..., WorkflowRuntime]) -> None:
    payments = settings.topic("payments")
    start_runtime(lambda runtime: runtime.add_bridge(
        BridgeRoute(topic=payments, event_name="payment_received", instance_id_field="orderId")))
    refused = {
        settings.topic("inbox"): (b"inbox-junk", b"\x00\x01 not avro"),
        settings.topic("activities"): (b"task-junk", b"\x00\x01 not an activity task"),
        payments: (b"payment-junk", json.dumps({"amount": 5}).encode()),  # names no order
        settings.topic("commands"): (b"command-junk", b"{not json"),
    }
    producer = Producer({**settings.client(), "partitioner": "murmur2_random"})
    for topic, (key, value) in refused.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    del producer

    letters = dead_letters(settings, len(refused), timeout=60)
    by_source = {dict(m.headers() or [])["streams.source.topic"].decode(): m for m in letters
                 if "streams.source.topic" in dict(m.headers() or [])}
    names = {topic: sorted(name for name, _ in m.headers() or []) for topic, m in by_source.items()}
    assert set(by_source) == set(refused), (
        f"dead letters by source topic: {names}; all headers: {[m.headers() for m in letters]}")
    for topic, message in by_source.items():
        headers = dict(message.headers() or [])
        assert set(headers) == CONTRACT, f"{topic}: {sorted(headers)}"
        assert (message.key(), message.value()) == refused[topic]
        assert headers["streams.error"] and headers["streams.error.type"], headers
        assert int(headers["streams.source.partition"]) >= 0 and int(headers["streams.source.offset"]) >= 0
