"""The real broker: topics with their configs, Avro round-trips, transactional visibility."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from streams.serde import AvroSerde, load_named_schema
from streams.topics import DAY_MS, TopicError, TopicSpec, ensure_topics

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def read_all(bootstrap: str, topic: str, expected: int, isolation: str = "read_committed",
             timeout: float = 20.0) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "isolation.level": isolation,
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    records = []
    deadline = datetime.now().timestamp() + timeout
    while datetime.now().timestamp() < deadline and len(records) < expected:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            records.append(msg)
    consumer.close()
    return records


def test_topics_created_with_partitions_and_compaction(kafka_bootstrap: str, topic_prefix: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    specs = [
        TopicSpec(f"{topic_prefix}.inbox", 8, {"retention.ms": str(7 * DAY_MS)}),
        TopicSpec(f"{topic_prefix}.status", 8, {"cleanup.policy": "compact"}),
    ]
    ensure_topics(admin, specs)
    ensure_topics(admin, specs)  # idempotent: existing topics are verified, not recreated
    meta = admin.list_topics(timeout=10).topics
    assert len(meta[f"{topic_prefix}.inbox"].partitions) == 8
    resource = ConfigResource(ConfigResource.Type.TOPIC, f"{topic_prefix}.status")
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"


def test_partition_mismatch_names_both_topics(kafka_bootstrap: str, topic_prefix: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(f"{topic_prefix}.history", 3, 1)])[f"{topic_prefix}.history"].result(timeout=30)
    specs = [TopicSpec(f"{topic_prefix}.inbox", 8), TopicSpec(f"{topic_prefix}.history", 8)]
    with pytest.raises(TopicError, match=rf"{topic_prefix}\.inbox.*{topic_prefix}\.history"):
        ensure_topics(admin, specs)


def test_avro_record_produced_is_consumed_back_equal(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.history"
    ensure_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), [TopicSpec(topic, 2)])
    serde = AvroSerde(load_named_schema(SCHEMAS, "kwf.HistoryEvent"))
    record = {"instance_id": "order-7", "execution_id": "e", "sequence": 0,
              "timestamp": datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
              "event": ("kwf.ExecutionStarted", {"name": "wf", "input": '{"a": 1}', "parent": None,
                                                 "scheduled_start": None, "propagated_history": None})}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"order-7", value=serde.encode(record))
    assert producer.flush(10) == 0
    [msg] = read_all(kafka_bootstrap, topic, 1)
    assert msg.key() == b"order-7"
    assert serde.decode(msg.value()) == record


def test_aborted_transaction_is_invisible_committed_is_visible(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.txn"
    ensure_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), [TopicSpec(topic, 1)])
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{topic_prefix}-tx"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(10)  # really on the broker before the abort, not just purged from the queue
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)
    committed = read_all(kafka_bootstrap, topic, 2, timeout=8)
    assert [m.value() for m in committed] == [b"committed"]
    uncommitted = read_all(kafka_bootstrap, topic, 2, isolation="read_uncommitted", timeout=8)
    assert sorted(m.value() for m in uncommitted) == [b"aborted", b"committed"]
