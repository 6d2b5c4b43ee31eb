"""Activity workers: run the tasks of ``kwf.activities`` and send results to the inbox.

At-least-once: an offset is committed only once every task at or below it has had its
result delivered to the inbox, so a crash re-delivers the unfinished ones; the
orchestrator drops the duplicate results. Tasks that finished above that offset are
listed in the commit's metadata, and the partition's next owner skips them: after a
crash only the tasks that were running (or whose result was in transit) run again.
A plain activity holds one of the worker's ``threads`` slots from its start until its
offset is committed, not merely until it returns, so running and in-transit plain tasks
together never exceed the thread count: that is all a crash can make run again.
All Kafka calls happen on the poll thread; activities run on one asyncio loop
(``async def`` awaited there, plain functions in a bounded thread pool), so thousands
of waiting async activities cost no threads.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from engine.core.clock import now_utc
from engine.core.history import FailureDetails, HistoryEvent
from engine.edges.activities import ActivityOutcome, async_run_activity, result_event
from engine.observability.metrics import observed_activity
from engine.replay.registry import Registry
from engine.state.codec import ActivityTask, decode_task, encode_event
from engine.state.config import Settings
from engine.state.topics import ACTIVITIES, DLQ, INBOX
from streams.dlq import dead_letter_headers
from streams.handler import Headers
from streams.metrics import dead_lettered, reporting_lag

log = logging.getLogger("engine.edges.worker")

# Tasks fetched per poll: enough to keep the pool busy, small enough to stay responsive.
POLL_BATCH = 500
# Commit finished offsets at most this often: each commit is a broker round trip, and a
# result delivered but not yet committed runs again after a crash. Plain activities waiting
# for a slot (see the module docstring) do not wait for it: their commit goes out at once.
COMMIT_INTERVAL_S = 0.02
# How long a poll waits for tasks while some are running: finished results wait for the
# poll to return before they are sent, so keep it short then (a wake-up costs microseconds);
# idle, save the CPU. A poll returns as soon as a task arrives either way.
POLL_BUSY_S = 0.002
POLL_IDLE_S = 0.05
# Commit metadata that lists the finished offsets above the committed one. Brokers refuse
# more than offset.metadata.max.bytes (4096 by default); past this the list is cut, and
# the tasks left out merely run again.
DONE_MARK = "kwf-done:"
MAX_METADATA_CHARS = 3000


@dataclass
class PartitionOffsets:
    """Offsets of one partition in the order received, and which of them are finished.

    The committed offset is the first unfinished one; the finished ones above it travel in
    the commit's metadata (``done_metadata``), so a new owner can skip them (``skip``).
    """

    pending: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    position: int | None = None  # every offset below it is finished
    changed: bool = False  # finished offsets not committed yet
    skip: set[int] = field(default_factory=set)  # finished by a previous owner
    slots: int = 0  # thread slots held by finished tasks until their commit

    def add(self, offset: int) -> None:
        self.pending.append(offset)

    def finish(self, offset: int, holds_slot: bool = False) -> None:
        self.done.add(offset)
        self.changed = True
        self.slots += holds_slot
        while self.pending and self.pending[0] in self.done:
            head = self.pending.popleft()
            self.done.discard(head)
            self.position = head + 1
        if self.pending:
            self.position = self.pending[0]

    def take_commit(self) -> tuple[int, str, int] | None:
        """The offset and metadata to commit now and the slots its commit frees, or None if
        nothing changed. A failed commit hands the slots back with ``retry``."""
        if not self.changed or self.position is None:
            return None
        self.changed, slots, self.slots = False, self.slots, 0
        return self.position, done_metadata(self.position, self.done), slots

    def retry(self, slots: int) -> None:
        """The commit taken with ``take_commit`` failed: take it again next time."""
        self.changed = True
        self.slots += slots


def done_metadata(position: int, done: set[int]) -> str:
    """``DONE_MARK`` and the finished offsets above ``position``, as distances from it."""
    text = DONE_MARK
    for offset in sorted(o for o in done if o > position):
        part = f"{offset - position},"
        if len(text) + len(part) > MAX_METADATA_CHARS:
            break
        text += part
    return text.rstrip(",")


def skipped_offsets(position: int, metadata: str | None) -> set[int]:
    """The offsets a commit's metadata says were finished (see ``done_metadata``)."""
    if position < 0 or not metadata or not metadata.startswith(DONE_MARK):
        return set()
    try:
        return {position + int(d) for d in metadata[len(DONE_MARK):].split(",") if d}
    except ValueError:
        log.warning("ignored unreadable commit metadata %r", metadata[:100])
        return set()


