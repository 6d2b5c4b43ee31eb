"""The pub/sub bridge's handler: external records become inbox events that say where they came from."""

from __future__ import annotations

import json
from pathlib import Path

from engine.bridge import BridgeRoute, PubSubBridge
from engine.codec import decode_event
from engine.config import Settings
from engine.history import EventRaised
from streams.handler import Record
from streams.processor import DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC
from streams.store import PartitionStore
from tests.unit.engine.orchestrator_harness import RecordingBatch


def test_every_routed_record_goes_to_the_inbox_naming_its_source(tmp_path: Path) -> None:
    # No runtime and no status anywhere: whether the instance exists is the orchestrator's call.
    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="kwf", state_dir=tmp_path, process_id="t")
    bridge = PubSubBridge(settings, BridgeRoute("payments", "payment_received", instance_id_field="orderId"), 4)
    value = json.dumps({"orderId": "order-1", "amount": 25}).encode()
    routed = bridge.decode("payments", None, value)
    store = PartitionStore.open(tmp_path / "bridge-0")
    try:
        batch = RecordingBatch(2, store, [Record("payments", 2, 41, None, routed, 0, None)])
        bridge.process(batch)  # type: ignore[arg-type]
    finally:
        store.close()
    [out] = batch.emitted
    assert out.topic == "kwf.inbox" and out.key == b"order-1"
    event = decode_event(out.value)
    assert event.event == EventRaised("payment_received", json.dumps({"orderId": "order-1", "amount": 25}))
    assert out.headers == [(DLQ_SOURCE_TOPIC, b"payments"), (DLQ_SOURCE_PARTITION, b"2"), (DLQ_SOURCE_OFFSET, b"41")]
