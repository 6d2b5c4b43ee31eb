"""Rebuild partition stores from their changelog partitions.

The decisions are plain functions over offsets (``plan_restore``, ``restore_done``); the
``ChangelogRestorer`` below only moves records from Kafka into the stores.

The end of a restore is the changelog's high watermark when the restore began (read
uncommitted, so it covers transactions still open at that moment), and a partition is
restored once the read_committed position reaches it. Positions skip control records and
aborted transactions, so they do reach that end; waiting for ``position == high
watermark`` instead could wait forever, as more records keep arriving. Ending at the last
stable offset instead would miss a transaction of the previous owner that commits after
the restore began.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams import metrics
from streams.store import PartitionStore, StoreBatch

log = logging.getLogger("streams.restore")

# Records folded into a store per WriteBatch: large enough to amortize the write, small
# enough that memory stays flat for long changelogs.
RESTORE_BATCH_RECORDS = 2000
# How long one consume call waits; short so a stop request is noticed quickly.
RESTORE_POLL_S = 0.2
# Listing offsets on a busy single broker can take a few seconds.
LIST_OFFSETS_TIMEOUT_S = 30.0
# One listing's wait within that: after a broker's loss a request to the old leader can sit
# out the whole timeout and come back empty, while a new request finds the new leader.
LIST_OFFSETS_ATTEMPT_S = 8.0
# Between listings that failed at once (no leader known yet).
LIST_OFFSETS_BACKOFF_S = 0.5
# Progress lines for long restores, not one per batch.
PROGRESS_LOG_INTERVAL_S = 5.0

ApplyChangelog = Callable[[StoreBatch, PartitionStore, bytes | None, bytes | None], None]


@dataclass(frozen=True)
class RestorePlan:
    """What to read from one changelog partition.

    Attributes:
        start: First offset to read.
        end: The restore is done once the consumer position reaches this offset.
        wipe: The store does not match the changelog (it is ahead of the log, or records
            it has not applied were deleted): empty it before reading from ``start``.
    """

    start: int
    end: int
    wipe: bool = False


def plan_restore(applied: int | None, low: int, high: int) -> RestorePlan | None:
    """Decide whether a store needs restoring, and from where to where.

    Args:
        applied: The offset of the last changelog record in the store (None: none).
        low: The changelog partition's first offset (log start).
        high: The changelog partition's high watermark when the restore begins.

    Returns:
        None when the store is up to date, else the plan.
    """
    if applied is not None and (applied >= high or applied + 1 < low):
        return RestorePlan(start=low, end=high, wipe=True)
    start = low if applied is None else applied + 1
    if start >= high:
        return None
    return RestorePlan(start=start, end=high)


def restore_done(position: int | None, end: int) -> bool:
    """True once the consumer ``position`` (None or negative: not known yet) reaches ``end``."""
    return position is not None and position >= 0 and position >= end


@dataclass
class RestoreReport:
    """What one partition's restore did, for logs and tests."""

    partition: int
    plan: RestorePlan | None
    records: int = 0
    seconds: float = 0.0


