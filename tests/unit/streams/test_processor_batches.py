"""How the processor takes a batch: never waiting for one to fill, only for its first record."""

from __future__ import annotations

from pathlib import Path

from streams.processor import Processor, ProcessorConfig


class FakeConsumer:
    """Hands out queued records; records what each call asked for."""

    def __init__(self, queued: list[str], arriving: str | None = None) -> None:
        self.queued = list(queued)
        self.arriving = arriving
        self.calls: list[tuple[str, int | None, float]] = []

    def consume(self, limit: int, timeout: float) -> list[str]:
        self.calls.append(("consume", limit, timeout))
        taken, self.queued = self.queued[:limit], self.queued[limit:]
        return taken

    def poll(self, timeout: float) -> str | None:
        self.calls.append(("poll", None, timeout))
        arrived, self.arriving = self.arriving, None
        return arrived


def processor(max_batch_records: int = 3) -> Processor:
    config = ProcessorConfig(group_id="g", input_topic="in", changelog_topic=None, dlq_topic="dlq",
                             state_dir=Path("/state"), process_id="p", client={},
                             max_batch_records=max_batch_records)
    return Processor(config, handler=object())  # type: ignore[arg-type]


def test_records_at_hand_are_taken_without_waiting() -> None:
    consumer = FakeConsumer(["a", "b", "c", "d"])
    assert processor()._next_batch(consumer, 0.02) == ["a", "b", "c"]  # type: ignore[arg-type]
    assert consumer.calls == [("consume", 3, 0)]


def test_with_nothing_at_hand_it_waits_for_the_first_record_then_takes_the_rest() -> None:
    consumer = FakeConsumer([], arriving="a")
    assert processor()._next_batch(consumer, 0.02) == ["a"]  # type: ignore[arg-type]
    assert consumer.calls == [("consume", 3, 0), ("poll", None, 0.02), ("consume", 2, 0)]


def test_an_idle_turn_ends_after_the_timeout() -> None:
    consumer = FakeConsumer([])
    assert processor()._next_batch(consumer, 0.02) == []  # type: ignore[arg-type]
