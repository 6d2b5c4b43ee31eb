"""Restore planning: whether a store needs restoring, from where to where, and when it is done."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from engine.runtime import transient
from streams import restore
from streams.restore import ChangelogRestorer, RestorePlan, plan_restore, restore_done
from streams.store import PartitionStore, StoreBatch


def test_empty_store_reads_the_whole_log() -> None:
    assert plan_restore(applied=None, low=0, high=120) == RestorePlan(start=0, end=120)


def test_empty_store_and_empty_log_need_nothing() -> None:
    assert plan_restore(applied=None, low=0, high=0) is None


def test_store_resumes_after_its_applied_offset() -> None:
    assert plan_restore(applied=99, low=0, high=120) == RestorePlan(start=100, end=120)


def test_store_at_the_last_record_still_reads_the_commit_marker_range() -> None:
    # Record 10 then its commit marker at 11: high watermark 12. The position moves past the
    # marker without delivering anything, which is what restore_done checks.
    assert plan_restore(applied=10, low=0, high=12) == RestorePlan(start=11, end=12)


def test_store_up_to_date_needs_nothing() -> None:
    assert plan_restore(applied=11, low=0, high=12) is None


def test_store_ahead_of_the_log_is_wiped() -> None:
    # The changelog topic was recreated: the store describes records that no longer exist.
    assert plan_restore(applied=500, low=0, high=40) == RestorePlan(start=0, end=40, wipe=True)
    assert plan_restore(applied=3, low=0, high=0) == RestorePlan(start=0, end=0, wipe=True)


def test_store_behind_the_log_start_is_wiped() -> None:
    # Records 6..49 were deleted by retention before this store applied them.
    assert plan_restore(applied=5, low=50, high=80) == RestorePlan(start=50, end=80, wipe=True)


def test_store_right_before_the_log_start_just_continues() -> None:
    assert plan_restore(applied=49, low=50, high=80) == RestorePlan(start=50, end=80)


def test_empty_store_after_retention_starts_at_the_log_start() -> None:
    assert plan_restore(applied=None, low=50, high=80) == RestorePlan(start=50, end=80)


def test_restore_done_compares_with_the_captured_end() -> None:
    assert not restore_done(None, 10)
    assert not restore_done(-1001, 10)  # librdkafka's "no position yet"
    assert not restore_done(9, 10)
    assert restore_done(10, 10)
    assert restore_done(14, 10)  # records that arrived after the restore began
    assert restore_done(0, 0)


@given(
    applied=st.none() | st.integers(min_value=0, max_value=1000),
    low=st.integers(min_value=0, max_value=1000),
    length=st.integers(min_value=0, max_value=1000),
)
def test_a_plan_always_covers_what_the_store_lacks(applied: int | None, low: int, length: int) -> None:
    high = low + length
    plan = plan_restore(applied, low, high)
    if plan is None:
        # Nothing to read: the store has applied everything before the end.
        next_needed = low if applied is None else applied + 1
        assert low <= next_needed and next_needed >= high
        return
    assert low <= plan.start <= plan.end == high
    if not plan.wipe:
        assert plan.start == (low if applied is None else applied + 1)
        assert plan.start < high


def test_listing_offsets_that_times_out_is_a_transient_kafka_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a broker's loss a leader may still be moving: the supervisor must restart the
    processor, which it does for a retriable KafkaException, not a bare TimeoutError.
    """

    class NeverAnswers:
        def result(self, timeout: float) -> None:
            raise concurrent.futures.TimeoutError()

    class SlowAdmin:
        def list_offsets(self, requests: dict, **_: object) -> dict:
            return dict.fromkeys(requests, NeverAnswers())

    monkeypatch.setattr(restore, "LIST_OFFSETS_TIMEOUT_S", 0.0)  # no second listing
    restorer = ChangelogRestorer({"bootstrap.servers": "127.0.0.1:1"}, "t.history")
    restorer._admin = SlowAdmin()  # type: ignore[assignment]
    try:
        with pytest.raises(KafkaException) as caught:
            restorer.watermarks([0])
    finally:
        restorer.close()
    assert caught.value.args[0].code() == KafkaError._TIMED_OUT
    assert transient(caught.value)


def test_an_unknown_offset_is_a_transient_kafka_error_not_an_empty_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen after a broker's SIGKILL: list_offsets answered -1001 for both ends, and a store
    at offset 1 was planned as ahead of the log and wiped."""

    class Invalid:
        offset = -1001

    class Answers:
        def result(self, timeout: float) -> Invalid:
            return Invalid()

    class LeaderlessAdmin:
        def list_offsets(self, requests: dict, **_: object) -> dict:
            return dict.fromkeys(requests, Answers())

    monkeypatch.setattr(restore, "LIST_OFFSETS_TIMEOUT_S", 0.0)
    restorer = ChangelogRestorer({"bootstrap.servers": "127.0.0.1:1"}, "t.history")
    restorer._admin = LeaderlessAdmin()  # type: ignore[assignment]
    try:
        with pytest.raises(KafkaException) as caught:
            restorer.watermarks([0])
    finally:
        restorer.close()
    assert caught.value.args[0].code() == KafkaError.LEADER_NOT_AVAILABLE
    assert transient(caught.value)


def test_a_listing_that_fails_is_retried_with_a_new_client_until_one_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first request after a broker's loss can sit out its timeout; the next finds the new leader."""
    monkeypatch.setattr(restore, "LIST_OFFSETS_BACKOFF_S", 0.0)

    class Answer:
        def __init__(self, offset: int) -> None:
            self.offset = offset

        def result(self, timeout: float) -> Answer:
            return self

    class Admin:
        calls = 0

        def list_offsets(self, requests: dict, **_: object) -> dict:
            Admin.calls += 1  # two per listing (log start and end): the first two listings fail
            return dict.fromkeys(requests, Answer(-1001 if Admin.calls <= 4 else 7))

    admins: list[Admin] = []

    def new_admin(_settings: dict) -> Admin:
        admins.append(Admin())
        return admins[-1]

    # A new admin client per try: the old one kept asking the dead leader.
    monkeypatch.setattr(restore, "AdminClient", new_admin)
    restorer = ChangelogRestorer({"bootstrap.servers": "127.0.0.1:1"}, "t.history")
    try:
        assert restorer.watermarks([0]) == {0: (7, 7)}
    finally:
        restorer.close()
    assert len(admins) == 3


