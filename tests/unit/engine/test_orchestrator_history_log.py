"""What the orchestrator writes to the compacted history: one key per event, tombstones for what is gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.core.history import ExecutionStarted, HistoryEvent, PurgeRequested
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.state.config import Settings
from engine.state.history_log import event_key
from engine.state.retention import RetentionPolicy
from streams.handler import Record
from streams.store import PartitionStore

AT = datetime(2024, 1, 1, tzinfo=UTC)


class FakeBatch:
    """One partition's batch: records in, emits and changelog entries recorded."""

    def __init__(self, store: PartitionStore, events: list[HistoryEvent]) -> None:
        self.partition = 0
        self.store = store
        self.records = [Record("inbox", 0, n, e.instance_id.encode(), e, 0, None) for n, e in enumerate(events)]
        self.emitted: list[tuple[str, bytes | None, bytes | None]] = []
        self.changelog: list[tuple[bytes | None, bytes | None, Any]] = []

    def emit(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: Any = None) -> None:
        self.emitted.append((topic, key, value))

    def emit_changelog(self, key: bytes | None, value: bytes | None, decoded: Any = None) -> None:
        self.changelog.append((key, value, decoded))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore.open(tmp_path / "inbox-0")
    yield opened
    opened.close()


def orchestrator(retention: RetentionPolicy | None = None) -> Orchestrator:
    registry = Registry()

    @registry.workflow(name="rounds")
    def rounds(ctx: Any, left: int):
        if left > 0:
            ctx.continue_as_new(left - 1)
            return None
        return "done"

    @registry.workflow(name="waiter")
    def waiter(ctx: Any, _: Any):
        got = yield ctx.wait_for_external_event("go")
        return got

    settings = Settings(retention=retention or RetentionPolicy(), step_time_limit_s=0)
    return Orchestrator(settings, registry, partitions=1)


def commit(handler: Orchestrator, store: PartitionStore, batch: FakeBatch) -> None:
    store_batch = store.batch()
    for key, value, decoded in batch.changelog:
        handler.apply_changelog(store_batch, store, key, value, decoded)
    store.write(store_batch)


def start(instance_id: str, name: str, value: Any) -> HistoryEvent:
    return HistoryEvent(instance_id, "", -1, AT, ExecutionStarted(name, str(value)))


def test_a_new_execution_tombstones_the_keys_of_the_one_it_replaces(store: PartitionStore) -> None:
    handler = orchestrator()
    batch = FakeBatch(store, [start("r", "rounds", 1)])
    handler.process(batch)
    keys = [(key, value is None) for key, value, _ in batch.changelog]
    # The first execution (started, completed as continued), its two tombstones, the second one.
    assert keys == [(b"r/0", False), (b"r/1", False), (b"r/0", True), (b"r/1", True), (b"r/0", False),
                    (b"r/1", False)]


def test_a_purge_tombstones_every_key_of_the_instance_and_empties_the_store(store: PartitionStore) -> None:
    handler = orchestrator()
    first = FakeBatch(store, [start("r", "rounds", 0)])
    handler.process(first)
    commit(handler, store, first)
    purge = FakeBatch(store, [HistoryEvent("r", "", -1, AT, PurgeRequested())])
    handler.process(purge)
    assert [(k, v is None) for k, v, _ in purge.changelog] == [
        (b"r/2", False), (b"r/0", True), (b"r/1", True), (b"r/2", True)]
    assert ("status", b"r", None) in [(t.rsplit(".", 1)[-1], k, v) for t, k, v in purge.emitted]
    commit(handler, store, purge)
    assert list(store.scan_prefix(b"")) == []


def test_retention_purges_what_ended_long_enough_ago_from_the_punctuation(store: PartitionStore) -> None:
    handler = orchestrator(RetentionPolicy.of(completed="90s"))
    first = FakeBatch(store, [start("r", "rounds", 0), start("w", "waiter", None)])
    handler.process(first)
    commit(handler, store, first)
    # The orchestrator stamps what it accepts with its own clock.
    ended_ms = max(int(d.timestamp.timestamp() * 1000) for _, _, d in first.changelog if d is not None)
    early = FakeBatch(store, [])
    handler.punctuate(early, ended_ms + 89_000)
    assert not any(isinstance(d, HistoryEvent) and isinstance(d.event, PurgeRequested) for _, _, d in early.changelog)
    due = FakeBatch(store, [])
    handler.punctuate(due, ended_ms + 91_000)
    purged = [d.instance_id for _, _, d in due.changelog if isinstance(d, HistoryEvent)
              and isinstance(d.event, PurgeRequested)]
    assert purged == ["r"]
    assert event_key("r", 2) in [k for k, _, _ in due.changelog]


def test_events_are_keyed_by_instance_and_sequence() -> None:
    assert event_key("order-1", 12) == b"order-1/12"
