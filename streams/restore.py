"""Rebuild partition stores from their changelog partitions.

The decisions are plain functions over offsets (``plan_restore``, ``restore_done``); the
``ChangelogRestorer`` below only moves records from Kafka into the stores, a bounded step
at a time, so the processor folds a restore between its transactions (``streams/takeover.py``).

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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams import metrics
from streams.store import PartitionStore, StoreBatch

log = logging.getLogger("streams.restore")

# Records folded per processor turn (each store's share in one WriteBatch): large enough to
# amortize the write, small enough that the other partitions' next batch waits for it
# about a quarter of a second at most (4,000 records/s were folded at load average 45).
RESTORE_BATCH_RECORDS = 1000
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
                # A restore begins before the log's offsets are known (``begin``): a store
                # ahead of the log, or behind its start, must not be read from elsewhere
                # silently. Its reading stops with an error, and ``set_ends`` rebuilds it.
                "auto.offset.reset": "error",
            }
        )
        self._restoring: dict[int, _Restoring] = {}
        self._progress_logged_at = 0.0

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
        # Both ends asked at once: one round trip instead of two before a takeover resumes.
        listings = [
            self._admin.list_offsets({tp: spec for tp in tps}, isolation_level=IsolationLevel.READ_UNCOMMITTED,
                                     request_timeout=LIST_OFFSETS_ATTEMPT_S)
            for spec in (OffsetSpec.earliest(), OffsetSpec.latest())
        ]
        for index, futures in enumerate(listings):
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

    @property
    def restoring(self) -> set[int]:
        """The partitions being read now."""
        return set(self._restoring)

    def begin(self, stores: Mapping[int, PartitionStore]) -> None:
        """Start reading each store's changelog after the record it applied last, before the
        end is known (``set_ends``): what is committed can be folded while the previous
        owner is being fenced.

        Args:
            stores: Open stores by partition number (changelog partition == input partition).
        """
        now = time.monotonic()
        starts = []
        for partition, store in stores.items():
            applied = store.changelog_offset
            self._restoring[partition] = _Restoring(store, RestoreReport(partition, None), now)
            starts.append(TopicPartition(self.topic, partition, OFFSET_BEGINNING if applied is None else applied + 1))
        if starts:
            log.info("restoring %s partitions %s", self.topic, sorted(tp.partition for tp in starts))
            self._progress_logged_at = now
            self._consumer.incremental_assign(starts)

    def set_ends(self, marks: Mapping[int, tuple[int, int]]) -> list[RestoreReport]:
        """Plan the rest of each restore begun (see the module docstring) from its changelog's
        offsets, listed after the previous owner was fenced; returns the reports of those
        already at their end, no longer read.

        Args:
            marks: (log start, high watermark) of changelog partitions (``watermarks``).
        """
        reports: list[RestoreReport] = []
        for partition, (low, high) in sorted(marks.items()):
            restoring = self._restoring.get(partition)
            if restoring is None:
                continue
            store = restoring.store
            plan = restoring.report.plan = plan_restore(store.changelog_offset, low, high)
            if plan is not None and plan.wipe:
                log.warning("store of %s-%d is at changelog offset %s, outside the log [%d, %d): rebuilding it",
                            self.topic, partition, store.changelog_offset, low, high)
                store.wipe()
                # Read again from the log's start: what was fetched for the old position is dropped.
                tps = [TopicPartition(self.topic, partition, plan.start)]
                self._consumer.incremental_unassign(tps)
                self._consumer.incremental_assign(tps)
            elif plan is None or restore_done(plan.start, plan.end):
                reports.append(self._finish(partition, time.monotonic(), high))
        return reports

    def step(self, apply: ApplyChangelog, limit: int = RESTORE_BATCH_RECORDS) -> list[RestoreReport]:
        """Fold what has arrived (up to ``limit`` records, without waiting) into the stores
        being restored; returns the reports of those that reached their end, no longer read.

        Each store's batch is written with its last offset, so a store is consistent
        between steps and a restore cancelled halfway resumes where it stopped.
        """
        if not self._restoring:
            return []
        by_partition: dict[int, list] = {}
        for message in self._consumer.consume(limit, 0):
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise KafkaException(error)
                log.warning("restore consumer: %s", error.str())
                continue
            if message.partition() in self._restoring:  # cancelled since it was fetched: skipped
                by_partition.setdefault(message.partition(), []).append(message)
        for partition, records in by_partition.items():
            restoring = self._restoring[partition]
            store = restoring.store
            batch = store.batch()
            for record in records:
                apply(batch, store, record.key(), record.value())
            store.write(batch, changelog_offset=records[-1].offset())
            restoring.report.records += len(records)
            if restoring.end is not None:
                metrics.restore_progress(self.topic, partition, restoring.end - records[-1].offset() - 1,
                                         len(records))
        return self._finished()

    def _finished(self) -> list[RestoreReport]:
        """The restores that reached their end (once it is known), no longer read."""
        positions = self._consumer.position([TopicPartition(self.topic, p) for p in self._restoring])
        now = time.monotonic()
        reports = []
        for tp in positions:
            end = self._restoring[tp.partition].end
            if end is not None and restore_done(tp.offset, end):
                reports.append(self._finish(tp.partition, now, end))
        if self._restoring and now - self._progress_logged_at > PROGRESS_LOG_INTERVAL_S:
            self._progress_logged_at = now
            log.info(
                "restore of %s still running: %s (partition: position/end)", self.topic,
                ", ".join(f"{tp.partition}: {tp.offset}/{self._restoring[tp.partition].end}" for tp in positions
                          if tp.partition in self._restoring),
            )
        return reports

    def _finish(self, partition: int, now: float, end: int) -> RestoreReport:
        restoring = self._restoring.pop(partition)
        self._consumer.incremental_unassign([TopicPartition(self.topic, partition)])
        report = restoring.report
        report.seconds = now - restoring.began
        metrics.restore_finished(self.topic, partition, report.seconds)
        log.info("restored %s-%d: %d records up to offset %d in %.2f s", self.topic, partition, report.records,
                 end, report.seconds)
        return report

    def cancel(self, partitions: Collection[int]) -> None:
        """Stop restoring ``partitions`` (revoked halfway); their stores stay consistent."""
        dropped = [p for p in partitions if self._restoring.pop(p, None) is not None]
        if dropped:
            self._consumer.incremental_unassign([TopicPartition(self.topic, p) for p in dropped])
            log.info("restore of %s partitions %s cancelled", self.topic, sorted(dropped))


@dataclass
class _Restoring:
    """A store being read up to ``report.plan.end`` (None: not planned yet)."""

    store: PartitionStore
    report: RestoreReport
    began: float

    @property
    def end(self) -> int | None:
        return None if self.report.plan is None else self.report.plan.end
