"""InstanceStore: committed events folded into RocksDB, and the histories steps read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.core.history import (
    ExecutionCompleted,
    ExecutionStarted,
    FailureDetails,
    HistoryEvent,
    PurgeRequested,
    TaskCompleted,
    TaskScheduled,
    WorkflowStatus,
    failure_details_to_record,
)
from engine.state.codec import encode_event
from engine.state.instance_state import InstanceState
from engine.state.instance_store import InstanceStore
from streams.store import PartitionStore

AT = datetime(2024, 1, 1, tzinfo=UTC)
FAR = 9_999_999_999_999  # a time (ms) after every end


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore.open(tmp_path / "orchestrator" / "inbox-0")
    yield opened
    opened.close()


def commit(instances: InstanceStore, events: list[HistoryEvent]) -> None:
    batch = instances.store.batch()
    for event in events:
        instances.apply(batch, event, encode_event(event))
    instances.store.write(batch)
    instances.written()


def chain(instance_id: str, execution_id: str, steps: int) -> list[HistoryEvent]:
    events = [HistoryEvent(instance_id, execution_id, 0, AT, ExecutionStarted("wf", "1"))]
    for task_id in range(steps):
        events.append(HistoryEvent(instance_id, execution_id, len(events), AT, TaskScheduled(task_id, "step")))
        events.append(HistoryEvent(instance_id, execution_id, len(events), AT, TaskCompleted(task_id, "2")))
    return events


class CountingStore:
    """Counts point reads of the wrapped store."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.gets = 0

    def get(self, key: bytes) -> bytes | None:
        self.gets += 1
        return self.store.get(key)

    def scan_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.store.scan_prefix(prefix)


def test_first_and_last_events_of_a_step_come_without_store_reads(store: PartitionStore) -> None:
    instances = InstanceStore(store)
    events = chain("a", "x1", 3)
    commit(instances, events[:3])
    commit(instances, events[3:])
    state = instances.state("a")
    assert state is not None
    history = instances.history(state)
    counting = CountingStore(store)
    history._store = counting  # type: ignore[assignment]
    assert history[0] == events[0]
    assert history[-1] == events[-1]
    assert counting.gets == 0
    assert list(history) == events


def test_a_store_without_cached_events_reads_each_event_once(store: PartitionStore) -> None:
    events = chain("a", "x1", 2)
    commit(InstanceStore(store), events)
    fresh = InstanceStore(store)  # as after a restart: nothing decoded in memory
    state = fresh.state("a")
    assert state is not None
    history = fresh.history(state)
    counting = CountingStore(store)
    history._store = counting  # type: ignore[assignment]
    assert history[-1] == events[-1] and history[-1] == events[-1] and history[0] == events[0]
    assert counting.gets == 2


def test_a_new_execution_or_a_purge_drops_the_cached_events(store: PartitionStore) -> None:
    instances = InstanceStore(store)
    commit(instances, chain("a", "x1", 2))
    again = chain("a", "x2", 1)
    commit(instances, again)
    state = instances.state("a")
    assert state is not None and state.execution_id == "x2"
    history = instances.history(state)
    assert len(history) == len(again) and history[0] == again[0] and history[-1] == again[-1]
    commit(instances, [HistoryEvent("a", "x2", len(again), AT, PurgeRequested())])
    assert instances.state("a") is None
    assert "a" not in instances._edges


def test_state_bytes_are_the_json_of_every_field() -> None:
    failure = FailureDetails("ValueError", "bad", "trace", FailureDetails("KeyError", "k", None))
    state = InstanceState("a", "x1", "wf", WorkflowStatus.FAILED, 1, 2, 3, "1", None, None, failure,
                          "p", "px", 4, "parent")
    expected = asdict(state)
    expected["status"] = state.status.value
    expected["failure"] = failure_details_to_record(failure)
    assert json.loads(state.to_bytes()) == expected
    assert InstanceState.from_bytes(state.to_bytes()) == state


