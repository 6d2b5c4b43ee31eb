"""Read one instance's history from a local copy of ``kwf.history``, not a scan of its partition.

``HistoryView`` is a ``streams.mirror.TopicMirror`` of the compacted history topic: its
RocksDB holds ``{instance}/{sequence}`` -> event, so one instance's history is one prefix
scan. Like the status view its folder persists (under ``Settings.view_dir``) and a new
process reads only the tail; the first view on a machine reads the whole topic once.

A read is read-your-writes: it first asks the broker where the instance's partition ends
(committed records only) and waits until the copy has applied that far, so an event
committed before the call is in its answer.

The copy holds what compaction keeps: the current execution of each instance. Earlier
executions, while compaction has not removed them yet, are only in the topic itself:
``all_executions=True`` reads the instance's partition, as every read once did.
"""

from __future__ import annotations

import atexit
import threading

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from engine.api.view_folders import views_folder
from engine.core.history import ExecutionStarted, HistoryEvent, PurgeRequested
from engine.core.partitioner import partition_for
from engine.state.codec import decode_event
from engine.state.config import Settings
from engine.state.history_log import SEPARATOR, instance_of
from engine.state.topics import HISTORY
from streams.mirror import TopicMirror
from streams.reader import read_to_end

# How long a new copy may take to read the topic up to its end (the first one on a machine
# reads every event the topic holds).
CATCH_UP_TIMEOUT_S = 600.0


class HistoryView:
    """The current execution's events of every instance, kept current by a consumer thread."""

    _shared: dict[tuple[str, str, str], HistoryView] = {}
    _shared_lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(HISTORY)
        self.mirror = TopicMirror(settings.client(), self.topic, views_folder(settings, self.topic))
        # Where partitions end now: a consumer of its own, as the mirror's belongs to its thread.
        self._ends = Consumer({**settings.client(), "group.id": f"{self.topic}.ends", "enable.auto.commit": "false",
                               "isolation.level": "read_committed"})
        self._ends_lock = threading.Lock()
        self._partitions: int | None = None

    @classmethod
    def shared(cls, settings: Settings, timeout: float = CATCH_UP_TIMEOUT_S) -> HistoryView:
        """One started view per (cluster, topic prefix, application) in this process."""
        key = (settings.bootstrap_servers, settings.topic_prefix, settings.app_id)
        with cls._shared_lock:
            view = cls._shared.get(key)
            if view is None or view.mirror.stopped:
                view = cls(settings)
                try:
                    view.mirror.start(timeout)
                except BaseException:
                    view.close()
                    raise
                cls._shared[key] = view
                atexit.register(view.close)
            return view

    @classmethod
    def close_shared(cls, topic_prefix: str | None = None) -> None:
        with cls._shared_lock:
            closing = [key for key in cls._shared if topic_prefix is None or key[1] == topic_prefix]
            views = [cls._shared.pop(key) for key in closing]
        for view in views:
            view.close()

    def close(self) -> None:
        self.mirror.close()
        self._ends.close()

    def events(self, instance_id: str, timeout: float) -> list[HistoryEvent]:
        """The events of the instance's current execution, in order, as committed when called.

        Raises:
            TimeoutError: the copy did not reach the partition's end within ``timeout``.
        """
        key = instance_id.encode()
        with self._ends_lock:
            if self._partitions is None:
                meta = self._ends.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
                if meta is None or meta.error is not None:
                    raise RuntimeError(f"topic {self.topic}: {meta.error if meta is not None else 'does not exist'}")
                self._partitions = len(meta.partitions)
            partition = partition_for(key, self._partitions)
            _, end = self._ends.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=timeout)
        if not self.mirror.wait_for_positions({partition: end}, timeout):
            raise TimeoutError(f"the history copy did not reach offset {end} of {self.topic} partition {partition} "
                               f"within {timeout:.0f} s")
        found = sorted((int(k.rsplit(SEPARATOR, 1)[1]), v) for k, v in self.mirror.records(key + SEPARATOR))
        return latest_execution([decode_event(v) for _, v in found])


def latest_execution(events: list[HistoryEvent]) -> list[HistoryEvent]:
    """The events from the last start on; nothing after a purge."""
    kept: list[HistoryEvent] = []
    for event in events:
        if isinstance(event.event, PurgeRequested):
            kept = []
            continue
        if isinstance(event.event, ExecutionStarted):
            kept = []
        kept.append(event)
    return kept


def read_history(settings: Settings, instance_id: str, *, all_executions: bool = False,
                 timeout: float = 30.0) -> list[HistoryEvent]:
    """The instance's history events in order: the latest execution (from the local copy),
    or every one the topic still holds (a read of the instance's partition)."""
    if not all_executions:
        return HistoryView.shared(settings).events(instance_id, timeout)
    return scan_partition(settings, instance_id, timeout)


def scan_partition(settings: Settings, instance_id: str, timeout: float) -> list[HistoryEvent]:
    """Every execution of the instance the topic holds, read from its partition (a scan)."""
    topic = settings.topic(HISTORY)
    key = instance_id.encode()
    meta = AdminClient(settings.client()).list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise RuntimeError(f"topic {topic}: {meta.error if meta is not None else 'does not exist'}")
    events: list[HistoryEvent] = []
    for message in read_to_end(settings.client(), topic, [partition_for(key, len(meta.partitions))],
                               timeout=timeout):
        if message.value() is None or instance_of(message.key()) != key:
            continue  # another instance's event, or a tombstone
        event = decode_event(message.value())
        if isinstance(event.event, PurgeRequested):
            events = []
            continue
        events.append(event)
    return events
