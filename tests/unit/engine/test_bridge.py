"""The pub/sub bridge's handler: external records become inbox events that say where they came from."""

from __future__ import annotations

import json
from pathlib import Path

from engine.core.history import EventRaised
from engine.edges.bridge import BridgeRoute, PubSubBridge
from engine.state.codec import decode_event
from engine.state.config import Settings
from streams import dlq
from streams.testing import HandlerHarness


def test_every_routed_record_goes_to_the_inbox_naming_its_source(tmp_path: Path) -> None:
    # No runtime and no status anywhere: whether the instance exists is the orchestrator's call.
    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="kwf", state_dir=tmp_path, process_id="t")
    bridge = PubSubBridge(settings, BridgeRoute("payments", "payment_received", instance_id_field="orderId"), 4)
    value = json.dumps({"orderId": "order-1", "amount": 25}).encode()
    routed = bridge.decode("payments", None, value)
    harness = HandlerHarness(bridge, tmp_path / "bridge-2", partition=2, input_topic="payments")
    try:
        harness.process(routed)  # offset 0
        [out] = harness.process(routed).emitted  # offset 1
    finally:
        harness.close()
    assert out.topic == "kwf.inbox" and out.key == b"order-1"
    event = decode_event(out.value)
    assert event.event == EventRaised("payment_received", json.dumps({"orderId": "order-1", "amount": 25}))
    assert out.headers == [(dlq.SOURCE_TOPIC, b"payments"), (dlq.SOURCE_PARTITION, b"2"), (dlq.SOURCE_OFFSET, b"1")]
