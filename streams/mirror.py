"""A local copy of a compacted topic in RocksDB that survives its process and resumes.

The latest value of each key of the topic is kept in a RocksDB folder (see
``streams.folder_lock`` for who may use which folder). Each write batch carries the
records read and, in the store's bookkeeping column family, the next offset of every
partition, so a new mirror on the same folder reads only what the topic gained since:

    r/{key}                 the latest value of {key} (a tombstone deletes it)
    (anything else)         keys the owner derives in the same batch (``on_change``)
    meta: mirror.offsets    {partition: next offset}, as JSON
    meta: mirror.topic_id   the topic's ID when the offsets were taken
    meta: mirror.synced_at  wall-clock ms at which the copy had read every partition to its end

Resuming is decided by ``plan_resume`` over plain values: the copy is rebuilt from the
beginning when the topic is not the one it copied (another topic ID, an offset past the
end, a log start past the offset), or when it has been away longer than the topic's
``delete.retention.ms``: the cleaner may then have dropped tombstones it never read, and
the keys they deleted would live on in the copy.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec, ResourceType

from streams.folder_lock import ClaimedFolder, claim_folder
from streams.store import PartitionStore, StoreBatch, StoreError, prefix_end

log = logging.getLogger("streams.mirror")

RECORDS = b"r/"
OFFSETS_KEY = b"mirror.offsets"
TOPIC_ID_KEY = b"mirror.topic_id"
SYNCED_AT_KEY = b"mirror.synced_at"
# Kafka's default delete.retention.ms, assumed when the broker does not say.
DEFAULT_DELETE_RETENTION_MS = 86_400_000
# Records read per call; a copy catching up reads in large steps (and applies each key once per step).
READ_BATCH = 5000
# How long one read waits when nothing arrives; bounds how late a stop is noticed.
IDLE_WAIT_S = 0.2
# Partitions can be added to a topic at any time: looked for this often.
PARTITION_LOOKUP_S = 5.0
# A topic not created yet is looked for more often.
TOPIC_LOOKUP_S = 0.5
# One metadata or admin request; a broker that does not answer is retried at the next lookup.
METADATA_TIMEOUT_S = 10.0
# The "read to the end at" mark is refreshed this often while idle, so a copy closed by a
# kill still knows roughly when it was last current (at most this much too early: safe).
SYNC_MARK_S = 5.0

ChangeHook = Callable[[StoreBatch, bytes, bytes | None, bytes | None], None]
"""Called with (batch, key, old value, new value) for each key a read changes, before it is applied; it
may put and delete derived keys (outside ``r/``) in the same batch."""


@dataclass(frozen=True)
class ResumePlan:
    """Where to read each partition from; partitions not in ``starts`` are read from the beginning."""

    starts: dict[int, int]
    rebuild: bool
    reason: str


def plan_resume(stored: dict[int, int], stored_topic_id: str | None, topic_id: str | None,
                watermarks: dict[int, tuple[int, int]], synced_at_ms: int | None, now_ms: int,
                delete_retention_ms: int) -> ResumePlan:
    """Resume from the stored offsets, or rebuild (start empty, from the beginning).

    Args:
        stored: The next offset per partition the copy has applied.
        stored_topic_id, topic_id: The topic's ID then and now (None: unknown).
        watermarks: (log start, end) per partition of the topic now.
        synced_at_ms: When the copy last had every partition read to its end.
        now_ms: The wall clock now.
        delete_retention_ms: How long the broker keeps a tombstone once cleaned.
    """
    if not stored:
        return ResumePlan({}, False, "a new copy")
    if stored_topic_id and topic_id and stored_topic_id != topic_id:
        return ResumePlan({}, True, "the topic was recreated (another topic ID)")
    for partition, offset in sorted(stored.items()):
        if partition not in watermarks:
            return ResumePlan({}, True, f"partition {partition} no longer exists")
        low, high = watermarks[partition]
        if offset > high:
            return ResumePlan({}, True, f"partition {partition} ends at {high}, before the stored offset {offset}")
        if low > offset:
            return ResumePlan({}, True, f"partition {partition} starts at {low}, past the stored offset {offset}")
    behind = any(watermarks[p][1] > offset for p, offset in stored.items())
    # A tenth of the retention covers clock skew between this machine and the broker.
    limit_ms = delete_retention_ms - delete_retention_ms // 10
    if behind and (synced_at_ms is None or now_ms - synced_at_ms >= limit_ms):
        return ResumePlan({}, True, f"away longer than delete.retention.ms ({delete_retention_ms} ms): "
                                    "tombstones may have been dropped unread")
    return ResumePlan(dict(stored), False, "resumed")


def encode_offsets(offsets: dict[int, int]) -> bytes:
    return json.dumps({str(p): o for p, o in sorted(offsets.items())}).encode()


def decode_offsets(raw: bytes | None) -> dict[int, int]:
    return {} if raw is None else {int(p): int(o) for p, o in json.loads(raw).items()}


def _answer(read: Callable[[], Any], default: Any, what: str) -> Any:
    """An admin answer, or ``default`` when the broker cannot give it (an old broker, a race
    with the topic's deletion): the stored offsets still guard the resume."""
    try:
        return read()
    except Exception as err:
        log.warning("mirror: %s unknown (%s); using %s", what, err, default)
        return default


def now_ms() -> int:
    return int(time.time() * 1000)


class TopicMirror:
    """The latest value per key of a compacted topic, kept current by a consumer thread.

    Args:
        client: librdkafka settings (bootstrap servers, security).
        topic: The compacted topic to copy.
        base: Where the persistent folder's slots live; None: a temporary folder.
        on_change: Derives the owner's keys from each record (see ``ChangeHook``).
        changed: Notified after each write (the owner's readers wait on it).
        slots: Processes that may keep a persistent copy at once; more get a temporary one.
    """

    def __init__(self, client: dict[str, Any], topic: str, base: Path | None, *,
                 on_change: ChangeHook | None = None, changed: threading.Condition | None = None,
                 slots: int = 4) -> None:
        self.client = client
        self.topic = topic
        self._claim: ClaimedFolder = claim_folder(base, slots, f"kwf-mirror-{topic}-")
        # RocksDB in a folder of its own: a rebuild wipes it, never the slot's lock file.
        db = self._claim.path / "db"
        try:
            self._store = PartitionStore.open(db)
        except StoreError as err:  # a damaged copy is only a cache: start it over
            log.warning("mirror of %s: starting over in %s: %s", topic, db, err)
            shutil.rmtree(db, ignore_errors=True)
            self._store = PartitionStore.open(db)
        self._on_change = on_change
        self.changed = changed or threading.Condition()
        self._positions = decode_offsets(self._store.get_meta(OFFSETS_KEY))
        self._visible = dict(self._positions)
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"mirror-{topic}", daemon=True)
        self.plan: ResumePlan | None = None
        self.records_read = 0
        """Records this mirror has read from the topic (a resumed one reads only the tail)."""

    @property
    def folder(self) -> Path:
        return self._claim.path

    @property
    def temporary(self) -> bool:
        """True when every persistent slot was taken and this copy dies with its process."""
        return self._claim.temporary

    def start(self, timeout: float) -> None:
        """Start reading; return once every partition there is has been read to its end.

        Raises:
            TimeoutError: not caught up within ``timeout`` (the topic may not exist yet).
        """
        self.begin()
        self.wait_caught_up(timeout)

    def begin(self) -> None:
        """Start reading in the background and return at once (``caught_up`` says when it is current)."""
        if self._thread.ident is None:  # not started yet
            self._thread.start()

    @property
    def caught_up(self) -> bool:
        """True once every partition there is has been read to its end (it stays true)."""
        return self._caught_up.is_set()

    def wait_caught_up(self, timeout: float) -> None:
        """Return once ``caught_up``.

        Raises:
            TimeoutError: not caught up within ``timeout`` (the topic may not exist yet).
        """
        if not self._caught_up.wait(timeout):
            raise TimeoutError(f"the copy of {self.topic} did not catch up within {timeout:.0f} s: "
                               f"{self._error or 'no answer'}")

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if not self._store.closed and not self._claim.temporary:
            self._store.flush()  # the next copy on this folder opens at once
        self._store.close()
        self._claim.release()

    def get(self, key: bytes) -> bytes | None:
        """The latest value of ``key`` read so far, or None."""
        return self._store.get(RECORDS + key)

    def records(self, prefix: bytes = b"", limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of the keys that start with ``prefix``, in key order."""
        for key, value in self._store.scan_prefix(RECORDS + prefix, limit):
            yield key[len(RECORDS):], value

    def scan(self, start: bytes, end: bytes | None, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """The owner's derived keys in ``[start, end)`` (None: to the end of their prefix)."""
        return self._store.scan_range(start, end if end is not None else (prefix_end(start) or b"\xff" * 8), limit)

    def wait_for_positions(self, ends: dict[int, int], timeout: float) -> bool:
        """Wait until every partition in ``ends`` has been applied up to its offset there."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while any(self._visible.get(p, 0) < end for p, end in ends.items()):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self.changed.wait(min(remaining, 0.5))
        return True

    # -- the reading thread ---------------------------------------------------------------

    def _run(self) -> None:
        client = self.client
        consumer = Consumer({
            **client,
            "group.id": f"{self.topic}.mirror",  # unused: partitions are assigned
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            # A stored offset compaction has passed reads on from the earliest record.
            "auto.offset.reset": "earliest",
            # Changes are small and latency matters for readers waiting on them.
            "fetch.wait.max.ms": "10",
            # End-of-partition events tell when the copy has reached the end.
            "enable.partition.eof": "true",
        })
        assigned: set[int] = set()
        at_end: set[int] = set()
        next_lookup = 0.0
        last_mark = 0
        began = now_ms()
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_lookup:
                    partitions = self._partitions(consumer)
                    fresh = sorted(partitions - assigned)
                    if fresh:
                        if self.plan is None:
                            self._resume_or_rebuild(partitions)
                        log.info("mirror: reading %s partitions %s", self.topic, fresh)
                        starts = {p: self._positions.get(p, OFFSET_BEGINNING) for p in fresh}
                        consumer.incremental_assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])
                        assigned.update(fresh)
                    next_lookup = time.monotonic() + (PARTITION_LOOKUP_S if assigned else TOPIC_LOOKUP_S)
                began = now_ms()
                moved = self._apply(self._next_messages(consumer), at_end)
                synced = bool(assigned) and assigned <= at_end
                meta = {}
                if moved:
                    meta[OFFSETS_KEY] = encode_offsets(self._positions)
                if synced and (moved or began - last_mark >= SYNC_MARK_S * 1000):
                    # Taken before the read: everything written before then has been read.
                    meta[SYNCED_AT_KEY] = str(began).encode()
                    last_mark = began
                if meta:
                    with self.changed:
                        self._store.write(self._batch, meta=meta)
                        self._visible = dict(self._positions)
                        self.changed.notify_all()
                if synced and not self._caught_up.is_set():
                    self._caught_up.set()
            if assigned and assigned <= at_end:
                self._store.write(self._store.batch(), meta={SYNCED_AT_KEY: str(began).encode()})
        except BaseException as err:  # reported through start() and the log
            self._error = err
            log.exception("mirror of %s stopped", self.topic)
        finally:
            consumer.close()

    _batch: StoreBatch

    def _apply(self, messages: list[Message], at_end: set[int]) -> bool:
        """Fold ``messages`` into a new batch (``self._batch``); True when a position moved.

        Only the last value of each key in the batch is applied, as compaction would keep
        it: a copy catching up on an uncompacted tail derives its keys once per key.
        """
        self._batch = batch = self._store.batch()
        moved = False
        latest: dict[bytes, bytes | None] = {}
        for message in messages:
            partition = message.partition()
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(partition)
                    if self._positions.get(partition) != message.offset():
                        self._positions[partition] = message.offset()  # past trailing commit markers
                        moved = True
                else:
                    log.warning("mirror of %s: %s", self.topic, error)
                continue
            at_end.discard(partition)
            latest[message.key() or b""] = message.value()
            self._positions[partition] = message.offset() + 1
            self.records_read += 1
            moved = True
        for key, value in latest.items():
            if self._on_change is not None:
                self._on_change(batch, key, self._store.get(RECORDS + key), value)
            if value is None:
                batch.delete(RECORDS + key)
            else:
                batch.put(RECORDS + key, value)
        return moved

    def _resume_or_rebuild(self, partitions: set[int]) -> None:
        client = self.client
        admin = AdminClient(client)
        # Asked all at once: a new client's first answer waits for these round trips.
        topic_id = admin.describe_topics(TopicCollection([self.topic]), request_timeout=METADATA_TIMEOUT_S)[self.topic]
        resource = ConfigResource(ResourceType.TOPIC, self.topic)
        config = admin.describe_configs([resource], request_timeout=METADATA_TIMEOUT_S)[resource]
        bounds = {}
        if self._positions:
            for name, spec in (("low", OffsetSpec.earliest()), ("high", OffsetSpec.latest())):
                bounds[name] = admin.list_offsets({TopicPartition(self.topic, p): spec for p in partitions},
                                                  isolation_level=IsolationLevel.READ_COMMITTED,
                                                  request_timeout=METADATA_TIMEOUT_S)
        watermarks = {tp.partition: (future.result(METADATA_TIMEOUT_S).offset,
                                     bounds["high"][tp].result(METADATA_TIMEOUT_S).offset)
                      for tp, future in bounds.get("low", {}).items()}
        found_id = _answer(lambda: str(topic_id.result(METADATA_TIMEOUT_S).topic_id), None, "topic ID")
        retention = _answer(lambda: int(config.result(METADATA_TIMEOUT_S)["delete.retention.ms"].value),
                            DEFAULT_DELETE_RETENTION_MS, "delete.retention.ms")
        stored_id = self._store.get_meta(TOPIC_ID_KEY)
        synced = self._store.get_meta(SYNCED_AT_KEY)
        self.plan = plan_resume(self._positions, None if stored_id is None else stored_id.decode(), found_id,
                                watermarks, None if synced is None else int(synced), now_ms(), retention)
        if self.plan.rebuild:
            log.info("mirror of %s: rebuilding from the beginning: %s", self.topic, self.plan.reason)
            self._store.wipe()
            self._positions = {}
            self._visible = {}
        elif self._positions:
            log.info("mirror of %s: resuming from offsets %s", self.topic, self._positions)
        if found_id is not None:
            self._store.write(self._store.batch(), meta={TOPIC_ID_KEY: found_id.encode()})

    def _partitions(self, consumer: Consumer) -> set[int]:
        """The topic's partitions now; none while it does not exist (yet)."""
        try:
            meta = consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S).topics.get(self.topic)
        except KafkaException as err:
            log.warning("mirror: looking up %s failed: %s", self.topic, err)
            return set()
        if meta is None or meta.error is not None:
            return set()
        return set(meta.partitions)

    @staticmethod
    def _next_messages(consumer: Consumer) -> list[Message]:
        """What has arrived; waits (up to ``IDLE_WAIT_S``) only when nothing has.

        ``consume(n, timeout)`` returns early only once ``n`` records arrived: one change
        would sit out the whole timeout before its waiting reader saw it.
        """
        messages = consumer.consume(READ_BATCH, 0)
        if messages:
            return messages
        first = consumer.poll(IDLE_WAIT_S)
        return [] if first is None else [first, *consumer.consume(READ_BATCH - 1, 0)]
