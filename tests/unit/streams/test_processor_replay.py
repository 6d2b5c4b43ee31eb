"""An aborted transaction is replayed from its batch's first offsets, also once the producer
was replaced; a Kafka call on that path that never returns restarts the processor instead
of stalling it; and the shutdown neither closes a consumer under a call stuck inside it nor
waits for a close that hangs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from engine.runtime import transient
from streams import processor as processor_module
from streams import transaction
from streams.handler import Batch
from streams.processor import Processor, ProcessorConfig
from streams.transaction import RestartRequired
from tests.unit.streams.fake_message import FakeMessage
from tests.unit.streams.fake_producer import FakeWriter


class FakeConsumer:
    """Partition 0 of the input, read from a position that ``seek`` moves."""

    def __init__(self, records: int) -> None:
        self.log = [FakeMessage(offset) for offset in range(records)]
        self.position = 0
        self.seeks: list[tuple[int, int]] = []

    def consume(self, limit: int, timeout: float) -> list[FakeMessage]:
        taken = self.log[self.position:self.position + limit]
        self.position += len(taken)
        return taken

    def poll(self, timeout: float) -> FakeMessage | None:
        taken = self.consume(1, timeout)
        return taken[0] if taken else None

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self.position = tp.offset

    def consumer_group_metadata(self) -> str:
        return "group-metadata"


class Forwarding:
    """Emits every record again; remembers the offsets of each batch it was handed."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def decode(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        return value

    def process(self, batch: Batch) -> None:
        self.batches.append([record.offset for record in batch.records])
        for record in batch.records:
            batch.emit("out", record.key, record.value)


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Bounds of a fraction of a second; the event releases every hung fake call at the end."""
    for name in ("HUNG_CALL_GRACE_S", "SEND_OFFSETS_TIMEOUT_S", "CALL_TIMEOUT_S", "INIT_TIMEOUT_S"):
        monkeypatch.setattr(transaction, name, 0.1)
    monkeypatch.setattr(processor_module, "SEEK_BOUND_S", 0.1)
    event = threading.Event()
    yield event
    event.set()


def running(handler: Forwarding, consumer: FakeConsumer, writer: FakeWriter) -> Processor:
    """A processor in mid-run over partition 0, as after its assignment."""
    config = ProcessorConfig(group_id="g", input_topic="in", changelog_topic=None, dlq_topic="dlq",
                             state_dir=Path("/state"), process_id="p", client={})
    processor = Processor(config, handler)
    processor._stores = {0: object()}  # type: ignore[dict-item]
    processor._consumer = consumer  # type: ignore[assignment]
    writer.init()
    processor._writer = writer
    return processor


def turn(processor: Processor, consumer: FakeConsumer) -> None:
    processor._turn(processor._next_batch(consumer, 0.01))  # type: ignore[arg-type]


@pytest.mark.timeout(10)
def test_a_batch_whose_send_offsets_hung_is_replayed_with_a_new_producer(released: threading.Event) -> None:
    handler, consumer, writer = Forwarding(), FakeConsumer(3), FakeWriter([])
    processor = running(handler, consumer, writer)
    writer.producers[0].send_offsets_to_transaction = lambda *_: released.wait()  # type: ignore[method-assign]
    turn(processor, consumer)
    assert consumer.seeks == [(0, 0)]
    assert writer.producers[1].calls == ["init_transactions"]
    turn(processor, consumer)
    assert handler.batches == [[0, 1, 2], [0, 1, 2]]
    assert writer.producers[1].calls[-2:] == ["send_offsets_to_transaction", "commit_transaction"]
    turn(processor, consumer)  # nothing left: an idle turn
    assert handler.batches == [[0, 1, 2], [0, 1, 2]]


@pytest.mark.timeout(10)
def test_a_rewind_that_never_returns_restarts_the_processor(released: threading.Event) -> None:
    abortable = KafkaError(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True)
    handler, consumer, writer = Forwarding(), FakeConsumer(3), FakeWriter([{"commit_transaction": abortable}])
    processor = running(handler, consumer, writer)
    consumer.seek = lambda _tp: released.wait()  # type: ignore[assignment,method-assign,misc]
    with pytest.raises(RestartRequired, match="rewinding in-0") as raised:
        turn(processor, consumer)
    assert transient(raised.value)  # the runtime starts the processor again on it


@pytest.mark.timeout(10)
def test_a_commit_that_never_returns_after_a_renewal_restarts_the_processor_without_a_replay(
        released: threading.Event) -> None:
    handler, consumer, writer = Forwarding(), FakeConsumer(3), FakeWriter([])
    processor = running(handler, consumer, writer)
    writer.producers[0].send_offsets_to_transaction = lambda *_: released.wait()  # type: ignore[method-assign]
    turn(processor, consumer)
    writer.producers[1].commit_transaction = lambda *_: released.wait()  # type: ignore[method-assign]
    with pytest.raises(RestartRequired, match="committed is unknown"):
        turn(processor, consumer)
    assert consumer.seeks == [(0, 0)]  # the unknown outcome was not replayed


class FatalMessage(FakeMessage):
    """How librdkafka hands a consumer its fatal error: as a message whose error is ``_FATAL``."""

    def error(self) -> KafkaError:  # type: ignore[override]
        return KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced by other consumer "
                                              "with same group.instance.id")


@pytest.mark.timeout(10)
def test_a_fenced_static_consumer_restarts_the_processor_instead_of_going_silent() -> None:
    handler, consumer, writer = Forwarding(), FakeConsumer(0), FakeWriter([])
    consumer.log = [FatalMessage(0)]
    processor = running(handler, consumer, writer)
    with pytest.raises(RestartRequired, match="Static consumer fenced") as raised:
        turn(processor, consumer)
    assert transient(raised.value)  # the runtime starts the processor again, with a new consumer
    assert handler.batches == []


class ClosingConsumer(FakeConsumer):
    """Records whether it was closed."""

    def __init__(self, records: int) -> None:
        super().__init__(records)
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()


class Store:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.mark.timeout(10)
def test_a_consumer_whose_rewind_hung_is_closed_only_once_the_rewind_returns(released: threading.Event) -> None:
    # Destroying a librdkafka handle under a call still inside it kills the process.
    abortable = KafkaError(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True)
    handler, consumer, writer = Forwarding(), ClosingConsumer(3), FakeWriter([{"commit_transaction": abortable}])
    processor = running(handler, consumer, writer)
    store = Store()
    processor._stores = {0: store}  # type: ignore[dict-item]
    consumer.seek = lambda _tp: released.wait()  # type: ignore[assignment,method-assign,misc]
    with pytest.raises(RestartRequired):
        turn(processor, consumer)
    processor._shutdown()
    assert store.closed
    assert not consumer.closed.wait(0.3)
    released.set()
    assert consumer.closed.wait(5.0)


@pytest.mark.timeout(10)
def test_a_consumer_close_that_hangs_does_not_hold_the_shutdown(
        released: threading.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor_module, "CONSUMER_CLOSE_BOUND_S", 0.1)
    handler, consumer, writer = Forwarding(), ClosingConsumer(0), FakeWriter([])
    processor = running(handler, consumer, writer)
    store = Store()
    processor._stores = {0: store}  # type: ignore[dict-item]
    consumer.close = lambda: released.wait()  # type: ignore[assignment,method-assign,misc]
    processor._shutdown()  # returns after the bound, the close still blocked
    assert store.closed and processor._consumer is None
