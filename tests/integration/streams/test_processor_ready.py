"""A handler with work that needs no input (``ready_partitions``) gets a transaction at once,
not at its next punctuation interval."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from totals_harness import TopicReader, TotalsTopics, produce

from streams.handler import Batch
from streams.processor import Processor, ProcessorConfig

# Far longer than the test waits: a punctuation that comes is one the handler asked for.
PUNCTUATE_INTERVAL_MS = 600_000
WAIT_S = 60.0


class FollowUps:
    """Echoes each input record, then sends a follow-up for it from a punctuation it asks for."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.waiting: dict[int, list[bytes]] = {}
        self.punctuated = 0

    def decode(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        return value

    def process(self, batch: Batch) -> None:
        for record in batch.records:
            batch.emit(self.output, record.key, record.value)
            self.waiting.setdefault(batch.partition, []).append(record.value)

    def ready_partitions(self) -> set[int]:
        return set(self.waiting)

    def punctuate(self, batch: Batch, now_ms: int) -> None:
        self.punctuated += 1
        for value in self.waiting.pop(batch.partition, []):
            batch.emit(self.output, b"follow-up", value)


def test_a_ready_partition_is_punctuated_at_once(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    topics = TotalsTopics.create(kafka_bootstrap, topic_prefix)
    handler = FollowUps(topics.output)
    config = ProcessorConfig(group_id=f"{topic_prefix}.ready", input_topic=topics.input, changelog_topic=None,
                             dlq_topic=topics.dlq, state_dir=tmp_path / "state", process_id="p1",
                             client={"bootstrap.servers": kafka_bootstrap},
                             punctuate_interval_ms=PUNCTUATE_INTERVAL_MS)
    processor = Processor(config, handler)
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    output = TopicReader(kafka_bootstrap, topics.output)
    try:
        assert processor.ready.wait(WAIT_S), "no partitions assigned"
        values = [str(n).encode() for n in range(5)]
        produce(kafka_bootstrap, topics.input, [(f"k{n}".encode(), value) for n, value in enumerate(values)])
        deadline = time.monotonic() + WAIT_S
        while sum(m.key() == b"follow-up" for m in output.records) < len(values):
            assert time.monotonic() < deadline, f"follow-ups missing: {[m.value() for m in output.records]}"
            output.poll(0.2)
        follow_ups = sorted(m.value() for m in output.records if m.key() == b"follow-up")
        assert follow_ups == sorted(values)
        assert handler.waiting == {}
    finally:
        processor.stop()
        thread.join(30)
        output.close()
