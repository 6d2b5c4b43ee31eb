"""The exactly-once consume-process-produce loop with per-partition RocksDB state.

One consumer (group member, read_committed) and one transactional producer per process.
Each loop turn is one Kafka transaction: poll a batch, hand each partition's records to
the handler, send what it emits plus the consumed offsets (KIP-447), commit. Only after
the commit are the transaction's changelog records folded into the stores, each store in
one WriteBatch together with the changelog offset. A crash between commit and store write
leaves the store behind the changelog, and the next restore catches it up.

Rebalancing is cooperative (``cooperative-sticky``): partitions that stay keep their open
stores and the handler's caches, and a process joining or leaving stops no other process's
partitions. The assign and revoke callbacks get only the partitions added or taken away;
confluent-kafka calls ``incremental_assign``/``incremental_unassign`` itself after each
callback that did not. Membership is static: the consumer's ``group.instance.id`` is the
transactional ID, so a restarted process gets its partitions back without a rebalance,
and a process gone longer than the session timeout loses them to the others. A taker
fences the producer of a departed owner before its restore ends (``streams/fencing.py``),
so a transaction the owner left open does not hold up the partitions' readers.

Rebalance callbacks only run inside ``consume``, and a transaction never spans a
``consume`` call, so when a partition is revoked or lost there
is no open transaction left to commit or abort: the batch before was committed (or
aborted) in full. A newly assigned partition is paused in the assign callback and handed
to the handler only once its fence and restore are done (``streams/takeover.py``); those
run beside the loop, so the other partitions' work goes on meanwhile.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams import metrics
from streams.bounded_call import CallHung, CallRunner, close_when_returned
from streams.dlq import dead_letter_headers
from streams.fencing import DepartedOwnerFencer, owner_metadata
from streams.handler import Batch, ChangelogEntry, Handler, Record, StatefulHandler
from streams.restore import ChangelogRestorer
from streams.stall_watch import StallWatch
from streams.standby import CATCH_UP_RECORDS, CATCH_UP_RECORDS_BUSY, StandbyReplicas
from streams.store import PartitionStore, StoreBatch
from streams.takeover import Pending, Takeover, Watermarks, start_takeover
from streams.transaction import AbortRequired, ProcessorFenced, RestartRequired, TransactionalWriter

__all__ = [
    "Batch",
    "Handler",
    "Processor",
    "ProcessorConfig",
    "ProcessorFenced",
    "Record",
    "run_until_signal",
]

log = logging.getLogger("streams.processor")

# A poll's wait while the handler's work without input is under way: it is ready within
# milliseconds, and input that arrives meanwhile shares its transaction.
READY_SOON_POLL_S = 0.001
# A poll's wait while a store is being restored: the loop folds the changelog's tail a
# batch per turn, and a longer wait would slow the restore; a shorter one burns a core.
RESTORING_POLL_S = 0.005
# Repeated consumer errors (e.g. a missing topic) are logged at most this often.
ERROR_LOG_INTERVAL_S = 10.0
# A batch whose transaction keeps failing (e.g. the handler emits a record the broker
# refuses) would be replayed forever: give up after this many aborts in a row.
MAX_ABORTS_IN_A_ROW = 10
# Pause before replaying an aborted batch again, growing per abort in a row up to the
# cap, so a struggling broker is not hammered; the first replay is immediate.
ABORT_BACKOFF_S, ABORT_BACKOFF_MAX_S = 0.1, 2.0
# Rewinding a partition only waits for librdkafka's fetcher to take the new offset, but
# confluent-kafka waits for that without a timeout: this long means it never will.
SEEK_BOUND_S = 10.0
# A step of the loop (a consume with its rebalance callbacks, a transaction, the shutdown)
# lasting this long is logged with where it is; the longest bounded call lasts 65 s.
STALL_REPORT_S = 20.0
# A killed process's partitions move after this long: short, for failover within seconds,
# yet three heartbeats long (heartbeats come from librdkafka's thread, not the interpreter).
SESSION_TIMEOUT_MS = 3000
# Closing the consumer waits for its group coordinator (and runs the revoke callback): this
# long means the broker is gone, and the process shuts down without waiting for it.
CONSUMER_CLOSE_BOUND_S = 10.0


@dataclass
class ProcessorConfig:
    """Where a processor reads, writes and keeps state, and how it batches.

    Attributes:
        group_id: Consumer group; also the first part of the transactional id.
        input_topic: The topic processed.
        changelog_topic: Co-partitioned with the input; partition p restores store p. None:
            stores are local only and ``Batch.emit_changelog`` is unavailable.
        dlq_topic: Undecodable input records go here with the error in their headers.
        state_dir: Stores live in ``state_dir / group_id / f"{input_topic}-{partition}"``.
        process_id: Stable identity of this process. The transactional id is
            ``f"{group_id}-{process_id}"``: a restarted process with the same id fences its
            predecessor and aborts its open transaction at once.
        client: Base librdkafka settings (``streams.kafka_config.client_settings``); left
            out of ``repr`` because they carry SASL passwords and key locations.
    """

    group_id: str
    input_topic: str
    changelog_topic: str | None
    dlq_topic: str
    state_dir: Path
    process_id: str
    client: dict[str, str] = field(repr=False)
    # Records per transaction: amortizes the commit round trips over many records while one
    # batch stays small enough that an abort replays little.
    max_batch_records: int = 500
    # Longest wait for the first record of a batch; a batch never waits to fill: it is what
    # has arrived (under load, what arrived while the previous transaction committed).
    max_batch_ms: int = 20
    # Timers (punctuate) need sub-second resolution, not more.
    punctuate_interval_ms: int = 100
    # How long a dead member keeps its partitions before the group moves them; librdkafka
    # heartbeats from its own thread, so a busy interpreter does not miss them.
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    # How long an open transaction of a crashed process (with a different process_id) can
    # block read_committed readers of its partitions; Kafka's default.
    transaction_timeout_ms: int = 60000
    # Warm copies of other processes' partitions this process keeps (streams/standby.py);
    # only with a changelog topic.
    standby_replicas: int = 0
    # Producer batching delay: a few ms lets one batch's records share requests.
    linger_ms: int = 5
    # Records are compressed per producer batch: small, similar records (Avro events of
    # one transaction) shrink several-fold for little CPU.
    compression_type: str = "zstd"

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}-{self.process_id}"

    def store_folder(self, partition: int) -> Path:
        """The folder of one partition's store."""
        return self.state_dir / self.group_id / f"{self.input_topic}-{partition}"

    def consumer_settings(self) -> dict[str, Any]:
        return {
            **self.client,
            "group.id": self.group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            # Static membership: a restart within the session keeps the assignment, and the
            # members' IDs tell a taker which owners have gone (streams/fencing.py).
            "group.instance.id": self.transactional_id,
            "session.timeout.ms": self.session_timeout_ms,
            # Three heartbeats per session, the usual ratio.
            "heartbeat.interval.ms": max(100, self.session_timeout_ms // 3),
        }

    def producer_settings(self) -> dict[str, Any]:
        return {
            # The Java client's partitioner, so producers in any language agree on partitions.
            "partitioner": "murmur2_random",
            "linger.ms": self.linger_ms,
            # Transactions imply idempotence, which needs every in-sync replica's acknowledgement
            # (librdkafka's default); said here so a replicated cluster's guarantee is visible.
            "acks": "all",
            "compression.type": self.compression_type,
            **self.client,
            "transactional.id": self.transactional_id,
            "transaction.timeout.ms": self.transaction_timeout_ms,
        }


class Processor:
    """Runs one ``Handler`` exactly-once over ``config.input_topic``.

    Args:
        config: Topics, state folder, identity and batching.
        handler: The application code.

    Attributes:
        ready: Set once the first assignment arrived and all its partitions are restored.
    """

    def __init__(self, config: ProcessorConfig, handler: Handler | StatefulHandler) -> None:
        self.config = config
        self.handler = handler
        # Folds changelog records into the stores; only a processor with a changelog calls it.
        self._apply_changelog = getattr(handler, "apply_changelog", _no_changelog)
        if config.changelog_topic is not None and self._apply_changelog is _no_changelog:
            raise TypeError(f"{type(handler).__name__} has no apply_changelog, and the processor of "
                            f"{config.input_topic} has a changelog topic to fold")
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._stores: dict[int, PartitionStore] = {}
        self._assigned: frozenset[int] = frozenset()
        # Assigned, paused, and waiting for their fence and restore (streams/takeover.py).
        self._pending: dict[int, Pending] = {}
        self._takeovers: list[Takeover] = []
        self._last_punctuate: dict[int, float] = {}
        self._consumer: Consumer | None = None
        self._consumer_calls = CallRunner(f"{config.transactional_id}-consumer")
        # A consumer call that never returned: the consumer is closed once it does, never before.
        self._consumer_stuck: CallHung | None = None
        self._writer: TransactionalWriter | None = None
        self._restorer: ChangelogRestorer | None = None
        self._fencer: DepartedOwnerFencer | None = None
        self._standby: StandbyReplicas | None = None
        self._error_logged_at = 0.0
        self._aborts_in_a_row = 0
        self._punctuate = getattr(handler, "punctuate", None)
        self._ready_partitions = getattr(handler, "ready_partitions", None)
        self._ready_soon = getattr(handler, "ready_soon", None)
        self._on_ready = getattr(handler, "on_partition_ready", None)
        self._on_revoked = getattr(handler, "on_partition_revoked", None)

    def assigned_partitions(self) -> set[int]:
        """The partitions this process owns and has restored (a snapshot; thread-safe)."""
        return set(self._assigned)

    def stop(self) -> None:
        """Ask the loop to finish its transaction and shut down; returns at once (thread-safe)."""
        self._stopping.set()

    def run(self) -> None:
        """Process until ``stop``; returns after a clean shutdown.

        Raises:
            ProcessorFenced: another process took over this transactional id, or Kafka
                reported a fatal error.
            RestartRequired: a Kafka call never returned, or the transaction coordinator
                did not answer; a fresh start of the processor recovers.
        """
        config = self.config
        log.info("processor %s starting on %s (group %s)", config.transactional_id, config.input_topic,
                 config.group_id)
        watch = StallWatch(config.transactional_id, STALL_REPORT_S)
        watch.start()
        try:
            writer = self._writer = TransactionalWriter(config.producer_settings())
            # Before joining the group: the predecessor's open transaction (same id) is aborted
            # now, so neither the offset fetch nor the changelog restore waits for its timeout.
            with watch.step("init_transactions"):
                writer.init()
            if config.changelog_topic is not None:
                self._restorer = ChangelogRestorer(config.client, config.changelog_topic)
            self._fencer = DepartedOwnerFencer(config.client, config.group_id, config.transaction_timeout_ms)
            if config.changelog_topic is not None and config.standby_replicas > 0:
                self._standby = StandbyReplicas(config.client, config.changelog_topic, config.group_id,
                                                config.transactional_id, config.standby_replicas,
                                                config.store_folder)
            consumer = self._consumer = Consumer(metrics.reporting_lag(config.consumer_settings()))
            consumer.subscribe(
                [config.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            batch_wait_s = config.max_batch_ms / 1000
            while not self._stopping.is_set():
                if self._pending:
                    with watch.step("takeover"):
                        self._advance_takeovers()
                restoring = self._restorer is not None and self._restorer.restoring
                with watch.step("consume (with its rebalance callbacks)"):
                    messages = self._next_batch(consumer, RESTORING_POLL_S if restoring else batch_wait_s)
                with watch.step("transaction"):
                    self._turn(messages)
                if self._standby is not None:
                    with watch.step("standby catch-up"):
                        self._standby.refresh(self._stores.keys() | self._pending.keys())
                        # Between transactions (the handler folds in this thread only); little
                        # after a turn with input, so a burst's transactions are not slowed.
                        self._standby.catch_up(self._apply_restored, CATCH_UP_RECORDS_BUSY if messages
                                               else CATCH_UP_RECORDS)
        finally:
            with watch.step("shutdown"):
                self._shutdown()
                # Closing the consumer revokes them too; not when its close failed.
                self._release(list(self._pending), "closed")
            watch.stop()
        log.info("processor %s stopped", config.transactional_id)

    def _next_batch(self, consumer: Consumer, timeout_s: float) -> list[Message]:
        """What has arrived, up to ``max_batch_records``; waits up to ``timeout_s`` only when nothing has.

        ``consume(n, timeout)`` would wait the whole timeout unless ``n`` records arrive: at
        low load every record would sit out ``max_batch_ms`` in each hop.
        """
        limit = self.config.max_batch_records
        messages = consumer.consume(limit, 0)
        if messages or self._handler_ready():
            return messages
        if self._ready_soon is not None and self._ready_soon():
            timeout_s = min(timeout_s, READY_SOON_POLL_S)
        first = consumer.poll(timeout_s)
        if first is None:
            return []
        return [first, *consumer.consume(limit - 1, 0)]

    # -- one transaction -------------------------------------------------------------

    def _turn(self, messages: list[Message]) -> None:
        stores = self._stores
        decode = self.handler.decode
        records: dict[int, list[Record]] = {}
        dead: list[tuple[Message, BaseException]] = []
        span: dict[int, list[int]] = {}  # partition -> [first offset, last offset]
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
                continue
            partition = message.partition()
            if partition not in stores:
                pending = self._pending.get(partition)
                if pending is not None and pending.skipped is None:
                    pending.skipped = message.offset()  # fetched before the pause took hold
                continue  # or revoked during this consume call: the new owner reads it again
            offset = message.offset()
            seen = span.get(partition)
            if seen is None:
                span[partition] = [offset, offset]
            else:
                seen[1] = offset
            topic, key, raw = message.topic(), message.key(), message.value()
            try:
                value = decode(topic, key, raw)
            except Exception as err:
                dead.append((message, err))
                continue
            batch = records.get(partition)
            if batch is None:
                batch = records[partition] = []
            batch.append(Record(topic, partition, offset, key, value, message.timestamp()[1], message.headers()))
        due = self._due_punctuations()
        if not span and not due:
            self._writer.poll()  # type: ignore[union-attr]
            return
        self._transact(records, dead, span, due)

    def _transact(
        self,
        records: dict[int, list[Record]],
        dead: list[tuple[Message, BaseException]],
        span: dict[int, list[int]],
        due: list[int],
    ) -> None:
        writer = self._writer
        consumer = self._consumer
        assert writer is not None and consumer is not None
        stores = self._stores
        config = self.config
        changelog: dict[int, list[ChangelogEntry]] = {}
        with_changelog = config.changelog_topic is not None
        try:
            if span:
                writer.begin()
            for message, err in dead:
                self._dead_letter(writer, message, err)
            for partition, batch_records in records.items():
                entries = changelog.setdefault(partition, []) if with_changelog else None
                self.handler.process(Batch(partition, stores[partition], batch_records, writer, entries))
            if due:
                self._punctuate_partitions(writer, due, changelog if with_changelog else None)
            if config.changelog_topic is not None:
                for partition, entries in changelog.items():
                    if entries:
                        writer.produce_changelog(config.changelog_topic, partition, entries)
            if not writer.in_transaction:
                return  # a punctuation that emitted nothing
            # The committing ID travels with the offsets: a taker fences it if it has gone.
            owner = owner_metadata(config.transactional_id)
            offsets = [TopicPartition(config.input_topic, p, last + 1, owner) for p, (_, last) in span.items()]
            began = time.perf_counter()
            writer.commit(offsets, consumer.consumer_group_metadata() if offsets else None)
            metrics.transaction_committed(config.group_id, time.perf_counter() - began)
        except AbortRequired as err:
            self._abort(err, span, due)
            return
        except BaseException:
            log.exception("processing failed; aborting the open transaction and stopping")
            writer.abort_quietly()
            raise
        self._aborts_in_a_row = 0
        self._apply_committed(changelog, writer.changelog_offsets)

    def _punctuate_partitions(
        self, writer: TransactionalWriter, due: list[int], changelog: dict[int, list[ChangelogEntry]] | None
    ) -> None:
        assert self._punctuate is not None
        now = time.monotonic()
        now_ms = int(time.time() * 1000)
        for partition in due:
            entries = None if changelog is None else changelog.setdefault(partition, [])
            self._punctuate(Batch(partition, self._stores[partition], [], writer, entries), now_ms)
            self._last_punctuate[partition] = now

    def _due_punctuations(self) -> list[int]:
        if self._punctuate is None:
            return []
        now = time.monotonic()
        interval = self.config.punctuate_interval_ms / 1000
        ready = self._handler_ready()
        return [p for p, last in self._last_punctuate.items() if now - last >= interval or p in ready]

    def _handler_ready(self) -> set[int]:
        """The assigned partitions the handler has work for without input (``ready_partitions``)."""
        if self._ready_partitions is None or self._punctuate is None:
            return set()
        return set(self._ready_partitions()) & self._last_punctuate.keys()

    def _apply_committed(self, changelog: dict[int, list[ChangelogEntry]], offsets: dict[int, int]) -> None:
        apply = self._apply_changelog
        for partition, entries in changelog.items():
            if not entries:
                continue
            store = self._stores[partition]
            store_batch = store.batch()
            for key, value, decoded in entries:
                apply(store_batch, store, key, value, decoded)
            store.write(store_batch, changelog_offset=offsets[partition])

    def _dead_letter(self, writer: TransactionalWriter, message: Message, err: BaseException) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        log.warning("record %s-%d@%d cannot be decoded (%s); sending it to %s",
                    topic, partition, offset, type(err).__name__, self.config.dlq_topic)
        headers = dead_letter_headers(str(err), type(err).__name__, str(topic), partition, offset,
                                      message.headers())
        writer.produce(self.config.dlq_topic, message.key(), message.value(), None, headers)
        metrics.dead_lettered(self.config.group_id, type(err).__name__)

    def _abort(self, err: AbortRequired, span: dict[int, list[int]], due: list[int]) -> None:
        """Abort, rewind the batch's partitions to their committed offsets, reset handler caches."""
        log.warning("transaction aborted (%s); replaying partitions %s from their committed offsets",
                    err, sorted(span))
        assert self._writer is not None and self._consumer is not None
        self._writer.abort()
        metrics.transaction_aborted(self.config.group_id)
        self._aborts_in_a_row += 1
        if self._aborts_in_a_row >= MAX_ABORTS_IN_A_ROW:
            raise ProcessorFenced(
                f"{self._aborts_in_a_row} transactions in a row failed, the last with: {err}. Giving up "
                "instead of replaying the same batch forever; fix the cause (e.g. a record larger than "
                "the broker accepts) and restart."
            )
        if self._aborts_in_a_row > 1:
            time.sleep(min(ABORT_BACKOFF_MAX_S, ABORT_BACKOFF_S * self._aborts_in_a_row))
        for partition, (first, _) in span.items():
            if partition in self._stores:
                self._rewind(partition, first, "for a replay")
        # The handler may have cached what the aborted batch did: let it start over.
        for partition in sorted(set(span) | set(due)):
            store = self._stores.get(partition)
            if store is None:
                continue
            if self._on_revoked is not None:
                self._on_revoked(partition)
            if self._on_ready is not None:
                self._on_ready(partition, store)

    def _consumer_error(self, error: KafkaError) -> None:
        # A consumer's only fatal error is a static member fenced by another with its
        # group.instance.id: after a broker restart, librdkafka's own rejoin can do that to
        # itself. A new consumer clears it; a real second process with this ID keeps
        # fencing, and the runtime stops restarting after a few in a row.
        if error.fatal() or error.code() == KafkaError._FATAL:
            raise RestartRequired(
                f"the consumer of group {self.config.group_id} hit a fatal error: {error.str()}; "
                "starting the processor again with a new consumer"
            )
        now = time.monotonic()
        if now - self._error_logged_at > ERROR_LOG_INTERVAL_S:
            self._error_logged_at = now
            log.warning("consumer of %s: %s", self.config.input_topic, error.str())

    # -- rebalancing -----------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        fresh = sorted(tp.partition for tp in partitions
                       if tp.partition not in self._stores and tp.partition not in self._pending)
        log.info("assigned %s partitions %s", self.config.input_topic, fresh)
        # Taken in here rather than after the callback, so they are paused before any fetch.
        consumer.incremental_assign(partitions)
        if not fresh:
            if not self._pending:
                self.ready.set()
            return
        consumer.pause([TopicPartition(self.config.input_topic, p) for p in fresh])
        if self._standby is not None:
            # The standby copy becomes the store: the restore reads only what it had not.
            self._standby.release(fresh)
            self._standby.refresh_soon()
        opened: dict[int, PartitionStore] = {}
        try:
            for partition in fresh:
                opened[partition] = PartitionStore.open(self.config.store_folder(partition))
        except BaseException:
            for store in opened.values():
                store.close()
            raise
        for partition, store in opened.items():
            self._pending[partition] = Pending(store)  # owned from here: closed on revoke or shutdown
        if self._restorer is not None:
            # Committed records are folded meanwhile; the end is known after the fence.
            self._restorer.begin(opened)
        # Read here, by the consumer taking them: an admin client's group request pending
        # across a broker's return can abort the process (fencing.py).
        owners = self._fencer.last_owners(consumer, self.config.input_topic, fresh) if self._fencer else {}
        self._takeovers.append(start_takeover(opened, lambda taken: self._prepare_takeover(taken, owners),
                                              f"{self.config.transactional_id}-takeover"))

    def _prepare_takeover(self, partitions: list[int], owners: dict[int, str | None]) -> Watermarks:
        """On a helper thread: fence the departed owner, then list the changelog's offsets.

        The listing comes after the fence: a departed owner that still ran (a zombie) could
        otherwise commit records past the listed end, and the restore would miss them.
        """
        began = time.monotonic()
        if self._fencer is not None:
            self._fencer.fence_departed(owners, self.config.transactional_id)
        fenced = time.monotonic()
        marks = self._restorer.watermarks(partitions) if self._restorer is not None else {}
        log.info("took over %s partitions %s: owners checked and fenced in %.2f s, changelog offsets listed "
                 "in %.2f s", self.config.input_topic, partitions, fenced - began, time.monotonic() - fenced)
        return marks

    def _advance_takeovers(self) -> None:
        """Set where the restores of taken-over partitions whose fence is done end, fold a batch
        of the changelog into the stores being restored, and hand the caught-up ones to the handler."""
        for takeover in [t for t in self._takeovers if t.watermarks.done()]:
            self._takeovers.remove(takeover)
            # Partitions revoked since (or revoked and assigned again, with a new store) are skipped.
            stores = {p: s for p, s in takeover.stores.items()
                      if p in self._pending and self._pending[p].store is s}
            if not stores:
                continue
            marks = takeover.watermarks.result()  # a listing that failed stops the processor
            if self._restorer is None:
                self._adopt(sorted(stores))
            else:
                done = self._restorer.set_ends({p: marks[p] for p in stores})
                self._adopt([report.partition for report in done])
        if self._restorer is not None and self._restorer.restoring:
            self._adopt([report.partition for report in self._restorer.step(self._apply_restored)])

    def _adopt(self, partitions: list[int]) -> None:
        """Hand fenced and restored partitions to the handler and resume their input."""
        if not partitions:
            return
        consumer = self._consumer
        assert consumer is not None
        now = time.monotonic()
        waited = []
        for partition in partitions:
            pending = self._pending.pop(partition)
            waited.append(now - pending.assigned_at)
            if pending.skipped is not None:
                self._rewind(partition, pending.skipped, "before its first batch", must=True)
            self._stores[partition] = pending.store
            self._last_punctuate[partition] = now
            if self._on_ready is not None:
                self._on_ready(partition, pending.store)
        consumer.resume([TopicPartition(self.config.input_topic, p) for p in partitions])
        self._assigned = frozenset(self._stores)
        log.info("partitions %s of %s ready %.2f s after their assignment", sorted(partitions),
                 self.config.input_topic, max(waited))
        if not self._pending:
            self.ready.set()

    def _rewind(self, partition: int, offset: int, why: str, must: bool = False) -> None:
        """Seek ``partition`` back to ``offset``; ``must``: records past it were dropped, so a
        failed seek restarts the processor (from the committed offsets) instead of going on."""
        assert self._consumer is not None
        try:
            self._consumer_calls.run("seek", SEEK_BOUND_S, self._consumer.seek,
                                     TopicPartition(self.config.input_topic, partition, offset))
        except KafkaException as err:
            if must:
                raise RestartRequired(f"could not rewind {self.config.input_topic}-{partition} {why}: {err}; "
                                      "restarting the processor, which resumes from the committed offsets") from err
            # A partition that is being revoked has no position to rewind; its new owner
            # starts from the committed offset anyway.
            log.info("could not rewind %s-%d: %s", self.config.input_topic, partition, err)
        except CallHung as hung:
            self._consumer_stuck = hung  # closed only once the seek returns (``_shutdown``)
            # Not rewound, the partition would go on past records it never processed.
            raise RestartRequired(f"{hung} rewinding {self.config.input_topic}-{partition} {why}; "
                                  "restarting the processor, which resumes from the committed offsets") from hung

    def _apply_restored(self, batch: StoreBatch, store: PartitionStore, key: bytes | None, value: bytes | None) -> None:
        self._apply_changelog(batch, store, key, value, None)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release([tp.partition for tp in partitions], "revoked")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release([tp.partition for tp in partitions], "lost")

    def _release(self, partitions: list[int], why: str) -> None:
        if partitions:
            log.info("%s %s partitions %s", why, self.config.input_topic, sorted(partitions))
            if self._standby is not None:
                self._standby.refresh_soon()  # the partitions it lost may be its to follow now
        for partition in partitions:
            pending = self._pending.pop(partition, None)
            if pending is not None:
                if self._restorer is not None:
                    self._restorer.cancel([partition])
                pending.store.close()
                continue
            store = self._stores.pop(partition, None)
            self._last_punctuate.pop(partition, None)
            if store is None:
                continue
            if self._on_revoked is not None:
                try:
                    self._on_revoked(partition)
                finally:
                    store.close()
            else:
                store.close()
        self._assigned = frozenset(self._stores)

    # -- shutdown --------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self._writer is not None:
            self._writer.abort_quietly()
        # Before the consumer's close, whose revoke callback runs on its worker thread: a close
        # still running when its bound ends must find no store left to close.
        self._release(list(self._stores), "closed")
        if self._consumer is not None:
            self._close_consumer(self._consumer)
            self._consumer = None
        if self._restorer is not None:
            self._restorer.close()
            self._restorer = None
        if self._fencer is not None:
            self._fencer.close()
            self._fencer = None
        if self._standby is not None:
            self._standby.close()
            self._standby = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _close_consumer(self, consumer: Consumer) -> None:
        """Leave the group and close the consumer, waiting at most ``CONSUMER_CLOSE_BOUND_S``.

        A consumer with a call stuck inside it is closed only once that call returns.
        """
        name = f"the consumer of {self.config.transactional_id}"
        stuck, self._consumer_stuck = self._consumer_stuck, None
        if stuck is not None:
            close_when_returned(stuck, name, consumer.close)
            return
        try:
            self._consumer_calls.run("close", CONSUMER_CLOSE_BOUND_S, consumer.close)
        except CallHung as hung:  # goes on by itself, its worker holding the consumer
            log.warning("close of %s %s; shutting down without waiting for it", name, hung)
        except Exception as err:
            log.warning("closing %s failed: %s", name, err)
        finally:
            self._consumer_calls.close()


def _no_changelog(*_: Any) -> None:
    raise AssertionError("a processor without a changelog topic folded a changelog record")


def run_until_signal(processor: Processor) -> None:
    """Run ``processor`` until SIGTERM or SIGINT, then stop it gracefully (main thread only)."""

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s; stopping after the current transaction", signal.Signals(signum).name)
        processor.stop()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        processor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
