"""The orchestrator's per-partition RocksDB layout.

Keys (instance IDs never contain NUL, so it separates key parts):

* ``i/{instance}``                      -> InstanceState (JSON)
* ``h/{instance}\\0{sequence:010}``      -> one history event, the bytes of ``kwf.history``
* ``o/{instance}\\0{id:+011}``           -> an open task, child or timer (OpenItem)
* ``t/{fire_at_ms:013}\\0{instance}\\0{timer_id}`` -> the timer index, ordered by due time
* ``e/{STATUS}\\0{ended_ms:013}\\0{instance}``  -> the ended index: instances in a final status,
  ordered by when they ended, so retention reads only the ones that are due

A history append is one put, so a 10,000-event history is never rewritten. An execution
that ends keeps none of its history here (``kwf.history`` keeps it for readers): only its
``i/`` state and ``e/`` index entry, a few hundred bytes per finished instance.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from engine.core.history import HistoryEvent, PurgeRequested, WorkflowStatus
from engine.state.codec import decode_event
from engine.state.instance_state import Change, InstanceState, OpenItem, fold
from streams.store import PartitionStore, StoreBatch

SEP = b"\x00"
# Reading a due-timer slice in bounded chunks keeps one punctuation short.
TIMER_SCAN_LIMIT = 1000
# Running instances whose first and last history events one store keeps decoded, unless
# told otherwise: the orchestrator gives each store its share of the executor's cache of
# live runs (the instances whose steps read only those two), so a process's total does not
# grow with its partitions. A bulk start of 100,000 instances otherwise kept 10,000 per
# partition decoded, and the memory they took stayed with the process after they ended.
EDGE_CACHE_SIZE = 10_000


def state_key(instance_id: str) -> bytes:
    return b"i/" + instance_id.encode()


def history_prefix(instance_id: str) -> bytes:
    return b"h/" + instance_id.encode() + SEP


def history_key(instance_id: str, sequence: int) -> bytes:
    return history_prefix(instance_id) + b"%010d" % sequence


def open_prefix(instance_id: str) -> bytes:
    return b"o/" + instance_id.encode() + SEP


def open_key(instance_id: str, item_id: int) -> bytes:
    return open_prefix(instance_id) + b"%+011d" % item_id


def timer_key(fire_at_ms: int, instance_id: str, timer_id: int) -> bytes:
    return b"t/%013d" % fire_at_ms + SEP + instance_id.encode() + SEP + str(timer_id).encode()


def parse_timer_key(key: bytes) -> tuple[int, str, int]:
    stamp, instance, timer = key[2:].split(SEP)
    return int(stamp), instance.decode(), int(timer)


def ended_prefix(status: WorkflowStatus) -> bytes:
    return b"e/" + status.value.encode() + SEP


def ended_key(state: InstanceState) -> bytes | None:
    """The instance's entry in the ended index, or None while it has not ended."""
    if not state.ended:
        return None
    return ended_prefix(state.status) + b"%013d" % state.updated_ms + SEP + state.instance_id.encode()


