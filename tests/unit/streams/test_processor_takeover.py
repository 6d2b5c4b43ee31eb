"""A newly assigned partition is fenced and restored beside the loop: the other partitions
keep being processed meanwhile, and none of its records reaches the handler before both
are done (exactly-once: nothing is processed against a store behind its changelog, or
while the departed owner's transaction may still commit)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.handler import Batch
from streams.processor import Processor, ProcessorConfig
from streams.restore import RestorePlan, RestoreReport
from streams.transaction import RestartRequired
from tests.unit.streams.fake_message import FakeMessage
from tests.unit.streams.fake_producer import FakeWriter


class FakeConsumer:
    """Hands out what the test queued, paused partitions included (fetched before the
    pause took hold); records the rebalance calls."""

    def __init__(self) -> None:
        self.queue: list[FakeMessage] = []
        self.calls: list[tuple[str, list[tuple[int, int]]]] = []

    def consume(self, limit: int, timeout: float) -> list[FakeMessage]:
        taken, self.queue = self.queue[:limit], self.queue[limit:]
        return taken

    def poll(self, timeout: float) -> FakeMessage | None:
        taken = self.consume(1, timeout)
        return taken[0] if taken else None

    def _record(self, name: str, tps: list[TopicPartition] | TopicPartition) -> None:
        tps = tps if isinstance(tps, list) else [tps]
        self.calls.append((name, [(tp.partition, tp.offset) for tp in tps]))

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self._record("assign", tps)

    def pause(self, tps: list[TopicPartition]) -> None:
        self._record("pause", tps)

    def resume(self, tps: list[TopicPartition]) -> None:
        self._record("resume", tps)

    def seek(self, tp: TopicPartition) -> None:
        self._record("seek", tp)

    def consumer_group_metadata(self) -> str:
        return "group-metadata"


class BlockedFencer:
    """A fence that lasts until the test lets it finish."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.asked: list[list[int]] = []

    @staticmethod
    def last_owners(consumer: object, topic: str, partitions: list[int]) -> dict[int, str | None]:
        return dict.fromkeys(partitions, "departed")

    def fence_departed(self, owners: dict[int, str | None], own_id: str) -> set[str]:
        self.asked.append(sorted(owners))
        self.done.wait(10)
        return set()


class FakeRestorer:
    """Partition 1's changelog takes ``steps`` loop turns to read after its end is set; the
    others are at their end."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.restoring: set[int] = set()
        self.planned = False
        self.cancelled: list[int] = []

    def watermarks(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        return dict.fromkeys(partitions, (0, 10))

    def begin(self, stores: dict[int, Any]) -> None:
        self.restoring |= set(stores)

    def set_ends(self, marks: dict[int, tuple[int, int]]) -> list[RestoreReport]:
        self.planned = True
        done = sorted(set(marks) & self.restoring - {1})
        self.restoring -= set(done)
        return [RestoreReport(p, None) for p in done]

    def step(self, apply: Any) -> list[RestoreReport]:
        if not self.planned:
            return []
        self.steps -= 1
        if self.steps > 0 or 1 not in self.restoring:
            return []
        self.restoring.discard(1)
        return [RestoreReport(1, RestorePlan(0, 10), records=10)]

    def cancel(self, partitions: list[int]) -> None:
        self.cancelled.extend(partitions)
        self.restoring -= set(partitions)


class Recording:
    """Remembers the (partition, offset) of every record it was handed."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def decode(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        return value

    def process(self, batch: Batch) -> None:
        self.seen.extend((batch.partition, record.offset) for record in batch.records)

    def apply_changelog(self, *_: Any) -> None:
        pass


def owning_partition_0(tmp_path: Path, handler: Recording, consumer: FakeConsumer,
                       changelog: bool) -> Processor:
    config = ProcessorConfig(group_id="g", input_topic="in", changelog_topic="log" if changelog else None,
                             dlq_topic="dlq", state_dir=tmp_path, process_id="p", client={})
    processor = Processor(config, handler)
    processor._stores = {0: object()}  # type: ignore[dict-item]
    processor._assigned = frozenset({0})
    processor._consumer = consumer  # type: ignore[assignment]
    writer = FakeWriter([])
    writer.init()
    processor._writer = writer
    return processor


def turn(processor: Processor, consumer: FakeConsumer) -> None:
    if processor._pending:
        processor._advance_takeovers()
    processor._turn(processor._next_batch(consumer, 0.0))  # type: ignore[arg-type]


def wait_for_takeovers(processor: Processor) -> None:
    for takeover in processor._takeovers:
        takeover.watermarks.result(timeout=5)


