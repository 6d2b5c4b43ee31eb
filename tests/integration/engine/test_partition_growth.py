"""Partitions added to existing workflow topics: the runtime refuses to start on them."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions

from engine.state.config import Settings
from engine.state.topics import HISTORY, INBOX, STATUS, ensure_workflow_topics
from streams.topics import TopicError


def test_topics_grown_after_instances_were_written_are_refused(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2)
    ensure_workflow_topics(settings)
    producer = Producer({**settings.producer()})
    for i in range(20):
        producer.produce(settings.topic(HISTORY), key=f"order-{i}".encode(), value=b"x")
    assert producer.flush(30) == 0
    ensure_workflow_topics(settings)  # in place: accepted

    admin = AdminClient(settings.client())
    grown = [NewPartitions(settings.topic(name), 4) for name in (INBOX, HISTORY, STATUS)]
    for future in admin.create_partitions(grown).values():
        future.result(timeout=30)
    with pytest.raises(TopicError, match=r"has 4 partitions.*new KWF_TOPIC_PREFIX"):
        ensure_workflow_topics(settings)
