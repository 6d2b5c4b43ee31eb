"""Fencing the producer of a process that died holding partitions now taken over.

A process killed in the middle of a transaction leaves it open, and read_committed
readers of every partition it wrote to (the changelog a restore reads, the input) stop at
its first record until the broker aborts it after ``transaction.timeout.ms``. The process
that takes the dead one's partitions can abort it at once instead: a producer that
registers the same transactional ID (``init_transactions``) bumps its epoch, which fences
the old producer and aborts what it left open (KIP-98's zombie fencing, done by the taker).

To know whose ID to fence, every transaction commits its input offsets with the committing
transactional ID as the offset metadata (``owner_metadata``). When partitions are
assigned, the taker reads that metadata (without waiting for pending commits) and the
group's live members (each member's ``group.instance.id`` is its transactional ID), and
fences the owners that have left the group (``owners_to_fence``). An owner still in the
group gave its partitions up in a rebalance, between transactions, so nothing of it is in
the way; fencing it would only abort its current work.

``owners_to_fence`` is the decision, a plain function; ``DepartedOwnerFencer`` does the I/O.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

log = logging.getLogger("streams.fencing")

# Marks offset metadata written by a processor, so metadata of other origins is never read
# as a transactional ID.
OWNER_PREFIX = "txn:"
# Reading the committed offsets and the group takes milliseconds; a broker that does not
# answer within this is moving leaders, and the dead transaction is left to its timeout.
ADMIN_TIMEOUT_S = 5.0
# init_transactions on the dead ID waits for the coordinator to write the abort markers.
FENCE_TIMEOUT_S = 10.0


def owner_metadata(transactional_id: str) -> str:
    """The offset metadata a transaction of ``transactional_id`` commits with."""
    return f"{OWNER_PREFIX}{transactional_id}"


def owner_of(metadata: str | None) -> str | None:
    """The transactional ID named by offset ``metadata`` (None: not written by a processor)."""
    if not metadata or not metadata.startswith(OWNER_PREFIX):
        return None
    return metadata[len(OWNER_PREFIX):] or None


def owners_to_fence(owners: Iterable[str | None], own_id: str, live_ids: Iterable[str]) -> set[str]:
    """The last committers of the taken partitions that are neither this process nor in the group.

    Args:
        owners: The transactional ID of each taken partition's last commit (None: unknown).
        own_id: This process's transactional ID (its own predecessor was fenced at start).
        live_ids: The ``group.instance.id`` of every current member of the group.
    """
    live = set(live_ids)
    return {owner for owner in owners if owner is not None and owner != own_id and owner not in live}


class DepartedOwnerFencer:
    """Fences the transactional producers of a group's departed members.

    Args:
        client: Base librdkafka settings (bootstrap servers, security).
        group_id: The consumer group whose offsets and members are read.
        transaction_timeout_ms: For the fencing producer; the broker refuses one above its maximum.
    """

    def __init__(self, client: Mapping[str, str], group_id: str, transaction_timeout_ms: int) -> None:
        self._client = dict(client)
        self._group_id = group_id
        self._transaction_timeout_ms = transaction_timeout_ms
        self._admin = AdminClient(dict(client))

    def fence_departed(self, topic: str, partitions: list[int], own_id: str) -> set[str]:
        """Fence the departed owners of ``topic``'s ``partitions``; returns the IDs fenced.

        Never raises: a fence that fails leaves the dead transaction to its timeout, which
        is slower but as safe.
        """
        try:
            # Both asked at once: the taken partitions wait for the answers.
            members = self._admin.describe_consumer_groups([self._group_id],
                                                           request_timeout=ADMIN_TIMEOUT_S)[self._group_id]
            owners = self._last_owners(topic, partitions)
            dead = owners_to_fence(owners.values(), own_id, self._live_ids(members)) if owners else set()
        except (KafkaException, TimeoutError, OSError) as err:
            log.warning("could not read who owned %s partitions %s before: %s", topic, partitions, err)
            return set()
        for transactional_id in sorted(dead):
            self._fence(transactional_id)
        return dead

    def _last_owners(self, topic: str, partitions: list[int]) -> dict[int, str | None]:
        request = ConsumerGroupTopicPartitions(self._group_id, [TopicPartition(topic, p) for p in partitions])
        # require_stable=False: a pending commit of the dead transaction would make a
        # stable read wait for the very abort this is about to cause.
        future = self._admin.list_consumer_group_offsets([request], require_stable=False,
                                                         request_timeout=ADMIN_TIMEOUT_S)[self._group_id]
        listed = future.result(timeout=ADMIN_TIMEOUT_S)
        return {tp.partition: owner_of(tp.metadata) for tp in listed.topic_partitions or []}

    @staticmethod
    def _live_ids(members: concurrent.futures.Future) -> set[str]:
        group = members.result(timeout=ADMIN_TIMEOUT_S)
        return {member.group_instance_id for member in group.members if member.group_instance_id}

    def _fence(self, transactional_id: str) -> None:
        began = time.monotonic()
        settings: dict[str, Any] = {
            **self._client,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": self._transaction_timeout_ms,
        }
        producer = Producer(settings)
        try:
            producer.init_transactions(FENCE_TIMEOUT_S)
        except KafkaException as err:
            log.warning("could not fence the producer of departed %s: %s; its open transaction ends at its "
                        "timeout", transactional_id, err.args[0].str())
            return
        finally:
            producer.flush(0)
        log.info("fenced the producer of departed %s (its open transaction aborted) in %.2f s",
                 transactional_id, time.monotonic() - began)
