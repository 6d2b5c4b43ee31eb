"""What a stateful processor's application code implements (``Handler``) and is handed (``Batch``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from streams.store import PartitionStore, StoreBatch

Headers = list[tuple[str, bytes | None]]
ChangelogEntry = tuple[bytes | None, bytes | None, Any]


class RecordSink(Protocol):
    """Where a batch's records go: the processor's transactional writer, or a test's list."""

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                headers: Headers | None = None) -> None: ...


@dataclass(slots=True)
class Record:
    """One decoded input record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: Any
    timestamp_ms: int
    headers: Headers | None


class Batch:
    """The records of one partition in one transaction, its store, and the ways out.

    Everything emitted goes out in the processor's current Kafka transaction. Changelog
    records are folded into the store with ``Handler.apply_changelog`` only after that
    transaction commits, so ``store`` shows the state as of the previous commit while
    ``process`` runs; a handler that reads its own earlier updates within one batch keeps
    them itself (or reads through a ``StoreBatch``).

    Attributes:
        partition: The input partition (also the changelog partition).
        store: That partition's store.
        records: The decoded records, in offset order (empty for ``punctuate``).
    """

    __slots__ = ("partition", "store", "records", "_writer", "_changelog")

    def __init__(
        self,
        partition: int,
        store: PartitionStore,
        records: list[Record],
        writer: RecordSink,
        changelog: list[ChangelogEntry] | None,
    ) -> None:
        self.partition = partition
        self.store = store
        self.records = records
        self._writer = writer
        self._changelog = changelog

    def emit(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Send a record in the current transaction (``partition`` None: by key, murmur2)."""
        self._writer.produce(topic, key, value, partition, headers)

    def emit_changelog(self, key: bytes | None, value: bytes | None, decoded: Any = None) -> None:
        """Append a record to this partition's changelog in the current transaction.

        After the commit, ``Handler.apply_changelog`` receives it with ``decoded`` as given
        here, so the handler need not decode its own records again.

        Raises:
            ValueError: the processor has no changelog topic.
        """
        if self._changelog is None:
            raise ValueError("this processor has no changelog_topic; set one in ProcessorConfig to emit to it")
        self._changelog.append((key, value, decoded))


class Handler(Protocol):
    """The application part of a processor: ``decode`` and ``process``.

    Optional hooks, called when the handler defines them:

    * ``apply_changelog(store_batch, store, key, value, decoded)``: required when the
      processor has a changelog topic (see ``StatefulHandler``).
    * ``punctuate(batch, now_ms)``: wall-clock callback per assigned partition (e.g. fire
      due timers); its emits go out in the same transactional way.
    * ``ready_partitions()``: partitions the handler has work for now that needs no input
      (it started something after a commit whose outcome the next transaction records);
      the processor punctuates them at once instead of waiting out its poll.
    * ``ready_soon()``: whether such work is under way but not ready yet; the processor
      then polls in short slices, so input that arrives meanwhile joins that transaction.
    * ``on_partition_ready(partition, store)``: the partition's store is restored; its
      input is processed from now on.
    * ``on_partition_revoked(partition)``: the partition is gone (revoked, lost, or its
      transaction aborted): drop its caches.
    """

    def decode(self, topic: str, key: bytes | None, value: bytes | None) -> Any:
        """Decode one input record. Raising anything sends the record to the dead-letter topic."""
        ...

    def process(self, batch: Batch) -> None:
        """Handle the records of one partition. An exception here stops the processor
        (after aborting the transaction): it is a bug, not a bad record.
        """
        ...


class StatefulHandler(Handler, Protocol):
    """A handler whose state lives in its partition stores, rebuilt from a changelog."""

    def apply_changelog(
        self,
        store_batch: StoreBatch,
        store: PartitionStore,
        key: bytes | None,
        value: bytes | None,
        decoded: Any | None,
    ) -> None:
        """Fold one changelog record into ``store_batch``.

        Called during restore (``decoded`` None) and after each commit for the records this
        process emitted (``decoded`` as given to ``emit_changelog``). ``store_batch.get``
        sees the earlier records of the same batch.
        """
        ...
