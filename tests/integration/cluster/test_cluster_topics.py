"""Topics on a 3-node cluster: three replicas, min.insync.replicas=2, a refusal for four."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from engine.state.config import Settings
from engine.state.topics import HISTORY, workflow_topics
from streams.broker import LocalCluster
from streams.topics import TopicError, TopicSpec, delete_topics_with_prefix, ensure_topics

pytestmark = pytest.mark.slow


def test_workflow_topics_get_three_replicas_and_two_in_sync_and_four_are_refused(kafka_cluster: LocalCluster) -> None:
    kafka_cluster.start()  # all three answer: a node a fault test killed is back
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    settings = Settings(bootstrap_servers=kafka_cluster.bootstrap, topic_prefix=f"c{uuid.uuid4().hex[:8]}")
    try:
        ensure_topics(admin, workflow_topics(settings))
        history = settings.topic(HISTORY)
        assert replica_counts(admin, history) == {3}
        assert topic_config(admin, history)["min.insync.replicas"].value == "2"
        with pytest.raises(TopicError, match="needs 4 brokers, but the cluster has 3"):
            ensure_topics(admin, [TopicSpec(settings.topic("four"), 1, replication_factor=4)])
        assert settings.topic("four") not in admin.list_topics(timeout=30).topics
    finally:
        delete_topics_with_prefix(admin, settings.topic_prefix)


def replica_counts(admin: AdminClient, topic: str, timeout: float = 30.0) -> set[int]:
    """The replica counts of the topic's partitions, once the broker answering lists them (a
    node restarted by a fault test lists a new topic without partitions for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return {len(p.replicas) for p in meta.partitions.values()}
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} is not listed with its partitions after {timeout:.0f} s: {meta}")
        time.sleep(0.5)


def topic_config(admin: AdminClient, topic: str, timeout: float = 30.0) -> dict[str, Any]:
    """The topic's configuration, asked again while the broker answering has not learned of
    the new topic yet (a node restarted by a fault test catches up on metadata a moment later)."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + timeout
    while True:
        try:
            configs: dict[str, Any] = admin.describe_configs([resource])[resource].result(timeout=timeout)
            return configs
        except KafkaException as err:
            if err.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_internal_topics_are_replicated(kafka_cluster: LocalCluster) -> None:
    kafka_cluster.start()
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    topics = admin.list_topics(timeout=30).topics
    # The transaction state log appears with the first transactional producer; offsets with the first group.
    for name in ("__consumer_offsets", "__transaction_state"):
        if name in topics:
            assert {len(p.replicas) for p in topics[name].partitions.values()} == {3}, name
