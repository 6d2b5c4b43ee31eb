"""A local, always-current view of ``kwf.status``: the latest status of every instance.

A background thread reads every partition of the compacted status topic from the
beginning (read_committed) into a RocksDB store, so memory does not grow with the
number of instances. Readers wait on a condition for the view to show what they expect
(read-your-writes for the client).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from engine.codec import StatusRecord, decode_status
from engine.config import Settings
from engine.topics import STATUS
from streams.store import PartitionStore

log = logging.getLogger("engine.status_view")

# How long a new view may take to read the topic up to its end before start() gives up.
CATCH_UP_TIMEOUT_S = 60.0


class StatusView:
    """The latest ``StatusRecord`` per instance, kept current by a consumer thread."""

    _shared: dict[tuple[str, str], StatusView] = {}
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

    @classmethod
    def shared(cls, settings: Settings) -> StatusView:
        """One started view per (cluster, topic prefix) in this process."""
        key = (settings.bootstrap_servers, settings.topic_prefix)
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
        return None if raw is None else decode_status(raw)

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
                    seen = status.runtime_status.name if status else "no such instance"
                    raise TimeoutError(
                        f"instance {instance_id} did not reach the expected state within {timeout:.1f} s "
                        f"(last seen: {seen})"
                    )
                self._changed.wait(0.5 if remaining is None else min(remaining, 0.5))

    def records(self) -> Iterator[StatusRecord]:
        """Every instance's latest status, ordered by instance ID."""
        for _, raw in self._store.scan_prefix(b""):
            yield decode_status(raw)

    def _run(self) -> None:
        consumer = Consumer({
            **self.settings.client(),
            "group.id": f"{self.settings.topic_prefix}.status-view",  # unused: partitions are assigned
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            # Status changes are small and latency matters for clients waiting on them.
            "fetch.wait.max.ms": "10",
            # End-of-partition events tell when the first read has reached the end.
            "enable.partition.eof": "true",
        })
        try:
            meta = consumer.list_topics(self.topic, timeout=30).topics[self.topic]
            if meta.error is not None:
                raise RuntimeError(f"topic {self.topic}: {meta.error}")
            partitions = sorted(meta.partitions)
            consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
            at_end: set[int] = set()
            while not self._stop.is_set():
                messages = consumer.consume(1000, timeout=0.05)
                batch = self._store.batch()
                for message in messages:
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
                if len(batch):
                    with self._changed:
                        self._store.write(batch)
                        self._changed.notify_all()
                if not self._caught_up.is_set() and len(at_end) == len(partitions):
                    self._caught_up.set()
        except BaseException as err:  # reported through start() and the log
            self._error = err
            log.exception("status view stopped")
        finally:
            consumer.close()