class ActivityWorker:
    """Consumes activity tasks and runs them with the activities of ``registry``.

    Args:
        settings: Where Kafka is, topic names.
        registry: The activities this worker can run.
        max_in_flight: Tasks running or queued at once; polling pauses beyond it.
        threads: Threads for plain (blocking) activities.
    """

    def __init__(self, settings: Settings, registry: Registry, *, max_in_flight: int = 10_000,
                 threads: int = 32) -> None:
        self.settings = settings
        self.registry = registry
        self.max_in_flight = max_in_flight
        self.threads = threads
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._finished: queue.SimpleQueue[tuple[Message, ActivityTask | None, ActivityOutcome, bool]] = \
            queue.SimpleQueue()
        # Created on the activity loop in run(); released from the poll thread after commits.
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting_for_slot = 0  # plain tasks waiting for a slot (read as a hint only)
        self._slots_in_use = 0  # changed on the activity loop only; read elsewhere as a hint
        self._offsets: dict[int, PartitionOffsets] = {}
        self._in_flight = 0
        self._paused = False
        self.inbox = settings.topic(INBOX)
        self.topic = settings.topic(ACTIVITIES)
        # Tasks this process already runs for its orchestrator (local activities): given a
        # task read from Kafka, its run's future, whose result is delivered instead of a new run
        # (an outcome of None: the orchestrator recorded it already, nothing is delivered).
        self.claimed: Callable[[ActivityTask], Future[tuple[ActivityOutcome, bool]] | None] = lambda task: None

    def stop(self) -> None:
        self._stop.set()

    def submit(self, task: ActivityTask, headers: Headers | None = None) -> Future[tuple[ActivityOutcome, bool]] | None:
        """Run a task on this worker's loop and executor now, as one read from Kafka runs
        (slots, timeout, metrics, span); None before ``run()`` has started or after it stopped.
        The future gives its outcome and whether it holds a slot (see ``free_slot``)."""
        loop = self._loop
        if loop is None or self._stop.is_set() or not loop.is_running():
            return None
        return asyncio.run_coroutine_threadsafe(self._run_task(task, headers), loop)

    def has_free_slot(self) -> bool:
        """Whether a plain task could take a slot now (a hint: read from another thread)."""
        return self._slots is not None and self._slots_in_use < self.threads and not self._waiting_for_slot

    def free_slot(self) -> None:
        """Give back the slot a task run by ``submit`` held, once its result is recorded."""
        self._free_slots(1)

    def consumer_settings(self) -> dict[str, str]:
        """The settings of the task consumer: the runtime's client settings plus the group's."""
        return {
            **self.settings.client(),
            "group.id": f"{self.settings.app_prefix}.workers",
            "enable.auto.commit": "false",
            "auto.offset.reset": "earliest",
            # Tasks are written in transactions by the orchestrator: see only committed ones.
            "isolation.level": "read_committed",
            # A killed worker's tasks move to another within seconds.
            "session.timeout.ms": "6000",
            "heartbeat.interval.ms": "1000",
            # Fresh tasks should not wait for a fetch to fill up.
            "fetch.wait.max.ms": "10",
        }

    def run(self) -> None:
        """Poll, run and report until ``stop()``; blocking."""
        loop = asyncio.new_event_loop()
        loop.set_default_executor(ThreadPoolExecutor(self.threads, thread_name_prefix="kwf-activity"))
        self._loop = loop
        self._slots = asyncio.Semaphore(self.threads)  # bound to the loop that first awaits it
        loop_thread = threading.Thread(target=loop.run_forever, name="kwf-activity-loop", daemon=True)
        loop_thread.start()
        consumer = Consumer(reporting_lag(self.consumer_settings()))
        producer = Producer(self.settings.producer())
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        last_commit = 0.0
        try:
            while not self._stop.is_set():
                self._flow_control(consumer)
                wait = POLL_BUSY_S if self._in_flight else POLL_IDLE_S
                messages = [] if self._paused else _poll(consumer, wait)
                if self._paused:
                    consumer.poll(0.05)  # keeps the group membership and callbacks alive
                starts = [start for message in messages if (start := self._start(producer, message)) is not None]
                if starts:
                    # One wake-up of the loop per batch, not one per task.
                    loop.call_soon_threadsafe(self._launch, loop, starts)
                self._report(producer)
                producer.poll(0)
                now = loop.time()
                if now - last_commit >= COMMIT_INTERVAL_S or (self._waiting_for_slot and self._slots_to_free()):
                    self._commit(consumer)
                    last_commit = now
        finally:
            producer.flush(10)
            self._report(producer)
            producer.flush(10)
            self._commit(consumer, asynchronous=False)
            consumer.close()
            loop.call_soon_threadsafe(loop.stop)
            loop_thread.join(5)

    # -- the poll thread -----------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            committed = consumer.committed(partitions, timeout=10)
        except Exception as err:  # without it finished tasks merely run again
            log.warning("could not read committed offsets: %s", err)
            committed = []
        for tp in committed:
            offsets = self._offsets.setdefault(tp.partition, PartitionOffsets())
            offsets.skip = skipped_offsets(tp.offset, tp.metadata)
        for tp in partitions:
            self._offsets.setdefault(tp.partition, PartitionOffsets())
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit(consumer, asynchronous=False)
        for tp in partitions:
            # Results of tasks still running are sent anyway; the new owner re-runs them.
            offsets = self._offsets.pop(tp.partition, None)
            if offsets is not None:
                self._free_slots(offsets.slots)

    def _flow_control(self, consumer: Consumer) -> None:
        if not self._paused and self._in_flight >= self.max_in_flight:
            consumer.pause(consumer.assignment())
            self._paused = True
        elif self._paused and self._in_flight <= self.max_in_flight // 2:
            consumer.resume(consumer.assignment())
            self._paused = False

    def _start(self, producer: Producer, message: Message) -> tuple[Message, ActivityTask] | None:
        """Account for a fetched task; return it if it is to run."""
        if message.error() is not None:
            if message.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", message.error())
            return None
        offsets = self._offsets.setdefault(message.partition(), PartitionOffsets())
        offsets.add(message.offset())
        if message.offset() in offsets.skip:
            # Its result reached the inbox before the previous owner could commit past it.
            offsets.skip.discard(message.offset())
            offsets.finish(message.offset())
            return None
        self._in_flight += 1
        try:
            task = decode_task(message.value())
        except Exception as err:
            self._to_dead_letters(producer, message, err)
            self._finished.put((message, None, ActivityOutcome(), False))
            return None
        claimed = self.claimed(task)
        if claimed is not None:
            # Running (or done) here already: deliver that run's result, with its slot.
            claimed.add_done_callback(functools.partial(self._claimed_done, message, task))
            return None
        return message, task

    def _claimed_done(self, message: Message, task: ActivityTask, done: Future[tuple[ActivityOutcome, bool]]) -> None:
        outcome, holds_slot = _outcome(done)
        if outcome is None:  # its result is in history already (an early run): nothing to send
            self._finished.put((message, None, ActivityOutcome(), holds_slot))
            return
        self._finished.put((message, task, outcome, holds_slot))

    def _launch(self, loop: asyncio.AbstractEventLoop, starts: list[tuple[Message, ActivityTask]]) -> None:
        """Run on the loop: start one asyncio task per activity task."""
        for message, task in starts:
            running = loop.create_task(self._run_task(task, message.headers()))

            def finished(done: Any, m: Message = message, t: ActivityTask = task) -> None:
                self._finished.put((m, t, *_outcome(done)))

            running.add_done_callback(finished)

    async def _run_task(self, task: ActivityTask, headers: Headers | None = None) -> tuple[ActivityOutcome, bool]:
        """Run one activity; a plain one first takes a slot (see the module docstring).
        Returns its outcome and whether it holds a slot until its offset is committed."""
        entry = self.registry.get_activity(task.name)
        holds_slot = entry is not None and not inspect.iscoroutinefunction(entry.fn) and self._slots is not None
        if holds_slot:
            assert self._slots is not None
            self._waiting_for_slot += 1
            try:
                await self._slots.acquire()
                self._slots_in_use += 1
            finally:
                self._waiting_for_slot -= 1
        return await self._run_activity(task, headers), holds_slot

    @observed_activity
    async def _run_activity(self, task: ActivityTask) -> ActivityOutcome:
        """Run one activity under ``KWF_ACTIVITY_TIMEOUT_S``, when set."""
        running = async_run_activity(self.registry, task.name, task.input, instance_id=task.instance_id,
                                     task_id=task.task_id, propagated_history=task.propagated_history)
        limit = self.settings.activity_timeout_s
        if not limit:
            return await running
        try:
            # An async activity is cancelled; a plain one keeps its thread until it returns,
            # and what it returns then is dropped.
            return await asyncio.wait_for(running, limit)
        except TimeoutError:  # the activity's own errors are in its outcome, not raised
            return ActivityOutcome(failure=FailureDetails(
                "ActivityTimeout",
                f"activity {task.name!r} (task {task.task_id} of {task.instance_id}) ran longer than {limit:g} s "
                "(KWF_ACTIVITY_TIMEOUT_S); its result, if any, is ignored",
            ))

    def _report(self, producer: Producer) -> None:
        while True:
            try:
                message, task, outcome, holds_slot = self._finished.get_nowait()
            except queue.Empty:
                return
            if task is None:
                self._done(message, holds_slot)
                continue
            event = HistoryEvent(task.instance_id, task.execution_id, -1, now_utc(), self._result(task, outcome))
            # A task from another application names that application's inbox.
            producer.produce(
                task.reply_to or self.inbox, key=task.instance_id.encode(), value=encode_event(event),
                on_delivery=self._delivered_callback(message, holds_slot), headers=message.headers(),
            )

    def _result(self, task: ActivityTask, outcome: ActivityOutcome) -> Any:
        return result_event(task.task_id, task.name, outcome, self.settings.max_payload_bytes)

    def _delivered_callback(self, message: Message, holds_slot: bool) -> Callable[[Any, Message], None]:
        def delivered(err: Any, _: Message) -> None:
            if err is not None:
                # Not committed: the task runs again after a restart or rebalance.
                log.error("could not deliver the result of %s: %s", message.key(), err)
                self._in_flight -= 1
                self._free_slots(holds_slot)
                return
            self._done(message, holds_slot)

        return delivered

    def _done(self, message: Message, holds_slot: bool) -> None:
        self._in_flight -= 1
        offsets = self._offsets.get(message.partition())
        if offsets is not None:
            offsets.finish(message.offset(), holds_slot)
        else:  # the partition moved on: the new owner runs it again anyway
            self._free_slots(holds_slot)

    def _slots_to_free(self) -> bool:
        return any(offsets.slots for offsets in self._offsets.values())

    def _commit(self, consumer: Consumer, asynchronous: bool = True) -> None:
        ready: list[TopicPartition] = []
        slots: dict[int, int] = {}
        for partition, offsets in self._offsets.items():
            commit = offsets.take_commit()
            if commit is not None:
                ready.append(TopicPartition(self.topic, partition, commit[0], commit[1]))
                slots[partition] = commit[2]
        if not ready:
            return
        # Slots are freed only once the broker has the commit: wait for it when any are held.
        synchronous = not asynchronous or any(slots.values())
        try:
            consumer.commit(offsets=ready, asynchronous=not synchronous)
        except Exception as err:  # a rebalance under way: the next commit carries it
            log.info("offset commit deferred: %s", err)
            for partition, held in slots.items():
                if partition in self._offsets:
                    self._offsets[partition].retry(held)
                else:
                    self._free_slots(held)
            return
        self._free_slots(sum(slots.values()))

    def _free_slots(self, count: int) -> None:
        if count and self._loop is not None and self._slots is not None:
            for _ in range(count):
                self._loop.call_soon_threadsafe(self._release_slot)

    def _release_slot(self) -> None:
        """On the activity loop: a slot is free again."""
        assert self._slots is not None
        self._slots_in_use -= 1
        self._slots.release()

    def _to_dead_letters(self, producer: Producer, message: Message, err: Exception) -> None:
        # The error's text may quote the record: it goes to the dead-letter headers, not the log.
        log.error("undecodable activity task at %s[%d]@%d (%s); sending it to the dead-letter topic",
                  message.topic(), message.partition(), message.offset(), type(err).__name__)
        producer.produce(self.settings.topic(DLQ), key=message.key(), value=message.value(),
                         headers=dead_letter_headers(str(err), type(err).__name__, message.topic(),
                                                     message.partition(), message.offset(), message.headers()))
        dead_lettered(self.consumer_settings()["group.id"], type(err).__name__)


def _poll(consumer: Consumer, timeout: float) -> list[Message]:
    """What has arrived, up to ``POLL_BATCH``; waits up to ``timeout`` only when nothing has
    (``consume(n, timeout)`` would wait the whole timeout unless ``n`` tasks arrive)."""
    messages = consumer.consume(POLL_BATCH, 0)
    if messages:
        return messages
    first = consumer.poll(timeout)
    return [] if first is None else [first, *consumer.consume(POLL_BATCH - 1, 0)]


def _outcome(future: Any) -> tuple[ActivityOutcome, bool]:
    try:
        return future.result()
    except BaseException as err:  # the runner catches activity errors; this is a bug guard
        return ActivityOutcome(failure=FailureDetails(type(err).__name__, str(err))), False

