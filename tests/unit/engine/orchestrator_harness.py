"""The orchestrator without Kafka: a batch that records what it would emit.

``OrchestratorHarness`` plays the processor's part for one partition: it hands the
orchestrator records (or a punctuation), keeps what it emitted, and after each "commit"
folds the changelog into the partition's RocksDB store as the processor does, so the next
batch sees the state the previous one left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.codec import StatusRecord, decode_status, decode_task
from engine.config import Settings
from engine.history import HistoryEvent
from engine.orchestrator import Orchestrator
from engine.registry import Registry
from streams.handler import ChangelogEntry, Headers, Record
from streams.store import PartitionStore


@dataclass
class Emitted:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None


@dataclass
class RecordingBatch:
    """What ``streams.handler.Batch`` offers a handler; emits are recorded."""

    partition: int
    store: PartitionStore
    records: list[Record]
    emitted: list[Emitted] = field(default_factory=list)
    changelog: list[ChangelogEntry] = field(default_factory=list)

    def emit(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: Headers | None = None) -> None:
        self.emitted.append(Emitted(topic, key, value, headers))

    def emit_changelog(self, key: bytes | None, value: bytes | None, decoded: Any = None) -> None:
        self.changelog.append((key, value, decoded))


class OrchestratorHarness:
    """One partition (0 of 1) of an orchestrator over a store in ``folder``."""

    def __init__(self, registry: Registry, folder: Path) -> None:
        self.settings = Settings(topic_prefix="kwf", state_dir=folder, process_id="test")
        self.orchestrator = Orchestrator(self.settings, registry, partitions=1)
        self.store = PartitionStore.open(folder / "inbox-0")
        self.orchestrator.on_partition_ready(0, self.store)
        self.emitted: list[Emitted] = []
        self._offset = 0

    def close(self) -> None:
        self.store.close()

    def feed(self, events: Iterable[HistoryEvent | tuple[HistoryEvent, Headers]]) -> list[Emitted]:
        """One transaction over these inbox events (optionally with record headers)."""
        records = []
        for item in events:
            event, headers = item if isinstance(item, tuple) else (item, None)
            records.append(Record(self.settings.topic("inbox"), 0, self._offset, event.instance_id.encode(), event,
                                  0, headers))
            self._offset += 1
        return self._transact(RecordingBatch(0, self.store, records), lambda b: self.orchestrator.process(b))

    def punctuate(self, now_ms: int) -> list[Emitted]:
        """One punctuation at ``now_ms`` (fires the timers due by then)."""
        return self._transact(RecordingBatch(0, self.store, []), lambda b: self.orchestrator.punctuate(b, now_ms))

    def _transact(self, batch: RecordingBatch, run: Any) -> list[Emitted]:
        run(batch)
        store_batch = self.store.batch()
        for key, value, decoded in batch.changelog:
            self.orchestrator.apply_changelog(store_batch, self.store, key, value, decoded)
        self.store.write(store_batch)
        self.emitted += batch.emitted
        return batch.emitted

    # -- reading what came out -----------------------------------------------------------

    def statuses(self, emitted: list[Emitted] | None = None) -> list[StatusRecord]:
        return [decode_status(e.value) for e in (self.emitted if emitted is None else emitted)
                if e.topic == self.settings.topic("status") and e.value is not None]

    def status(self, instance_id: str) -> StatusRecord | None:
        found = [s for s in self.statuses() if s.instance_id == instance_id]
        return found[-1] if found else None

    def tasks(self, emitted: list[Emitted] | None = None) -> list[Any]:
        return [decode_task(e.value) for e in (self.emitted if emitted is None else emitted)
                if e.topic == self.settings.topic("activities")]

    def dead_letters(self, emitted: list[Emitted] | None = None) -> list[Emitted]:
        return [e for e in (self.emitted if emitted is None else emitted) if e.topic == self.settings.topic("dlq")]
