"""The orchestrator without Kafka: a real store, a ``Batch`` whose emits are recorded.

``deliver`` hands inbox events to ``Orchestrator.process`` as one batch, then does what
the processor does after a commit: folds the changelog into the store. What the batch
emitted (history, activity tasks, inbox records, statuses) is returned and kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.codec import decode_event, decode_task, encode_event
from engine.config import Settings
from engine.history import HistoryEvent
from engine.orchestrator import Orchestrator
from engine.registry import Registry
from streams.handler import Batch, Record
from streams.store import PartitionStore

PREFIX = "unit"


@dataclass
class Emitted:
    """What one batch emitted, by kind."""

    history: list[HistoryEvent] = field(default_factory=list)
    inbox: list[HistoryEvent] = field(default_factory=list)
    tasks: list[Any] = field(default_factory=list)
    statuses: list[bytes | None] = field(default_factory=list)


class _Writer:
    def __init__(self, emitted: Emitted) -> None:
        self.emitted = emitted

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                headers: Any) -> None:
        if topic == f"{PREFIX}.inbox":
            self.emitted.inbox.append(decode_event(value))
        elif topic == f"{PREFIX}.activities":
            self.emitted.tasks.append(decode_task(value))
        elif topic == f"{PREFIX}.status":
            self.emitted.statuses.append(value)
        else:
            raise AssertionError(f"unexpected emit to {topic}")


class OrchestratorHarness:
    """One partition of the orchestrator, driven by hand.

    Args:
        folder: Where the partition's RocksDB store lives (a ``tmp_path``).
        registry: The workflows.
        max_payload_bytes: ``KWF_MAX_PAYLOAD_BYTES``.
    """

    def __init__(self, folder: Path, registry: Registry, *, max_payload_bytes: int = 1024 * 1024) -> None:
        self.settings = Settings(topic_prefix=PREFIX, partitions=1, state_dir=folder, process_id="unit",
                                 max_payload_bytes=max_payload_bytes)
        self.orchestrator = Orchestrator(self.settings, registry, partitions=1)
        self.store = PartitionStore.open(folder / "store")
        self.history: list[HistoryEvent] = []
        self._offset = 0

    def deliver(self, *events: HistoryEvent) -> Emitted:
        """Process ``events`` (as inbox records, through ``decode``) in one batch and commit it."""
        records = []
        for event in events:
            key = event.instance_id.encode()
            decoded = self.orchestrator.decode(f"{PREFIX}.inbox", key, encode_event(event))
            records.append(Record(f"{PREFIX}.inbox", 0, self._offset, key, decoded, 0, None))
            self._offset += 1
        emitted = Emitted()
        changelog: list[tuple[bytes | None, bytes | None, Any]] = []
        self.orchestrator.process(Batch(0, self.store, records, _Writer(emitted), changelog))
        store_batch = self.store.batch()
        for key, value, decoded in changelog:
            self.orchestrator.apply_changelog(store_batch, self.store, key, value, decoded)
            emitted.history.append(decoded)
        self.store.write(store_batch)
        self.history.extend(emitted.history)
        return emitted

    def close(self) -> None:
        self.store.close()


def proposed(instance_id: str, event: Any, execution_id: str = "") -> HistoryEvent:
    """An event as a client, worker or bridge puts it on the inbox."""
    return HistoryEvent(instance_id, execution_id, -1, datetime.now(UTC), event)
