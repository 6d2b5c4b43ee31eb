"""The status index: keys that move with a status, and cursor pages over a key range."""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta

import pytest

from engine.api.status_index import (
    BadContinuationToken,
    ListFilter,
    index_keys,
    instance_of,
    page_range,
    token_after,
)
from engine.core.history import WorkflowStatus
from engine.state.codec import StatusRecord

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def record(n: int, status: WorkflowStatus = WorkflowStatus.RUNNING, name: str = "wf") -> StatusRecord:
    at = EPOCH + timedelta(seconds=n % 7)  # several instances share a creation time
    return StatusRecord(f"i-{n:03d}", "e", name, status, at, at)


class SortedKeys:
    """The index as RocksDB keeps it: sorted keys, scanned by range."""

    def __init__(self, records: list[StatusRecord]) -> None:
        self.keys = sorted(k for r in records for k in index_keys(r))

    def update(self, old: StatusRecord, new: StatusRecord) -> None:
        for key in set(index_keys(old)) - set(index_keys(new)):
            self.keys.remove(key)
        for key in index_keys(new):
            if key not in self.keys:
                bisect.insort(self.keys, key)

    def page(self, query: ListFilter, size: int, token: str | None) -> tuple[list[str], str | None]:
        prefix, start, end = page_range(query, token)
        found = [k for k in self.keys if start <= k < end][:size + 1]
        more = len(found) > size
        found = found[:size]
        return [instance_of(k, prefix) for k in found], token_after(found[-1], prefix) if more else None


def every_page(index: SortedKeys, query: ListFilter, size: int) -> list[str]:
    seen: list[str] = []
    token = None
    while True:
        ids, token = index.page(query, size, token)
        seen.extend(ids)
        if token is None:
            return seen


def test_each_record_is_indexed_by_all_status_name_and_both() -> None:
    keys = index_keys(record(1, WorkflowStatus.COMPLETED, "chain"))
    assert len(keys) == 4 and len({k[:4] for k in keys}) == 4
    assert all(k.endswith(b"i-001") for k in keys)


def test_pages_in_creation_order_without_duplicates_or_gaps_whatever_the_page_size() -> None:
    records = [record(n) for n in range(40)]
    index = SortedKeys(records)
    expected = [r.instance_id for r in sorted(records, key=lambda r: (r.created_at, r.instance_id))]
    for size in (1, 3, 7, 40, 100):
        assert every_page(index, ListFilter(), size) == expected


def test_a_filter_reads_only_its_own_range() -> None:
    records = [record(n, WorkflowStatus.COMPLETED if n % 2 else WorkflowStatus.FAILED, "a" if n % 3 else "b")
               for n in range(30)]
    index = SortedKeys(records)
    for query in (ListFilter(status=WorkflowStatus.FAILED), ListFilter(name="b"),
                  ListFilter(WorkflowStatus.COMPLETED, "a"),
                  ListFilter(created_after_ms=int((EPOCH + timedelta(seconds=2)).timestamp() * 1000),
                             created_before_ms=int((EPOCH + timedelta(seconds=5)).timestamp() * 1000))):
        got = every_page(index, query, 4)
        assert sorted(got) == sorted(r.instance_id for r in records if query.matches(r)), query


def test_status_changes_during_paging_neither_repeat_nor_skip_an_instance() -> None:
    records = {n: record(n) for n in range(50)}
    index = SortedKeys(list(records.values()))
    seen: list[str] = []
    token = None
    step = 0
    while True:
        ids, token = index.page(ListFilter(), 6, token)
        seen.extend(ids)
        for n in range(step, 50, 9):  # some instances end between pages
            new = record(n, WorkflowStatus.COMPLETED)
            index.update(records[n], new)
            records[n] = new
        step += 1
        if token is None:
            break
    assert sorted(seen) == sorted(r.instance_id for r in records.values()) and len(seen) == len(set(seen))
    assert every_page(index, ListFilter(status=WorkflowStatus.RUNNING), 5) == [
        r.instance_id for r in sorted(records.values(), key=lambda r: (r.created_at, r.instance_id))
        if r.runtime_status is WorkflowStatus.RUNNING]


@pytest.mark.parametrize("token", ["***", "", "YQ"])
def test_a_token_not_handed_out_is_refused(token: str) -> None:
    with pytest.raises(BadContinuationToken):
        page_range(ListFilter(), token)
