"""Read a topic's committed records up to where it ended when the read began.

The end of each partition is taken before reading: for a read_committed consumer the broker
answers with the last stable offset, so a transaction still open ends the read before it
instead of holding it. A partition is done once the consumer's position reaches its end.
Waiting for an end-of-partition event instead would hang on a busy partition, and control
records leave gaps in the offsets, so the last record's offset is no guide either.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

# Records fetched per call: large enough to read a partition quickly, small enough that a
# caller's per-record work between calls stays short.
READ_BATCH = 5000
# How long one fetch waits for records before the loop checks positions and the deadline.
FETCH_WAIT_S = 0.2
# A topic just created, or a partition whose leader moves, answers these for a moment.
TRANSIENT = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                       KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT})
RETRY_PAUSE_S = 0.2


def read_to_end(client: dict[str, Any], topic: str, partitions: Iterable[int] | None = None, *,
                timeout: float = 30.0) -> Iterator[Message]:
    """Every committed record of ``partitions`` (all by default), from their start up to
    their end offsets as they were when the read began, partition by partition in order.

    Args:
        client: librdkafka settings (bootstrap servers, security).
        topic: The topic to read.
        partitions: The partitions to read; every partition of the topic when None.
        timeout: Seconds for the whole read; past them ``TimeoutError`` names the
            partitions not read to their end.

    Raises:
        LookupError: The topic does not exist.
        TimeoutError: The end was not reached within ``timeout``.
    """
    consumer = Consumer({
        **client,
        "group.id": f"reader-{uuid.uuid4().hex}",  # assigned, never joined
        "enable.auto.commit": "false",
        "isolation.level": "read_committed",
    })
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise LookupError(f"topic {topic} does not exist" + (f": {meta.error}" if meta is not None else ""))
        chosen = sorted(meta.partitions) if partitions is None else sorted(partitions)
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        deadline = time.monotonic() + timeout
        for partition in chosen:
            low, high = _watermarks(consumer, TopicPartition(topic, partition), deadline)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        if not ends:
            return
        consumer.assign(starts)
        unfinished = set(ends)
        while unfinished:
            for message in consumer.consume(READ_BATCH, timeout=FETCH_WAIT_S):
                if message.error() is None and message.offset() < ends[message.partition()]:
                    yield message
            for position in consumer.position([TopicPartition(topic, p) for p in unfinished]):
                if position.offset >= ends[position.partition]:
                    unfinished.discard(position.partition)
            if unfinished and time.monotonic() > deadline:
                raise TimeoutError(f"{topic} partitions {sorted(unfinished)} were not readable up to their end "
                                   f"offsets within {timeout:.0f} s")
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """The partition's low and high offsets, asked again while its leader is not known yet."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=max(0.1, deadline - time.monotonic()))
            return low, high
        except KafkaException as err:
            if err.args[0].code() not in TRANSIENT or time.monotonic() + RETRY_PAUSE_S > deadline:
                raise
        time.sleep(RETRY_PAUSE_S)
