"""``read_to_end``: committed records up to the end as it was, never past it, never hung."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streams.reader import read_to_end
from streams.topics import TopicSpec, ensure_topics


def transactional(bootstrap: str, name: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": name})
    producer.init_transactions(30)
    return producer


def test_reads_committed_records_of_every_partition_and_skips_aborted_ones(
        kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.read"
    ensure_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), [TopicSpec(topic, 3)])
    producer = transactional(kafka_bootstrap, f"{topic_prefix}-tx")
    for aborted in (False, True, False):
        producer.begin_transaction()
        for partition in range(3):
            for i in range(4):
                producer.produce(topic, key=b"k", value=f"{aborted}-{partition}-{i}".encode(), partition=partition)
        if aborted:
            producer.flush(10)
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
    values = [m.value().decode() for m in read_to_end({"bootstrap.servers": kafka_bootstrap}, topic)]
    assert sorted(values) == sorted([f"False-{p}-{i}" for p in range(3) for i in range(4)] * 2)
    # One partition only, in order.
    only_1 = [m.value().decode() for m in read_to_end({"bootstrap.servers": kafka_bootstrap}, topic, [1])]
    assert only_1 == [f"False-1-{i}" for i in range(4)] * 2


def test_stops_at_the_end_it_saw_and_at_an_open_transaction(
        kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.read"
    client = {"bootstrap.servers": kafka_bootstrap}
    ensure_topics(AdminClient(client), [TopicSpec(topic, 2)])
    assert list(read_to_end(client, topic)) == []  # empty: returns at once
    plain = Producer(client)
    plain.produce(topic, value=b"first", partition=0)
    plain.flush(10)
    reader = read_to_end(client, topic, timeout=5)
    first = next(reader)
    plain.produce(topic, value=b"later", partition=0)  # after the read began: not part of it
    plain.flush(10)
    assert [first.value(), *(m.value() for m in reader)] == [b"first"]

    # The end of a read_committed reader is the last stable offset: an open transaction
    # ends the read before it instead of holding it until the transaction times out.
    plain.produce(topic, value=b"committed", partition=1)
    plain.flush(10)
    open_one = transactional(kafka_bootstrap, f"{topic_prefix}-open")
    open_one.begin_transaction()
    open_one.produce(topic, value=b"open", partition=1)
    open_one.flush(10)
    assert [m.value() for m in read_to_end(client, topic, [1], timeout=5)] == [b"committed"]
    open_one.abort_transaction(30)


def test_a_missing_topic_is_named(kafka_bootstrap: str, topic_prefix: str) -> None:
    with pytest.raises(LookupError, match=f"{topic_prefix}.nothing"):
        list(read_to_end({"bootstrap.servers": kafka_bootstrap}, f"{topic_prefix}.nothing"))
