"""The runtime's topics (ARCHITECTURE.md, "Topics and records")."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from engine.core.partitioner import partition_for
from engine.state.config import Settings
from engine.state.history_log import instance_of
from streams.topics import DAY_MS, TopicError, TopicSpec, ensure_topics

INBOX, HISTORY, ACTIVITIES, STATUS, DLQ = "inbox", "history", "activities", "status", "dlq"
# Reading one record from each history partition; a broker that cannot answer in this
# long fails the start anyway.
PLACEMENT_CHECK_TIMEOUT_S = 30.0
# A fresh topic's partitions have no leader for a moment after creation.
RETRY_CODES = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                         KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT})


# Every topic the runtime creates is stored compressed; producers compress with the same
# codec, so the broker keeps their batches as they are.
COMPRESSION = {"compression.type": "zstd"}
# The compacted topics roll a segment a day and compact it within a day after that (the
# active segment is never compacted), and keep tombstones a day so that a store that was
# briefly behind still sees them: a purged instance leaves them within about two days.
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": str(DAY_MS),
    "max.compaction.lag.ms": str(DAY_MS),
    "delete.retention.ms": str(DAY_MS),
    **COMPRESSION,
}


def workflow_topics(settings: Settings) -> list[TopicSpec]:
    """Inbox, history and status share keys (instance IDs), so they are co-partitioned."""
    n = settings.partitions
    rf = settings.replication_factor
    return [
        TopicSpec(settings.topic(INBOX), n, {"retention.ms": str(7 * DAY_MS), **COMPRESSION}, rf),
        # The history is the truth and the store's changelog: compacted on one key per event,
        # it keeps each instance's current execution until a purge (engine.state.history_log).
        TopicSpec(settings.topic(HISTORY), n, {**COMPACTED, "retention.ms": "-1", "retention.bytes": "-1"}, rf),
        TopicSpec(settings.topic(STATUS), n, dict(COMPACTED), rf),
        TopicSpec(settings.topic(ACTIVITIES), n, {"retention.ms": str(7 * DAY_MS), **COMPRESSION}, rf,
                  co_partitioned=False),
        TopicSpec(settings.topic(DLQ), n, {"retention.ms": str(30 * DAY_MS), **COMPRESSION}, rf, co_partitioned=False),
    ]


def ensure_workflow_topics(settings: Settings) -> None:
    """Create the runtime's topics where missing; verify the co-partitioned ones agree and
    that no partitions were added to them after instances were written (``misplaced_partitions``).
    """
    admin = AdminClient(settings.client())
    ensure_topics(admin, workflow_topics(settings))
    verify_history_placement(settings)


def ensure_app_topics(settings: Settings) -> int:
    """Create the workflow topics of ``settings``' application where missing (with the specs
    its own runtime would use); return the partition count of its inbox.

    Its own runtime checks their history's placement when it starts; a caller only writes.
    """
    admin = AdminClient(settings.client())
    ensure_topics(admin, workflow_topics(settings))
    inbox = settings.topic(INBOX)
    return len(admin.list_topics(inbox, timeout=PLACEMENT_CHECK_TIMEOUT_S).topics[inbox].partitions)


def misplaced_partitions(first_keys: Mapping[int, bytes], partitions: int) -> list[int]:
    """Partitions whose first history record's key belongs to another partition at today's count.

    Every record of an instance is placed by murmur2 of its ID over the partition count of
    its time (a history key is the ID and the event's sequence, ``history_log.event_key``);
    a first record that today's count would place elsewhere means the topics grew after it
    was written, and its instance's events would now go to a partition whose history and
    store know nothing of it.
    """
    return sorted(p for p, key in first_keys.items() if partition_for(instance_of(key) or key, partitions) != p)


def verify_history_placement(settings: Settings) -> None:
    """Refuse topics that grew after instances were written: see ``misplaced_partitions``.

    Raises:
        TopicError: naming the topic, its partition count and what to do.
    """
    topic = settings.topic(HISTORY)
    consumer = Consumer({**settings.client(), "group.id": f"{settings.app_prefix}.placement-{uuid.uuid4().hex}",
                         "enable.auto.commit": "false", "isolation.level": "read_uncommitted"})
    try:
        partitions = list(consumer.list_topics(topic, timeout=PLACEMENT_CHECK_TIMEOUT_S).topics[topic].partitions)
        deadline = time.monotonic() + PLACEMENT_CHECK_TIMEOUT_S
        starts = {}
        for p in partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p), deadline)
            if high > low:
                starts[p] = low
        if not starts:
            return
        consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
        first_keys: dict[int, bytes] = {}
        while len(first_keys) < len(starts) and time.monotonic() < deadline:
            for message in consumer.consume(len(starts), 0.2):
                if message.error() is None and message.key() is not None:
                    first_keys.setdefault(message.partition(), message.key())
                    consumer.pause([TopicPartition(topic, message.partition())])
    finally:
        consumer.close()
    wrong = misplaced_partitions(first_keys, len(partitions))
    if wrong:
        raise TopicError(
            f"{topic} has {len(partitions)} partitions, but the first records of partitions {wrong} were "
            "placed when it had fewer: partitions were added after instances were written, and their "
            "events would now land where their history is not. Growing the partition count of existing "
            "topics is not supported; start a new KWF_TOPIC_PREFIX with the new KWF_PARTITIONS instead "
            "(README, \"Partitions\")."
        )


def _watermarks(consumer: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """A partition's (low, high) offsets; a leader not elected yet (a fresh topic) is waited for."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=max(1.0, deadline - time.monotonic()))
            return low, high
        except KafkaException as err:
            if not err.args[0].retriable() and err.args[0].code() not in RETRY_CODES or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
