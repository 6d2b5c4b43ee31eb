"""Fencing the producer of a process that died holding partitions now taken over.

A process killed in the middle of a transaction leaves it open, and read_committed
readers of every partition it wrote to (the changelog a restore reads, the input) stop at
its first record until the broker aborts it after ``transaction.timeout.ms``. The process
that takes the dead one's partitions can abort it at once instead: a producer that
registers the same transactional ID (``init_transactions``) bumps its epoch, which fences
the old producer and aborts what it left open (KIP-98's zombie fencing, done by the taker).

To know whose ID to fence, every transaction commits its input offsets with the committing
transactional ID as the offset metadata (``owner_metadata``). When partitions are
assigned, the taker reads that metadata with its own consumer (without waiting for pending
commits) and, only when another process committed last, the group's live members (each
member's ``group.instance.id`` is its transactional ID), and fences the owners that have
left the group (``owners_to_fence``). An owner still in the group gave its partitions up in
a rebalance, between transactions, so nothing of it is in the way; fencing it would only
abort its current work.

The group's members are read with an admin client made for that one request and dropped
after it. A long-lived admin client whose group request is pending while its broker goes
away and comes back can abort the process (librdkafka issue 4605, an
``eonce->refcnt > 0`` assertion in its coordinator requests); the offsets are read by the
consumer for the same reason.

``owners_to_fence`` is the decision, a plain function; ``DepartedOwnerFencer`` does the I/O.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.bounded_call import CallHung, CallRunner, close_when_returned

log = logging.getLogger("streams.fencing")

# Marks offset metadata written by a processor, so metadata of other origins is never read
# as a transactional ID.
OWNER_PREFIX = "txn:"
# Reading the committed offsets and the group takes milliseconds; a broker that does not
# answer within this is moving leaders, and the dead transaction is left to its timeout.
ADMIN_TIMEOUT_S = 5.0
# init_transactions on the dead ID waits for the coordinator to write the abort markers.
FENCE_TIMEOUT_S = 10.0
# librdkafka returns within a second of a call's own timeout when it works (streams.transaction).
HUNG_CALL_GRACE_S = 5.0
# The fencing producer's close only stops its threads once init_transactions has returned.
CLOSE_BOUND_S = 5.0


def owner_metadata(transactional_id: str) -> str:
    """The offset metadata a transaction of ``transactional_id`` commits with."""
    return f"{OWNER_PREFIX}{transactional_id}"


def owner_of(metadata: str | None) -> str | None:
    """The transactional ID named by offset ``metadata`` (None: not written by a processor)."""
    if not metadata or not metadata.startswith(OWNER_PREFIX):
        return None
    return metadata[len(OWNER_PREFIX):] or None


def other_owners(owners: Iterable[str | None], own_id: str) -> set[str]:
    """The last committers of the taken partitions other than this process; with none, the
    group's members need not be read.

    Args:
        owners: The transactional ID of each taken partition's last commit (None: unknown).
        own_id: This process's transactional ID (its own predecessor was fenced at start).
    """
    return {owner for owner in owners if owner is not None and owner != own_id}


def owners_to_fence(owners: Iterable[str | None], own_id: str, live_ids: Iterable[str]) -> set[str]:
    """The last committers of the taken partitions that are neither this process nor in the group.

    Args:
        owners: The transactional ID of each taken partition's last commit (None: unknown).
        own_id: This process's transactional ID (its own predecessor was fenced at start).
        live_ids: The ``group.instance.id`` of every current member of the group.
    """
    return other_owners(owners, own_id) - set(live_ids)


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
        self._calls = CallRunner(f"{group_id}-fencer")

    @staticmethod
    def last_owners(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, str | None]:
        """The transactional ID of each taken partition's last commit, read by the consumer
        taking them (None where unknown).

        Never raises: what cannot be read is unknown, and an unknown owner is not fenced.
        """
        try:
            # The consumer's require.stable.offsets is off: a pending commit of the dead
            # transaction would make a stable read wait for the very abort this is about to cause.
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=ADMIN_TIMEOUT_S)
        except (KafkaException, RuntimeError) as err:
            log.warning("could not read who owned %s partitions %s before: %s", topic, partitions, err)
            return {}
        return {tp.partition: owner_of(tp.metadata) for tp in committed if tp.error is None}

    def fence_departed(self, owners: Mapping[int, str | None], own_id: str) -> set[str]:
        """Fence the last owners (``last_owners``) that have left the group; returns the IDs fenced.

        Never raises: a fence that fails leaves the dead transaction to its timeout, which
        is slower but as safe.

        Args:
            owners: The last committer of each taken partition.
            own_id: This process's transactional ID.
        """
        try:
            others = other_owners(owners.values(), own_id)
            dead = owners_to_fence(others, own_id, self._live_ids()) if others else set()
        except (KafkaException, TimeoutError, OSError) as err:
            log.warning("could not read the members of group %s: %s", self._group_id, err)
            return set()
        for transactional_id in sorted(dead):
            self._fence(transactional_id)
        return dead

    def close(self) -> None:
        """Let the worker of the fencing producers' calls end."""
        self._calls.close()

    def _live_ids(self) -> set[str]:
        client = self._client
        admin = AdminClient(dict(client))
        try:
            future = admin.describe_consumer_groups([self._group_id], request_timeout=ADMIN_TIMEOUT_S)
            group = future[self._group_id].result(timeout=ADMIN_TIMEOUT_S)
        finally:
            # Destroyed now (it has no close): a request given up on must not stay pending in
            # a client that lives on through the broker's return.
            del admin
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
            self._calls.run("init_transactions", FENCE_TIMEOUT_S + HUNG_CALL_GRACE_S, producer.init_transactions,
                            FENCE_TIMEOUT_S)
        except KafkaException as err:
            log.warning("could not fence the producer of departed %s: %s; its open transaction ends at its "
                        "timeout", transactional_id, err.args[0].str())
        except CallHung as hung:
            log.warning("could not fence the producer of departed %s: %s; its open transaction ends at its "
                        "timeout", transactional_id, hung)
            close_when_returned(hung, f"the fencing producer of {transactional_id}", producer.close)
            return
        else:
            log.info("fenced the producer of departed %s (its open transaction aborted) in %.2f s",
                     transactional_id, time.monotonic() - began)
        # Closed now: a producer left to the collector keeps reconnecting until it is collected.
        try:
            self._calls.run("close", CLOSE_BOUND_S, producer.close)
        except (KafkaException, RuntimeError) as err:
            log.info("close of the fencing producer of %s: %s", transactional_id, err)
        except CallHung as hung:  # goes on by itself, its worker holding the producer
            log.info("close of the fencing producer of %s %s", transactional_id, hung)
