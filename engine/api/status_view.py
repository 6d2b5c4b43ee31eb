"""A local, always-current view of ``kwf.status``: the latest status of every instance.

A background thread reads every partition of the compacted status topic from the
beginning (read_committed) into a RocksDB store, so memory does not grow with the
number of instances. Readers wait on a condition for the view to show what they expect
(read-your-writes for the client).

The topic may not exist yet when the view starts, and partitions may be added to it
later: the thread looks its partitions up again from time to time and reads new ones
from their beginning. The view is caught up once it has read every partition there is
to its end; a topic with no partitions is never caught up.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from engine.state.codec import StatusRecord, decode_status
from engine.state.config import Settings
from engine.state.topics import STATUS
from streams.store import PartitionStore

log = logging.getLogger("engine.api.status_view")

# How long a new view may take to read the topic up to its end before start() gives up.
CATCH_UP_TIMEOUT_S = 60.0
# Status records read per call; a view catching up reads in large steps.
READ_BATCH = 1000
# How long one read waits when nothing arrives; bounds how late a stop() is noticed.
IDLE_WAIT_S = 0.2
# Partitions can be added to a topic at any time: the view looks for new ones this often.
PARTITION_LOOKUP_S = 5.0
# A topic not created yet (a client started before any runtime) is looked for more often.
TOPIC_LOOKUP_S = 0.5
# One metadata request; a broker that does not answer is retried at the next lookup.
METADATA_TIMEOUT_S = 10.0
# Starts this process made durable that the topic does not show yet; past this many (no
# runtime is reading the inbox) the oldest are forgotten, so memory stays bounded.
PROVISIONAL_LIMIT = 100_000


class StatusView:
    """The latest ``StatusRecord`` per instance, kept current by a consumer thread."""

    _shared: dict[tuple[str, str, str], StatusView] = {}
    _shared_lock = threading.Lock()

    def __init__(self, settings: Settings, folder: Path | None = None) -> None:
        self.settings = settings
        self.topic = settings.topic(STATUS)
        self._folder = folder or Path(tempfile.mkdtemp(prefix="kwf-status-view-"))
        self._owns_folder = folder is None
        self._store = PartitionStore.open(self._folder)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kwf-status-view", daemon=True)
        # instance -> (the PENDING record this process answers with, the execution it replaces)
        self._provisional: OrderedDict[str, tuple[StatusRecord, str | None]] = OrderedDict()

    @classmethod
    def shared(cls, settings: Settings) -> StatusView:
        """One started view per (cluster, topic prefix, application) in this process."""
        key = (settings.bootstrap_servers, settings.topic_prefix, settings.app_id)
        with cls._shared_lock:
            view = cls._shared.get(key)
            if view is None or view._stop.is_set():
                view = cls._shared[key] = cls(settings)
                view.start()
                atexit.register(view.close)
            return view

    @classmethod
    def close_shared(cls, topic_prefix: str | None = None) -> None:
        """Close the shared views of ``topic_prefix`` (None: every one), before the topics or
        the broker they read go away."""
        with cls._shared_lock:
            closing = [key for key in cls._shared if topic_prefix is None or key[1] == topic_prefix]
            views = [cls._shared.pop(key) for key in closing]
        for view in views:
            view.close()

    def start(self, timeout: float = CATCH_UP_TIMEOUT_S) -> None:
        """Start reading; return once the view has read the topic up to its end."""
        self._thread.start()
        if not self._caught_up.wait(timeout):
            raise TimeoutError(
                f"the status view did not catch up with {self.topic} within {timeout:.0f} s "
                f"(broker {self.settings.bootstrap_servers}): {self._error or 'no answer'}"
            )

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._store.close()
        if self._owns_folder:
            shutil.rmtree(self._folder, ignore_errors=True)

    def get(self, instance_id: str) -> StatusRecord | None:
        raw = self._store.get(instance_id.encode())
        status = None if raw is None else decode_status(raw)
        provisional = self._provisional.get(instance_id)
        if provisional is None:
            return status
        record, replaced = provisional
        if status is not None and status.execution_id != replaced:
            self._provisional.pop(instance_id, None)  # the runtime's word replaces ours
            return status
        return record

    def _settle(self, key: bytes | None, value: bytes | None) -> None:
        """The topic has news of an instance this process answers for: its word wins once it
        shows an execution other than the replaced one, or the instance's removal."""
        instance_id = (key or b"").decode(errors="replace")
        provisional = self._provisional.get(instance_id)
        if provisional is not None and (value is None or decode_status(value).execution_id != provisional[1]):
            self._provisional.pop(instance_id, None)

    def expect_start(self, record: StatusRecord, replaced: str | None) -> None:
        """Answer for a start this process has made durable on the inbox (``record``, PENDING)
        until the topic shows an execution other than ``replaced`` for its instance.

        A start is durable once the inbox has it; this is read-your-writes without waiting
        for the orchestrator's trip. Other processes see the start when the topic shows it.
        """
        with self._changed:
            self._provisional[record.instance_id] = (record, replaced)
            self._provisional.move_to_end(record.instance_id)
            while len(self._provisional) > PROVISIONAL_LIMIT:
                self._provisional.popitem(last=False)
            self._changed.notify_all()

    def wait_for(self, instance_id: str, accept: Callable[[StatusRecord | None], bool],
                 timeout: float | None) -> StatusRecord | None:
        """Wait until ``accept(status)`` holds; raise TimeoutError after ``timeout`` (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                status = self.get(instance_id)
                if accept(status):
                    return status
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise not_reached(instance_id, timeout, status)
                self._changed.wait(0.5 if remaining is None else min(remaining, 0.5))

    def records(self) -> Iterator[StatusRecord]:
        """Every instance's latest status, ordered by instance ID."""
        for _, raw in self._store.scan_prefix(b""):
            yield decode_status(raw)

    def _run(self) -> None:
        consumer = Consumer({
            **self.settings.client(),
            "group.id": f"{self.settings.app_prefix}.status-view",  # unused: partitions are assigned
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            # Status changes are small and latency matters for clients waiting on them.
            "fetch.wait.max.ms": "10",
            # End-of-partition events tell when the first read has reached the end.
            "enable.partition.eof": "true",
        })
        assigned: set[int] = set()
        at_end: set[int] = set()
        next_lookup = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_lookup:
                    fresh = sorted(self._partitions(consumer) - assigned)
                    if fresh:
                        log.info("status view: reading %s partitions %s", self.topic, fresh)
                        consumer.incremental_assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in fresh])
                        assigned.update(fresh)
                    next_lookup = time.monotonic() + (PARTITION_LOOKUP_S if assigned else TOPIC_LOOKUP_S)
                batch = self._store.batch()
                for message in self._next_messages(consumer):
                    if message.error() is not None:
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            at_end.add(message.partition())
                        else:
                            log.warning("status view: %s", message.error())
                        continue
                    if message.value() is None:
                        batch.delete(message.key())
                    else:
                        batch.put(message.key(), message.value())
                    if self._provisional:
                        self._settle(message.key(), message.value())
                if len(batch):
                    with self._changed:
                        self._store.write(batch)
                        self._changed.notify_all()
                # Caught up once every partition there is has been read to its end; a topic
                # with no partitions yet (not created) is never "read to its end".
                if not self._caught_up.is_set() and assigned and assigned <= at_end:
                    self._caught_up.set()
        except BaseException as err:  # reported through start() and the log
            self._error = err
            log.exception("status view stopped")
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer) -> set[int]:
        """The topic's partitions now; none while it does not exist (yet)."""
        try:
            meta = consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S).topics.get(self.topic)
        except KafkaException as err:
            log.warning("status view: looking up %s failed: %s", self.topic, err)
            return set()
        if meta is None or meta.error is not None:
            return set()
        return set(meta.partitions)

    @staticmethod
    def _next_messages(consumer: Consumer) -> list[Message]:
        """What has arrived; waits (up to ``IDLE_WAIT_S``) only when nothing has.

        ``consume(n, timeout)`` returns early only once ``n`` records arrived: one status
        change would sit out the whole timeout before its waiting client saw it.
        """
        messages = consumer.consume(READ_BATCH, 0)
        if messages:
            return messages
        first = consumer.poll(IDLE_WAIT_S)
        return [] if first is None else [first, *consumer.consume(READ_BATCH - 1, 0)]


def not_reached(instance_id: str, timeout: float | None, status: StatusRecord | None) -> TimeoutError:
    """The error of a wait for ``instance_id`` that timed out, naming what was last seen."""
    seen = status.runtime_status.name if status else "no such instance"
    return TimeoutError(f"instance {instance_id} did not reach the expected state within {timeout or 0:.1f} s "
                        f"(last seen: {seen})")
