"""Wait until the orchestrator has processed everything sent to an instance so far.

A check that "nothing happened" (an event held while suspended, no stray terminate
landed, a late event dropped) is only worth something once the runtime has had the input
it should not act on. A fixed sleep guesses at that; this waits for it: a marker event
goes to the instance's inbox partition after everything else, and the orchestrator's
consumer group commits its offset only in the transaction that processed it (and so,
per partition, everything before it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from engine.core.history import EventRaised, HistoryEvent
from engine.state.codec import encode_event
from engine.state.config import Settings
from tests.integration.engine.runtime_process import wait_until

MARKER_EVENT = "kwf-test-barrier"


def wait_inbox_processed(settings: Settings, instance_id: str, timeout: float = 60.0) -> None:
    """Return once the orchestrator has processed every inbox record for ``instance_id`` sent so far.

    The marker is an ``EventRaised`` named ``MARKER_EVENT``: an instance that is running
    records it (and, waiting for no such event, ignores it); any other drops it.
    """
    inbox = settings.topic("inbox")
    delivered: list[Any] = []
    producer = Producer(settings.producer())
    marker = HistoryEvent(instance_id, "", -1, datetime.now(UTC), EventRaised(MARKER_EVENT, None))
    producer.produce(inbox, key=instance_id.encode(), value=encode_event(marker),
                     on_delivery=lambda err, message: delivered.append((err, message)))
    producer.flush(30)
    assert delivered and delivered[0][0] is None, f"the marker was not delivered: {delivered}"
    partition, offset = delivered[0][1].partition(), delivered[0][1].offset()
    consumer = Consumer({**settings.client(), "group.id": f"{settings.topic_prefix}.orchestrator",
                         "enable.auto.commit": False})
    try:
        def committed() -> int:
            found = consumer.committed([TopicPartition(inbox, partition)], timeout=10)
            return found[0].offset

        wait_until(lambda: committed() > offset, timeout,
                   lambda: f"the orchestrator did not get past {inbox}-{partition}@{offset} in {timeout} s",
                   interval=0.1)
    finally:
        consumer.close()