def test_ended_instances_are_indexed_by_status_and_end_time_until_purged(store: PartitionStore) -> None:
    instances = InstanceStore(store)
    events = chain("a", "x1", 1)
    ended = datetime(2024, 1, 2, tzinfo=UTC)
    events.append(HistoryEvent("a", "x1", len(events), ended, ExecutionCompleted(WorkflowStatus.COMPLETED, "3")))
    commit(instances, events[:-1])
    assert instances.ended_before(WorkflowStatus.COMPLETED, FAR, 10) == []
    commit(instances, events[-1:])
    end_ms = int(ended.timestamp() * 1000)
    assert instances.ended_before(WorkflowStatus.COMPLETED, end_ms, 10) == []
    assert instances.ended_before(WorkflowStatus.COMPLETED, end_ms + 1, 10) == ["a"]
    assert instances.ended_before(WorkflowStatus.FAILED, FAR, 10) == []
    commit(instances, [HistoryEvent("a", "x1", len(events), ended, PurgeRequested())])
    assert instances.ended_before(WorkflowStatus.COMPLETED, FAR, 10) == []
    assert list(store.scan_prefix(b"")) == []  # nothing of the instance is left


def test_a_new_execution_leaves_the_ended_index(store: PartitionStore) -> None:
    instances = InstanceStore(store)
    done = HistoryEvent("a", "x1", 1, AT, ExecutionCompleted(WorkflowStatus.FAILED, None))
    commit(instances, [HistoryEvent("a", "x1", 0, AT, ExecutionStarted("wf", "1")), done])
    assert instances.ended_before(WorkflowStatus.FAILED, FAR, 10) == ["a"]
    commit(instances, [HistoryEvent("a", "x2", 0, AT, ExecutionStarted("wf", "1"))])
    assert instances.ended_before(WorkflowStatus.FAILED, FAR, 10) == []


def test_a_finished_instance_keeps_only_its_state_and_ended_index(store: PartitionStore) -> None:
    instances = InstanceStore(store)
    events = chain("a", "x1", 3)
    commit(instances, events[:4])
    assert "a" in instances._edges  # a running instance's edges stay decoded
    done = HistoryEvent("a", "x1", len(events), AT, ExecutionCompleted(WorkflowStatus.COMPLETED, "4"))
    commit(instances, [*events[4:], done])
    assert [key[:2] for key, _ in store.scan_prefix(b"")] == [b"e/", b"i/"]
    assert "a" not in instances._edges
    state = instances.state("a")
    assert state is not None and state.status is WorkflowStatus.COMPLETED and state.next_sequence == len(events) + 1
    # The instance can start again, and a purge still leaves nothing behind.
    commit(instances, chain("a", "x2", 1))
    again = instances.state("a")
    assert again is not None and len(instances.history(again)) == 3
    commit(instances, [HistoryEvent("a", "x2", 3, AT, PurgeRequested())])
    assert list(store.scan_prefix(b"")) == []


def test_finished_instances_leave_no_decoded_events_behind(store: PartitionStore) -> None:
    instances = InstanceStore(store)
    for n in range(50):
        events = chain(f"i{n}", "x", 1)
        events.append(HistoryEvent(f"i{n}", "x", len(events), AT, ExecutionCompleted(WorkflowStatus.COMPLETED, "2")))
        commit(instances, events)
    assert len(instances._edges) == 0
    assert sum(1 for key, _ in store.scan_prefix(b"h/")) == 0


def test_the_decoded_events_of_running_instances_are_bounded_by_the_size_given(store: PartitionStore) -> None:
    instances = InstanceStore(store, edge_cache_size=2)
    for n in range(5):
        commit(instances, chain(f"i{n}", "x", 1))
    assert list(instances._edges) == ["i3", "i4"]
    state = instances.state("i0")
    assert state is not None and list(instances.history(state)) == chain("i0", "x", 1)  # read from the store