class InstanceStore:
    """Reads and folds instance state for one partition.

    ``apply`` folds committed history events into a store batch. What the batch changed
    but RocksDB does not hold yet (states and open items) is kept in an overlay, so a
    later event of the same instance in the same batch sees it (restore folds many
    transactions into one batch). A new batch means the previous one reached RocksDB
    (the processor writes each batch before it starts the next), so the overlay is
    dropped then: it never holds more than one batch's instances.
    """

    def __init__(self, store: PartitionStore, edge_cache_size: int = EDGE_CACHE_SIZE) -> None:
        self.store = store
        self._edge_cache_size = edge_cache_size
        self._batch: StoreBatch | None = None
        self._states: dict[str, InstanceState | None] = {}
        self._open: dict[str, dict[int, OpenItem | None]] = {}
        self._open_cleared: set[str] = set()  # the store's open items of these are void
        # instance -> (first, last) committed history event of its current execution.
        self._edges: OrderedDict[str, tuple[HistoryEvent, HistoryEvent]] = OrderedDict()

    def state(self, instance_id: str) -> InstanceState | None:
        if instance_id in self._states:
            return self._states[instance_id]
        raw = self.store.get(state_key(instance_id))
        return None if raw is None else InstanceState.from_bytes(raw)

    def open_item(self, instance_id: str, item_id: int) -> OpenItem | None:
        overlay = self._open.get(instance_id, {})
        if item_id in overlay:
            return overlay[item_id]
        if instance_id in self._open_cleared:
            return None
        raw = self.store.get(open_key(instance_id, item_id))
        return None if raw is None else OpenItem.from_bytes(raw)

    def open_items(self, instance_id: str) -> dict[int, OpenItem]:
        items: dict[int, OpenItem] = {}
        if instance_id not in self._open_cleared:
            prefix = open_prefix(instance_id)
            for key, raw in self.store.scan_prefix(prefix):
                items[int(key[len(prefix):])] = OpenItem.from_bytes(raw)
        for item_id, item in self._open.get(instance_id, {}).items():
            if item is None:
                items.pop(item_id, None)
            else:
                items[item_id] = item
        return items

    def history(self, state: InstanceState) -> LazyHistory:
        edges = self._edges.get(state.instance_id)
        if edges is not None and (edges[0].execution_id != state.execution_id
                                  or edges[1].sequence != state.next_sequence - 1):
            edges = None
        return LazyHistory(self.store, state.instance_id, state.next_sequence, edges)

    def due_timers(self, now_ms: int) -> list[tuple[int, str, int]]:
        end = b"t/%013d" % (now_ms + 1)
        return [parse_timer_key(k) for k, _ in self.store.scan_range(b"t/", end, limit=TIMER_SCAN_LIMIT)]

    def states_after(self, after: str | None, limit: int) -> list[InstanceState]:
        """Up to ``limit`` instance states in ID order, from just after ``after`` (None: the first)."""
        start = b"i/" if after is None else state_key(after) + SEP
        return [InstanceState.from_bytes(raw) for _, raw in self.store.scan_range(start, b"i0", limit=limit)]

    def ended_after(self, statuses: Iterable[WorkflowStatus], after: str | None,
                    limit: int) -> tuple[list[InstanceState], str | None]:
        """Up to ``limit`` ended instances of ``statuses`` in ended-index order (by status, then
        by end time), from just after the index key ``after`` (None, or a text that is not an
        index key: from the start); and the key to go on from, or None once there are no more."""
        found: list[InstanceState] = []
        cursor = after.encode() if after is not None and after.startswith("e/") else None
        budget = limit
        for prefix in sorted(ended_prefix(status) for status in statuses):  # the cursor only moves on
            end = prefix[:-1] + bytes([prefix[-1] + 1])
            if cursor is not None and cursor >= end:
                continue  # walked to its end already
            start = prefix if cursor is None or cursor < prefix else cursor + SEP
            keys = [key for key, _ in self.store.scan_range(start, end, limit=budget)]
            budget -= len(keys)
            for key in keys:
                state = self.state(key.rsplit(SEP, 1)[1].decode())
                if state is not None:
                    found.append(state)
            if keys:
                cursor = keys[-1]
            if budget == 0:
                return found, keys[-1].decode()
        return found, None

    def ended_before(self, status: WorkflowStatus, before_ms: int, limit: int) -> list[str]:
        """Instances in final ``status`` since before ``before_ms``, oldest first, at most ``limit``."""
        prefix = ended_prefix(status)
        end = prefix + b"%013d" % max(0, before_ms)
        return [k.rsplit(SEP, 1)[1].decode() for k, _ in self.store.scan_range(prefix, end, limit=limit)]

    def apply(self, batch: StoreBatch, event: HistoryEvent, raw: bytes) -> None:
        """Fold one committed history event into ``batch``."""
        if batch is not self._batch:
            self.written()
            self._batch = batch
        instance_id = event.instance_id
        before = self.state(instance_id)
        was_ended = None if before is None else ended_key(before)
        if isinstance(event.event, PurgeRequested):
            if was_ended is not None:
                batch.delete(was_ended)
            self._forget(batch, instance_id, history=True)
            batch.delete(state_key(instance_id))
            self._states[instance_id] = None
            self._edges.pop(instance_id, None)
            return
        change: Change = fold(before, event)
        if change.state is None:
            return  # an event for an instance this partition does not hold: nothing to fold
        if change.new_execution and before is not None:
            self._forget(batch, instance_id, history=True)
        if change.state.ended:
            # Nothing reads an ended execution's history here again (its events are refused,
            # a new execution or a purge needs only the state), and readers have the topic:
            # a finished instance keeps only its state and its place in the ended index.
            # Point deletes: as many as the puts were, and no range tombstone per instance.
            self._forget(batch, instance_id, history=False)
            for sequence in range(change.state.next_sequence - 1):
                batch.delete(history_key(instance_id, sequence))
            self._edges.pop(instance_id, None)
        else:
            batch.put(history_key(instance_id, event.sequence), raw)
            if change.close_all:
                self._forget(batch, instance_id, history=False)
        overlay = self._open.setdefault(instance_id, {})
        for item_id in change.closed:
            item = self.open_item(instance_id, item_id)
            if item is not None and item.fire_at_ms is not None:
                batch.delete(timer_key(item.fire_at_ms, instance_id, item_id))
            batch.delete(open_key(instance_id, item_id))
            overlay[item_id] = None
        for item_id, item in change.opened:
            batch.put(open_key(instance_id, item_id), item.to_bytes())
            if item.fire_at_ms is not None:
                batch.put(timer_key(item.fire_at_ms, instance_id, item_id), b"")
            overlay[item_id] = item
        batch.put(state_key(instance_id), change.state.to_bytes())
        now_ended = ended_key(change.state)
        if was_ended != now_ended:
            if was_ended is not None:
                batch.delete(was_ended)
            if now_ended is not None:
                batch.put(now_ended, b"")
        self._states[instance_id] = change.state
        if not change.state.ended:
            self._remember_edge(event, change.new_execution)

    def _remember_edge(self, event: HistoryEvent, new_execution: bool) -> None:
        edges = self._edges.pop(event.instance_id, None)
        if new_execution:
            self._edges[event.instance_id] = (event, event)
        elif edges is not None and edges[0].execution_id == event.execution_id:
            self._edges[event.instance_id] = (edges[0], event)
        else:
            return  # its first event is not at hand: reads go to the store
        while len(self._edges) > self._edge_cache_size:
            self._edges.popitem(last=False)

    def written(self) -> None:
        """The batch reached RocksDB: reads can go to the store again."""
        self._states.clear()
        self._open.clear()
        self._open_cleared.clear()

    def _forget(self, batch: StoreBatch, instance_id: str, *, history: bool) -> None:
        for item_id, item in self.open_items(instance_id).items():
            if item.fire_at_ms is not None:
                batch.delete(timer_key(item.fire_at_ms, instance_id, item_id))
        prefix = open_prefix(instance_id)
        # Range deletes also cover puts made earlier in this same batch.
        batch.delete_range(prefix, prefix[:-1] + b"\x01")
        self._open[instance_id] = {}
        self._open_cleared.add(instance_id)
        if history:
            prefix = history_prefix(instance_id)
            batch.delete_range(prefix, prefix[:-1] + b"\x01")