@pytest.mark.timeout(20)
def test_a_partition_being_fenced_gets_no_records_while_the_others_go_on(tmp_path: Path) -> None:
    handler, consumer, fencer = Recording(), FakeConsumer(), BlockedFencer()
    processor = owning_partition_0(tmp_path, handler, consumer, changelog=False)
    processor._fencer = fencer  # type: ignore[assignment]
    processor._on_assign(consumer, [TopicPartition("in", 1)])  # type: ignore[arg-type]
    assert consumer.calls[:2] == [("assign", [(1, -1001)]), ("pause", [(1, -1001)])]
    consumer.queue = [FakeMessage(0, partition=0), FakeMessage(0, partition=1), FakeMessage(1, partition=1)]
    turn(processor, consumer)
    consumer.queue = [FakeMessage(1, partition=0)]
    turn(processor, consumer)
    assert handler.seen == [(0, 0), (0, 1)]  # partition 0 went on while partition 1 was fenced
    assert processor.assigned_partitions() == {0}
    assert not processor.ready.is_set()

    fencer.done.set()
    wait_for_takeovers(processor)
    turn(processor, consumer)
    assert processor.assigned_partitions() == {0, 1}
    assert processor.ready.is_set()
    # The records handed over while it was paused were dropped: it is rewound to the first.
    assert consumer.calls[-2:] == [("seek", [(1, 0)]), ("resume", [(1, -1001)])]
    consumer.queue = [FakeMessage(0, partition=1), FakeMessage(1, partition=1)]
    turn(processor, consumer)
    assert handler.seen == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.timeout(20)
def test_a_partition_is_handed_to_the_handler_only_once_its_store_caught_up(tmp_path: Path) -> None:
    handler, consumer, restorer = Recording(), FakeConsumer(), FakeRestorer(steps=4)
    processor = owning_partition_0(tmp_path, handler, consumer, changelog=True)
    processor._restorer = restorer  # type: ignore[assignment]
    processor._on_assign(consumer, [TopicPartition("in", 1), TopicPartition("in", 2)])  # type: ignore[arg-type]
    wait_for_takeovers(processor)
    turn(processor, consumer)
    assert processor.assigned_partitions() == {0, 2}  # partition 2's store was current
    for _ in range(2):
        consumer.queue = [FakeMessage(5, partition=1)]
        turn(processor, consumer)
        assert processor.assigned_partitions() == {0, 2}
    assert restorer.steps == 1
    turn(processor, consumer)
    assert processor.assigned_partitions() == {0, 1, 2}
    assert ("seek", [(1, 5)]) in consumer.calls
    assert handler.seen == []


@pytest.mark.timeout(20)
def test_a_partition_revoked_while_restoring_is_dropped_and_its_store_closed(tmp_path: Path) -> None:
    handler, consumer, restorer = Recording(), FakeConsumer(), FakeRestorer(steps=100)
    processor = owning_partition_0(tmp_path, handler, consumer, changelog=True)
    processor._restorer = restorer  # type: ignore[assignment]
    processor._on_assign(consumer, [TopicPartition("in", 1)])  # type: ignore[arg-type]
    store = processor._pending[1].store
    wait_for_takeovers(processor)
    turn(processor, consumer)
    processor._on_revoke(consumer, [TopicPartition("in", 1)])  # type: ignore[arg-type]
    assert restorer.cancelled == [1]
    assert processor._pending == {}
    assert store.closed
    turn(processor, consumer)
    assert processor.assigned_partitions() == {0}


@pytest.mark.timeout(20)
def test_a_partition_that_cannot_be_rewound_over_dropped_records_restarts_the_processor(tmp_path: Path) -> None:
    handler, consumer, fencer = Recording(), FakeConsumer(), BlockedFencer()
    processor = owning_partition_0(tmp_path, handler, consumer, changelog=False)
    processor._fencer = fencer  # type: ignore[assignment]

    def refuse(_tp: TopicPartition) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE, "Erroneous state"))

    consumer.seek = refuse  # type: ignore[method-assign]
    processor._on_assign(consumer, [TopicPartition("in", 1)])  # type: ignore[arg-type]
    consumer.queue = [FakeMessage(0, partition=1)]
    turn(processor, consumer)  # the record is dropped: partition 1 is not processed yet
    fencer.done.set()
    wait_for_takeovers(processor)
    with pytest.raises(RestartRequired, match="could not rewind in-1"):
        turn(processor, consumer)
    assert handler.seen == []