class ChangelogRestorer:
    """Reads changelog partitions into stores with its own read_committed consumer (no group).

    Args:
        client: Base librdkafka settings (bootstrap servers, security).
        topic: The changelog topic.
    """

    def __init__(self, client: Mapping[str, str], topic: str) -> None:
        self.topic = topic
        self._client = dict(client)
        self._admin: AdminClient | None = AdminClient(dict(client))
        self._consumer = Consumer(
            {
                **client,
                # Assigned partitions only: the group id is required by the client, never joined.
                "group.id": f"streams-restore-{topic}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )

    def close(self) -> None:
        """Close the restore consumer and let go of the admin client (it has no close of its
        own; a live one keeps reconnecting to a broker that has gone)."""
        self._consumer.close()
        self._admin = None

    def watermarks(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """(log start, high watermark read uncommitted) of each changelog partition.

        Raises:
            KafkaException: retriable; no listing answered in full within ``LIST_OFFSETS_TIMEOUT_S``.
        """
        deadline = time.monotonic() + LIST_OFFSETS_TIMEOUT_S
        while True:
            try:
                return self._list_watermarks(partitions)
            except KafkaException as err:
                if time.monotonic() + LIST_OFFSETS_ATTEMPT_S > deadline:
                    raise
                log.info("listing offsets of %s failed, retrying with a new admin client: %s", self.topic,
                         err.args[0].str())
                time.sleep(LIST_OFFSETS_BACKOFF_S)
                # Seen after a broker's loss: the old client kept asking the dead leader until
                # its process restarted, while a new one found the new leader at once.
                if self._admin is not None:
                    client = self._client
                    self._admin = AdminClient(client)

    def _list_watermarks(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        if self._admin is None:
            raise RuntimeError(f"the restorer of {self.topic} is closed")
        tps = [TopicPartition(self.topic, p) for p in partitions]
        result: dict[int, list[int]] = {p: [0, 0] for p in partitions}
        for index, spec in enumerate((OffsetSpec.earliest(), OffsetSpec.latest())):
            futures = self._admin.list_offsets(
                {tp: spec for tp in tps},
                isolation_level=IsolationLevel.READ_UNCOMMITTED,
                request_timeout=LIST_OFFSETS_ATTEMPT_S,
            )
            for tp, future in futures.items():
                try:
                    offset = future.result(timeout=LIST_OFFSETS_ATTEMPT_S).offset
                except concurrent.futures.TimeoutError as err:
                    # A leader still moving after a broker's loss: a Kafka timeout, which the
                    # runtime's supervisor treats as transient and restarts the processor on.
                    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"listing offsets of {tp.topic}-"
                                                    f"{tp.partition} timed out", retriable=True)) from err
                if offset < 0:
                    # No offset known (-1001) while the leader moves: an unknown log is not an
                    # empty one, and planning with it would wipe a store that is up to date.
                    raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE, f"no offsets known for "
                                                    f"{tp.topic}-{tp.partition} yet", retriable=True))
                result[tp.partition][index] = offset
        return {p: (low, high) for p, (low, high) in result.items()}

    def restore(
        self,
        stores: Mapping[int, PartitionStore],
        apply: ApplyChangelog,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> dict[int, RestoreReport]:
        """Bring every store up to its changelog partition's end (see the module docstring).

        Args:
            stores: Open stores by partition number (changelog partition == input partition).
            apply: Folds one changelog record (key, value) into a store batch.
            should_stop: Polled between batches; True abandons the restore early. Every
                store then stays consistent (each batch is written with its offset).

        Returns:
            One report per partition.
        """
        began = time.monotonic()
        marks = self.watermarks(sorted(stores))
        reports = {p: RestoreReport(p, plan_restore(stores[p].changelog_offset, *marks[p])) for p in stores}
        pending: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition, report in reports.items():
            plan = report.plan
            if plan is None:
                continue
            if plan.wipe:
                log.warning(
                    "store of %s-%d is at changelog offset %s, outside the log [%d, %d): rebuilding it",
                    self.topic, partition, stores[partition].changelog_offset, marks[partition][0], plan.end,
                )
                stores[partition].wipe()
            if not restore_done(plan.start, plan.end):
                pending[partition] = plan.end
                starts.append(TopicPartition(self.topic, partition, plan.start))
        if not pending:
            return reports
        log.info("restoring %s partitions %s", self.topic, sorted(pending))
        self._consumer.assign(starts)
        try:
            self._drain(stores, apply, pending, reports, should_stop, began)
        finally:
            self._consumer.unassign()
        for partition, report in reports.items():
            if report.plan is not None:
                log.info(
                    "restored %s-%d: %d records up to offset %d in %.2f s",
                    self.topic, partition, report.records, report.plan.end, report.seconds,
                )
        return reports

    def _drain(
        self,
        stores: Mapping[int, PartitionStore],
        apply: ApplyChangelog,
        pending: dict[int, int],
        reports: dict[int, RestoreReport],
        should_stop: Callable[[], bool],
        began: float,
    ) -> None:
        last_progress = began
        while pending and not should_stop():
            messages = self._consumer.consume(RESTORE_BATCH_RECORDS, RESTORE_POLL_S)
            by_partition: dict[int, list] = {}
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise KafkaException(error)
                    log.warning("restore consumer: %s", error.str())
                    continue
                by_partition.setdefault(message.partition(), []).append(message)
            for partition, records in by_partition.items():
                store = stores[partition]
                batch = store.batch()
                for record in records:
                    apply(batch, store, record.key(), record.value())
                store.write(batch, changelog_offset=records[-1].offset())
                reports[partition].records += len(records)
                metrics.restore_progress(self.topic, partition, pending.get(partition, 0) - records[-1].offset() - 1,
                                         len(records))
            positions = self._consumer.position([TopicPartition(self.topic, p) for p in pending])
            now = time.monotonic()
            for tp in positions:
                if restore_done(tp.offset, pending[tp.partition]):
                    del pending[tp.partition]
                    reports[tp.partition].seconds = now - began
                    metrics.restore_finished(self.topic, tp.partition, now - began)
            if pending and now - last_progress > PROGRESS_LOG_INTERVAL_S:
                last_progress = now
                log.info(
                    "restore of %s still running: %s (partition: position/end)", self.topic,
                    ", ".join(f"{tp.partition}: {tp.offset}/{pending[tp.partition]}" for tp in positions
                              if tp.partition in pending),
                )