class LazyHistory(Sequence[HistoryEvent]):
    """An execution's history read from the store only where it is looked at.

    The executor touches the first and last events and the length on a cache hit, and
    reads everything only on a miss, so a step of a cached instance costs O(1) reads; none
    when the store still has the first and last events decoded (``edges``).
    """

    def __init__(self, store: PartitionStore, instance_id: str, length: int,
                 edges: tuple[HistoryEvent, HistoryEvent] | None = None) -> None:
        self._store = store
        self._instance_id = instance_id
        self._length = length
        self._all: list[HistoryEvent] | None = None
        self._read: dict[int, HistoryEvent] = {}
        if edges is not None:
            self._read[0], self._read[length - 1] = edges

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> HistoryEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[HistoryEvent]: ...
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self._load()[index]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        if self._all is not None:
            return self._all[index]
        found = self._read.get(index)
        if found is not None:
            return found
        raw = self._store.get(history_key(self._instance_id, index))
        if raw is None:
            return self._load()[index]
        found = self._read[index] = decode_event(raw)
        return found

    def __iter__(self) -> Iterator[HistoryEvent]:
        return iter(self._load())

    def _load(self) -> list[HistoryEvent]:
        if self._all is None:
            prefix = history_prefix(self._instance_id)
            self._all = [decode_event(raw) for _, raw in self.store_scan(prefix)]
            self._length = len(self._all)
        return self._all

    def store_scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._store.scan_prefix(prefix)
