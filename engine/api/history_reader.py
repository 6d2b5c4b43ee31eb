"""Read one instance's history straight from ``kwf.history``.

The instance's records all sit in one partition (murmur2 of its ID); this reads that
partition (read_committed) to its end and keeps the instance's events of its latest
execution. It costs a read of the partition, which is fine for a person looking at one
instance.
The topic is compacted (``engine.state.history_log``): earlier executions show only until
compaction removes them.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from engine.core.history import ExecutionStarted, HistoryEvent, PurgeRequested
from engine.core.partitioner import partition_for
from engine.state.codec import decode_event
from engine.state.config import Settings
from engine.state.history_log import instance_of
from engine.state.topics import HISTORY
from streams.reader import read_to_end


def read_history(settings: Settings, instance_id: str, *, all_executions: bool = False,
                 timeout: float = 30.0) -> list[HistoryEvent]:
    """The instance's history events in order: the latest execution, or every one."""
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
        if isinstance(event.event, ExecutionStarted) and not all_executions:
            events = []
        events.append(event)
    return events
