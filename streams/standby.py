"""Standby replicas: warm copies of partitions another process owns (Kafka Streams'
``num.standby.replicas``).

A process that takes over a partition restores its store from the changelog, from the
offset the store last applied. A store the process never held, or held long ago, makes
that the whole changelog partition, which grows with the history. With standby replicas
each process follows the changelog of some partitions it does not own into stores in the
same folders the owner would use, so a takeover finds the store warm and reads only the
tail.

Which partitions a process follows is decided from the group's current assignment
(``standby_partitions``, a plain function): each partition is followed by the
``replicas`` members after its owner, in the order of their member IDs, so with two
processes and one replica each follows exactly the other's partitions.

Standby records are folded in the processor's own thread, between transactions
(``catch_up``, a bounded number of records per turn, fewer in turns that processed input),
so the handler's ``apply_changelog`` is never called concurrently with its processing, and
a burst of work is slowed little by the copy (which lags in a long burst; a takeover then
reads the lag); the consumer fetches on librdkafka's threads meanwhile. When the processor is assigned a partition it
first ``release``s it: the standby store is closed and the processor opens the folder.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.restore import ApplyChangelog, plan_restore
from streams.store import PartitionStore

log = logging.getLogger("streams.standby")

# How often the group's assignment is read again when this process saw no rebalance (it is
# read at once after one, ``refresh_soon``): another member's rebalance can change which
# partitions to follow, and a takeover within this after it reads a longer tail.
REFRESH_INTERVAL_S = 5.0
# A describe that has not answered in this long is given up and asked again.
DESCRIBE_TIMEOUT_S = 10.0
# Records folded per processor turn that found no input: bounds how long new input waits.
CATCH_UP_RECORDS = 500
# Per turn that processed input: a fifth of a full batch keeps the copy close behind a
# steady load while adding little to a burst's turns (their transactions time out at 10 s).
CATCH_UP_RECORDS_BUSY = 100
# Looking up a partition's offsets before following it.
WATERMARKS_TIMEOUT_S = 5.0


def standby_partitions(assignments: Mapping[str, Collection[int]], me: str, replicas: int) -> set[int]:
    """The partitions ``me`` follows: those whose owner is within ``replicas`` members before it.

    Args:
        assignments: Each member's ID and the partitions it owns now.
        me: This process's member ID.
        replicas: Standby copies per partition (0: none).
    """
    members = sorted(assignments)
    if replicas <= 0 or me not in assignments or len(members) < 2:
        return set()
    position = members.index(me)
    followed: set[int] = set()
    for distance in range(1, min(replicas, len(members) - 1) + 1):
        owner = members[(position - distance) % len(members)]
        followed.update(assignments[owner])
    return followed - set(assignments[me])


class StandbyReplicas:
    """Follows the changelog of partitions this process does not own.

    Args:
        client: Base librdkafka settings.
        changelog_topic: The changelog; its partition p is the input's partition p.
        group_id: The processors' consumer group, whose assignment is read.
        member_id: This process's ``group.instance.id``.
        replicas: Standby copies per partition.
        store_folder: The folder of a partition's store (the same the owner uses).
    """

    def __init__(self, client: Mapping[str, str], changelog_topic: str, group_id: str, member_id: str,
                 replicas: int, store_folder: Callable[[int], Path]) -> None:
        self.topic = changelog_topic
        self._group_id = group_id
        self._member_id = member_id
        self._replicas = replicas
        self._store_folder = store_folder
        self._client = dict(client)
        # Made for each describe and dropped once it answered or was given up: a long-lived
        # admin client whose group request is pending while its broker goes away and comes
        # back can abort the process (librdkafka issue 4605, streams/fencing.py).
        self._admin: AdminClient | None = None
        self._consumer = Consumer({
            **client,
            # Assigned partitions only: the group id is required by the client, never joined.
            "group.id": f"streams-standby-{changelog_topic}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        })
        self._stores: dict[int, PartitionStore] = {}
        self._describing: concurrent.futures.Future | None = None
        self._asked_at = 0.0
        self._refreshed_at = float("-inf")

    @property
    def followed(self) -> set[int]:
        """The partitions followed now."""
        return set(self._stores)

    def refresh(self, owned: Collection[int]) -> None:
        """Read the group's assignment now and then (without waiting) and follow what it says.

        Args:
            owned: The partitions the processor holds or is restoring: never followed.
        """
        now = time.monotonic()
        if self._describing is None:
            if now - self._refreshed_at < REFRESH_INTERVAL_S:
                return
            self._admin = self._admin_client()
            self._describing = self._admin.describe_consumer_groups(
                [self._group_id], request_timeout=DESCRIBE_TIMEOUT_S)[self._group_id]
            self._asked_at = now
            return
        if not self._describing.done():
            if now - self._asked_at > DESCRIBE_TIMEOUT_S:
                self._describing = self._admin = None
            return
        future, self._describing, self._admin = self._describing, None, None
        self._refreshed_at = now
        try:
            group = future.result()
        except KafkaException as err:
            log.info("could not read the assignment of %s: %s", self._group_id, err.args[0].str())
            return
        assignments = {
            member.group_instance_id: [tp.partition for tp in member.assignment.topic_partitions]
            for member in group.members if member.group_instance_id
        }
        self._follow(standby_partitions(assignments, self._member_id, self._replicas) - set(owned))

    def _admin_client(self) -> AdminClient:
        client = self._client  # the processor's client settings (security included)
        return AdminClient(dict(client))

    def refresh_soon(self) -> None:
        """Read the assignment again at the next ``refresh``: a rebalance has changed it (an
        answer asked for before the rebalance is dropped)."""
        self._describing = None
        self._refreshed_at = float("-inf")

    def _follow(self, wanted: set[int]) -> None:
        stale = set(self._stores) - wanted
        if stale:
            self.release(stale)
        fresh = sorted(wanted - set(self._stores))
        if not fresh:
            return
        starts = []
        for partition in fresh:
            store = PartitionStore.open(self._store_folder(partition))
            try:
                starts.append(TopicPartition(self.topic, partition, self._start(partition, store)))
            except BaseException:
                store.close()
                raise
            self._stores[partition] = store
        self._consumer.incremental_assign(starts)
        log.info("following %s partitions %s as a standby", self.topic, fresh)

    def _start(self, partition: int, store: PartitionStore) -> int:
        """Where to read from: after the store's last record, or from the start when it does not
        match the log (the same decision as a restore's)."""
        applied = store.changelog_offset
        if applied is None:
            return OFFSET_BEGINNING
        low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                         timeout=WATERMARKS_TIMEOUT_S, cached=False)
        plan = plan_restore(applied, low, high)
        if plan is not None and plan.wipe:
            store.wipe()
            return low
        return applied + 1

    def release(self, partitions: Collection[int]) -> None:
        """Stop following ``partitions`` and close their stores (the processor takes them)."""
        dropped = [p for p in partitions if p in self._stores]
        if not dropped:
            return
        for partition in dropped:
            self._stores.pop(partition).close()
        try:
            self._consumer.incremental_unassign([TopicPartition(self.topic, p) for p in dropped])
        except KafkaException as err:
            log.info("unassigning standby partitions %s: %s", dropped, err.args[0].str())
        log.info("no longer following %s partitions %s", self.topic, sorted(dropped))

    def catch_up(self, apply: ApplyChangelog, limit: int = CATCH_UP_RECORDS) -> int:
        """Fold what has arrived (up to ``limit`` records) without waiting; returns how many."""
        if not self._stores:
            return 0
        messages = self._consumer.consume(limit, 0)
        by_partition: dict[int, list] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.info("standby consumer of %s: %s", self.topic, error.str())
                continue
            if message.partition() in self._stores:  # released since it was fetched: skipped
                by_partition.setdefault(message.partition(), []).append(message)
        for partition, records in by_partition.items():
            store = self._stores[partition]
            batch = store.batch()
            for record in records:
                apply(batch, store, record.key(), record.value())
            store.write(batch, changelog_offset=records[-1].offset())
        return sum(len(records) for records in by_partition.values())

    def close(self) -> None:
        """Close every standby store and the consumer."""
        self.release(list(self._stores))
        self._describing = self._admin = None
        self._consumer.close()