class ChangelogRecord:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return f"k{self._offset}".encode()

    def value(self) -> bytes:
        return b"v"


class ScriptedConsumer:
    """Hands out the queued records; positions are after the last record handed out."""

    def __init__(self) -> None:
        self.queue: list[ChangelogRecord] = []
        self.positions: dict[int, int] = {}
        self.calls: list[tuple[str, list[tuple[int, int]]]] = []

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self.calls.append(("assign", [(tp.partition, tp.offset) for tp in tps]))
        self.positions.update((tp.partition, -1001) for tp in tps)

    def incremental_unassign(self, tps: list[TopicPartition]) -> None:
        self.calls.append(("unassign", [(tp.partition, tp.offset) for tp in tps]))

    def consume(self, limit: int, timeout: float) -> list[ChangelogRecord]:
        taken, self.queue = self.queue[:limit], self.queue[limit:]
        for record in taken:
            self.positions[record.partition()] = max(self.positions[record.partition()], record.offset() + 1)
        return taken

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions[tp.partition]) for tp in tps]

    def close(self) -> None:
        pass


def put(batch: StoreBatch, _store: PartitionStore, key: bytes | None, value: bytes | None) -> None:
    assert key is not None and value is not None
    batch.put(key, value)


def test_a_restore_folds_before_its_end_is_known_and_hands_each_store_back_at_its_end(tmp_path: Path) -> None:
    restorer = ChangelogRestorer({"bootstrap.servers": "127.0.0.1:1"}, "t.history")
    consumer = restorer._consumer = ScriptedConsumer()  # type: ignore[assignment]
    stores = {p: PartitionStore.open(tmp_path / str(p)) for p in (0, 1, 2)}
    try:
        restorer.begin(stores)
        assert consumer.calls == [("assign", [(0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING), (2, OFFSET_BEGINNING)])]
        consumer.queue = [ChangelogRecord(1, 0), ChangelogRecord(2, 0), ChangelogRecord(2, 1), ChangelogRecord(1, 1)]
        # Folded while the previous owner is fenced, but none is done before its end is known.
        assert restorer.step(put, limit=3) == []
        assert stores[1].changelog_offset == 0 and stores[2].changelog_offset == 1
        # Partition 0's log is empty; 2 has the 2 records already folded; 1 has 3 of which 1 is folded.
        done = restorer.set_ends({0: (0, 0), 1: (0, 3), 2: (0, 2)})
        assert [(report.partition, report.records) for report in done] == [(0, 0), (2, 2)]
        assert consumer.calls[-2:] == [("unassign", [(0, -1001)]), ("unassign", [(2, -1001)])]
        assert restorer.restoring == {1}
        assert restorer.step(put) == []  # record 1 folded, the end (3) not reached
        consumer.positions[1] = 3  # past the transaction's commit marker at offset 2
        [report] = restorer.step(put)
        assert (report.partition, report.records) == (1, 2)
        assert stores[1].changelog_offset == 1
        assert restorer.restoring == set()
    finally:
        for store in stores.values():
            store.close()


def test_a_store_ahead_of_the_log_is_wiped_and_read_again_from_the_start(tmp_path: Path) -> None:
    restorer = ChangelogRestorer({"bootstrap.servers": "127.0.0.1:1"}, "t.history")
    consumer = restorer._consumer = ScriptedConsumer()  # type: ignore[assignment]
    store = PartitionStore.open(tmp_path / "1")
    try:
        batch = store.batch()
        batch.put(b"k", b"v")
        store.write(batch, changelog_offset=10)
        restorer.begin({1: store})
        assert consumer.calls == [("assign", [(1, 11)])]
        assert restorer.set_ends({1: (0, 5)}) == []  # the log was recreated: 5 records
        assert consumer.calls[-2:] == [("unassign", [(1, 0)]), ("assign", [(1, 0)])]
        assert store.changelog_offset is None and store.get(b"k") is None
        assert restorer.restoring == {1}
    finally:
        store.close()


def test_a_cancelled_restore_stops_reading_and_skips_what_was_already_fetched(tmp_path: Path) -> None:
    restorer = ChangelogRestorer({"bootstrap.servers": "127.0.0.1:1"}, "t.history")
    consumer = restorer._consumer = ScriptedConsumer()  # type: ignore[assignment]
    store = PartitionStore.open(tmp_path / "1")
    try:
        restorer.begin({1: store})
        consumer.queue = [ChangelogRecord(1, 0)]
        restorer.cancel([1])
        assert consumer.calls[-1] == ("unassign", [(1, -1001)])
        assert restorer.step(put) == []
        assert store.changelog_offset is None
    finally:
        store.close()
