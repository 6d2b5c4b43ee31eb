"""Read one instance's history straight from ``kwf.history``.

The instance's records all sit in one partition (murmur2 of its ID); this scans that
partition (read_committed) and keeps the instance's events of its latest execution.
It costs a read of the partition, which is fine for a person looking at one instance.
The topic is compacted (``engine.state.history_log``): earlier executions show only until
compaction removes them.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

from engine.core.history import ExecutionStarted, HistoryEvent, PurgeRequested
from engine.core.partitioner import partition_for
from engine.state.codec import decode_event
from engine.state.config import Settings
from engine.state.history_log import instance_of
from engine.state.topics import HISTORY

# Records fetched per call while scanning.
SCAN_BATCH = 5000


def read_history(settings: Settings, instance_id: str, *, all_executions: bool = False,
                 timeout: float = 30.0) -> list[HistoryEvent]:
    """The instance's history events in order: the latest execution, or every one."""
    topic = settings.topic(HISTORY)
    key = instance_id.encode()
    consumer = Consumer({
        **settings.client(),
        "group.id": f"kwf-history-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": "false",
        "isolation.level": "read_committed",
        "enable.partition.eof": "true",
    })
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"topic {topic}: {meta.error}")
        partition = partition_for(key, len(meta.partitions))
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        if high <= low:
            return []
        consumer.assign([TopicPartition(topic, partition, low)])
        events: list[HistoryEvent] = []
        # Read up to the end as it was when we looked, not to an end-of-partition event: a
        # read_committed reader of a busy partition rarely sees one (a transaction is
        # nearly always open past the last stable offset).
        deadline = time.monotonic() + timeout
        while True:
            messages = consumer.consume(SCAN_BATCH, timeout=0.2)
            done = False
            for message in messages:
                error = message.error()
                if error is not None:
                    done = done or error.code() == KafkaError._PARTITION_EOF
                    continue
                done = done or message.offset() + 1 >= high
                if message.value() is None or instance_of(message.key()) != key:
                    continue  # another instance's event, or a tombstone
                event = decode_event(message.value())
                if isinstance(event.event, PurgeRequested):
                    events = []
                    continue
                if isinstance(event.event, ExecutionStarted) and not all_executions:
                    events = []
                events.append(event)
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if done or position >= high:
                return events
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} partition {partition} was not readable up to offset {high} within "
                                   f"{timeout:.0f} s (stuck at {position}: a transaction still open?)")
    finally:
        consumer.close()
