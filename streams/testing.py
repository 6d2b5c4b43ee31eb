"""A handler's batches without Kafka: what they emit is recorded, their changelog folded as
after a commit. For unit tests of a ``Handler``'s decisions.

The store is a real ``PartitionStore`` (RocksDB in a folder the test gives), so the
handler reads and writes exactly as it does under the processor; only the transaction is
replaced by a list. ``commit`` mirrors ``Processor._apply_committed``: the changelog
records of one batch are folded into one store batch, written with the next offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.handler import Batch, ChangelogEntry, Handler, Headers, Record
from streams.store import PartitionStore


@dataclass(frozen=True, slots=True)
class Emitted:
    """One record a batch sent to an output topic."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers | None = None


@dataclass
class RecordingWriter:
    """Stands in for the processor's transactional writer: keeps what would be produced."""

    emitted: list[Emitted] = field(default_factory=list)

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                headers: Headers | None = None) -> None:
        self.emitted.append(Emitted(topic, key, value, partition, headers))


@dataclass
class Turn:
    """What one batch did: the records it emitted and the changelog records it appended."""

    emitted: list[Emitted]
    changelog: list[ChangelogEntry]

    def to(self, topic: str) -> list[Emitted]:
        return [e for e in self.emitted if e.topic == topic]


class HandlerHarness:
    """Drives one partition of ``handler`` against a store in ``folder``.

    Args:
        handler: The handler under test.
        folder: Where its partition store lives (a test's temporary folder).
        partition: The partition the batches claim to be.
        input_topic: The topic the records claim to come from.
    """

    def __init__(self, handler: Handler, folder: Path, partition: int = 0, input_topic: str = "input") -> None:
        self.handler = handler
        self.partition = partition
        self.input_topic = input_topic
        self.store = PartitionStore.open(folder)
        self._offset = 0  # next input offset
        self._changelog_offset = 0

    def process(self, *values: Any, commit: bool = True, headers: Headers | None = None) -> Turn:
        """One batch of decoded ``values``, keyed by nothing, each with ``headers``; committed unless
        ``commit`` is False."""
        records = []
        for value in values:
            records.append(Record(self.input_topic, self.partition, self._offset, None, value, 0, headers))
            self._offset += 1
        return self._turn(lambda batch: self.handler.process(batch), records, commit)

    def punctuate(self, now_ms: int, commit: bool = True) -> Turn:
        """One punctuation at ``now_ms`` (the handler must define ``punctuate``)."""
        punctuate = getattr(self.handler, "punctuate", None)
        if punctuate is None:
            raise TypeError(f"{type(self.handler).__name__} has no punctuate hook")
        return self._turn(lambda batch: punctuate(batch, now_ms), [], commit)

    def commit(self, turn: Turn) -> None:
        """Fold ``turn``'s changelog into the store, as the processor does after a commit."""
        if not turn.changelog:
            return
        store_batch = self.store.batch()
        for key, value, decoded in turn.changelog:
            self.handler.apply_changelog(store_batch, self.store, key, value, decoded)
        self._changelog_offset += len(turn.changelog)
        self.store.write(store_batch, changelog_offset=self._changelog_offset)

    def abort(self) -> None:
        """Forget an uncommitted turn, as the processor does when a transaction aborts."""
        revoked = getattr(self.handler, "on_partition_revoked", None)
        if revoked is not None:
            revoked(self.partition)

    def close(self) -> None:
        self.store.close()

    def _turn(self, run: Any, records: list[Record], commit: bool) -> Turn:
        writer = RecordingWriter()
        changelog: list[ChangelogEntry] = []
        run(Batch(self.partition, self.store, records, writer, changelog))
        turn = Turn(writer.emitted, changelog)
        if commit:
            self.commit(turn)
        return turn
