"""Create and verify topics with AdminClient.

A topic set is a list of ``TopicSpec``; topics that share keys (co-partitioned) must
have the same partition count, or records of one key would land in different
partitions. Missing topics are created; existing ones are checked, never altered.

Replication: a spec without a replication factor gets three replicas where three or more
brokers answer, else one; with three or more replicas ``min.insync.replicas`` is 2, so an
acknowledged (``acks=all``) write survives the loss of any one broker and writes go on
while one is down. A factor the cluster cannot give is refused before anything is created.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

DAY_MS = 24 * 3600 * 1000
# Topic creation on a busy single broker can take a few seconds per batch.
ADMIN_TIMEOUT_S = 30.0


class TopicError(RuntimeError):
    """Topics are missing, mismatched or could not be created; the message names them."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, partition count and topic-level configs.

    Attributes:
        replication_factor: Copies of each partition; None: what the cluster can give, up to
            three (``replication_plan``).
        co_partitioned: Topics with this flag must all have the same partition count.
    """

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int | None = None
    co_partitioned: bool = True


# Three replicas tolerate one broker lost with min.insync.replicas=2; more buy little here.
DEFAULT_REPLICAS = 3


def replication_plan(requested: int | None, brokers: int) -> tuple[int, int]:
    """The replication factor and ``min.insync.replicas`` for a topic on ``brokers`` brokers.

    Raises:
        TopicError: ``requested`` is more than the cluster has brokers, or less than one.
    """
    replicas = requested if requested is not None else (DEFAULT_REPLICAS if brokers >= DEFAULT_REPLICAS else 1)
    if replicas < 1:
        raise TopicError(f"a replication factor must be 1 or more, got {replicas}")
    if replicas > brokers:
        raise TopicError(
            f"a replication factor of {replicas} needs {replicas} brokers, but the cluster has {brokers}: "
            f"set KWF_REPLICATION_FACTOR to {brokers} or less, or add brokers (kwf broker start --nodes 3)"
        )
    return replicas, 2 if replicas >= 3 else 1


def ensure_topics(admin: AdminClient, specs: Sequence[TopicSpec]) -> None:
    """Create the topics that are missing and verify the partition counts of the rest.

    Raises:
        TopicError: creation failed, the cluster cannot give a replication factor, or
            co-partitioned topics disagree on their partition count.
    """
    metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    existing = metadata.topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        brokers = len(metadata.brokers)
        new_topics = []
        for spec in missing:
            replicas, min_isr = replication_plan(spec.replication_factor, brokers)
            config = {"min.insync.replicas": str(min_isr), **spec.config}
            new_topics.append(NewTopic(spec.name, spec.partitions, replicas, config=config))
        futures = admin.create_topics(new_topics, operation_timeout=ADMIN_TIMEOUT_S)
        for name, future in futures.items():
            try:
                future.result(timeout=ADMIN_TIMEOUT_S)
            except KafkaException as err:
                # Another process may have created it a moment ago: that is fine.
                if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise TopicError(f"could not create topic {name}: {err.args[0].str()}") from err
        existing = wait_for_metadata(admin, [s.name for s in specs])
    verify_partition_counts(specs, {name: len(meta.partitions) for name, meta in existing.items()})


def wait_for_metadata(admin: AdminClient, names: Sequence[str]) -> dict:
    """Metadata once every named topic shows up with all its partitions led.

    A fresh topic reaches the broker's metadata cache a moment after CreateTopics answers.
    """
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while True:
        topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        ready = all(
            n in topics and topics[n].partitions and all(p.leader >= 0 for p in topics[n].partitions.values())
            for n in names
        )
        if ready or time.monotonic() > deadline:
            return topics
        time.sleep(0.1)


def verify_partition_counts(specs: Sequence[TopicSpec], actual: dict[str, int]) -> None:
    """Check that co-partitioned topics agree; a plain function so it is easy to test."""
    group = [s for s in specs if s.co_partitioned]
    if not group:
        return
    first = group[0]
    for spec in group:
        count = actual.get(spec.name)
        if count is None:
            raise TopicError(f"topic {spec.name} does not exist")
        if count != actual[first.name]:
            raise TopicError(
                f"topics {first.name} ({actual[first.name]} partitions) and {spec.name} ({count} partitions) "
                "must have the same partition count: records of one key must land in the same partition "
                "of both. Recreate one of them, or use a new topic prefix."
            )


def delete_topics_with_prefix(admin: AdminClient, prefix: str) -> None:
    """Delete every topic named ``{prefix}.*``; cleanup only, so failures are ignored."""
    doomed = [t for t in admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics if t.startswith(prefix + ".")]
    if not doomed:
        return
    for future in admin.delete_topics(doomed, operation_timeout=ADMIN_TIMEOUT_S).values():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
        except KafkaException:
            pass  # already gone, or the broker is busy: the next run uses another prefix
