"""The activity worker's poll: tasks at hand at once, else a bounded wait for the first one."""

from __future__ import annotations

from engine.edges import worker


class FakeConsumer:
    def __init__(self, queued: list[str], arriving: str | None = None) -> None:
        self.queued = list(queued)
        self.arriving = arriving
        self.waits: list[float] = []

    def consume(self, limit: int, timeout: float) -> list[str]:
        self.waits.append(timeout)
        taken, self.queued = self.queued[:limit], self.queued[limit:]
        return taken

    def poll(self, timeout: float) -> str | None:
        self.waits.append(timeout)
        arrived, self.arriving = self.arriving, None
        return arrived


def test_tasks_at_hand_are_taken_without_waiting() -> None:
    consumer = FakeConsumer(["t1", "t2"])
    assert worker._poll(consumer, 0.05) == ["t1", "t2"]  # type: ignore[arg-type]
    assert consumer.waits == [0]


def test_the_first_task_ends_the_wait() -> None:
    consumer = FakeConsumer([], arriving="t1")
    assert worker._poll(consumer, 0.05) == ["t1"]  # type: ignore[arg-type]
    assert consumer.waits == [0, 0.05, 0]


def test_a_batch_is_bounded() -> None:
    consumer = FakeConsumer([f"t{n}" for n in range(worker.POLL_BATCH + 5)])
    assert len(worker._poll(consumer, 0.05)) == worker.POLL_BATCH  # type: ignore[arg-type]
