"""PartitionStore: reads, ordered scans, atomic writes with the changelog offset, reopen."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.store import MAX_WAL_BYTES, WRITE_BUFFER_BYTES, PartitionStore, StoreError, prefix_end


@pytest.fixture
def store(tmp_path: Path):
    opened = PartitionStore.open(tmp_path / "g" / "in-0")
    yield opened
    opened.close()


def write(store: PartitionStore, pairs: dict[bytes, bytes], offset: int | None = None) -> None:
    batch = store.batch()
    for key, value in pairs.items():
        batch.put(key, value)
    store.write(batch, changelog_offset=offset)


def test_put_get_delete(store: PartitionStore) -> None:
    write(store, {b"a": b"1", b"b": b"2"})
    assert store.get(b"a") == b"1"
    assert store.get(b"zz") is None
    batch = store.batch()
    batch.delete(b"a")
    store.write(batch)
    assert store.get(b"a") is None
    assert store.get(b"b") == b"2"


def test_scan_prefix_is_ordered_bounded_and_limited(store: PartitionStore) -> None:
    write(store, {b"i1/3": b"c", b"i1/1": b"a", b"i1/2": b"b", b"i2/1": b"x", b"i0/9": b"y"})
    assert list(store.scan_prefix(b"i1/")) == [(b"i1/1", b"a"), (b"i1/2", b"b"), (b"i1/3", b"c")]
    assert list(store.scan_prefix(b"i1/", limit=2)) == [(b"i1/1", b"a"), (b"i1/2", b"b")]
    assert list(store.scan_prefix(b"nothing")) == []
    assert [k for k, _ in store.scan_prefix(b"")] == [b"i0/9", b"i1/1", b"i1/2", b"i1/3", b"i2/1"]


def test_scan_range_is_half_open(store: PartitionStore) -> None:
    keys = {(t).to_bytes(8, "big"): b"%d" % t for t in (5, 10, 15, 20)}
    write(store, keys)
    found = [int.from_bytes(k, "big") for k, _ in store.scan_range((10).to_bytes(8, "big"), (20).to_bytes(8, "big"))]
    assert found == [10, 15]
    assert len(list(store.scan_range(b"", b"\xff" * 9, limit=3))) == 3


def test_prefix_end_handles_ff_bytes() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None
    assert prefix_end(b"") is None


def test_offset_is_written_with_the_data_and_survives_reopen(tmp_path: Path) -> None:
    folder = tmp_path / "g" / "in-3"
    store = PartitionStore.open(folder)
    assert store.changelog_offset is None
    write(store, {b"k": b"v"}, offset=41)
    assert store.changelog_offset == 41
    store.close()
    again = PartitionStore.open(folder)
    assert again.changelog_offset == 41
    assert again.get(b"k") == b"v"
    again.close()


def test_offset_lives_outside_the_application_key_space(store: PartitionStore) -> None:
    write(store, {b"a": b"1"}, offset=7)
    assert list(store.scan_prefix(b"")) == [(b"a", b"1")]
    batch = store.batch()
    batch.delete_range(b"", b"\xff" * 32)
    store.write(batch)
    assert store.changelog_offset == 7
    assert list(store.scan_prefix(b"")) == []


def test_reopen_in_same_process_with_a_scan_left_open(tmp_path: Path) -> None:
    folder = tmp_path / "g" / "in-1"
    store = PartitionStore.open(folder)
    write(store, {b"a": b"1", b"b": b"2"}, offset=1)
    unfinished = store.scan_prefix(b"")
    assert next(unfinished) == (b"a", b"1")
    never_started = store.scan_range(b"a", b"z")
    store.close()
    store.close()  # twice is harmless
    again = PartitionStore.open(folder)  # would fail on LOCK if a cursor still held the DB
    assert again.get(b"b") == b"2"
    again.close()
    with pytest.raises(StoreError, match="closed"):
        next(unfinished)
    with pytest.raises(StoreError, match="closed"):
        next(never_started)


def test_use_after_close_raises_store_error(tmp_path: Path) -> None:
    store = PartitionStore.open(tmp_path / "s")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get(b"a")


def test_second_open_of_an_open_store_names_the_folder(store: PartitionStore) -> None:
    with pytest.raises(StoreError, match=str(store.folder)):
        PartitionStore.open(store.folder)


def test_batch_reads_its_own_writes(store: PartitionStore) -> None:
    write(store, {b"a": b"old", b"b": b"kept", b"c": b"gone"})
    batch = store.batch()
    batch.put(b"a", b"new")
    batch.delete(b"c")
    batch.delete_range(b"b", b"bz")
    batch.put(b"d", b"added")
    assert batch.get(b"a") == b"new"
    assert batch.get(b"b") is None
    assert batch.get(b"c") is None
    assert batch.get(b"d") == b"added"
    assert store.get(b"a") == b"old"  # nothing visible before write
    store.write(batch)
    assert [k for k, _ in store.scan_prefix(b"")] == [b"a", b"d"]


def test_empty_write_without_offset_is_a_no_op(store: PartitionStore) -> None:
    store.write(store.batch())
    assert store.changelog_offset is None


def test_wipe_leaves_an_open_empty_store(store: PartitionStore) -> None:
    write(store, {b"a": b"1"}, offset=9)
    store.wipe()
    assert store.changelog_offset is None
    assert store.get(b"a") is None
    write(store, {b"b": b"2"}, offset=0)
    assert store.get(b"b") == b"2"


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.binary(min_size=0, max_size=6), st.binary(max_size=4), max_size=30), st.binary(max_size=2))
def test_scan_prefix_matches_a_sorted_filter(tmp_path_factory, pairs: dict[bytes, bytes], prefix: bytes) -> None:
    folder = tmp_path_factory.mktemp("prop")
    with PartitionStore.open(folder) as store:
        write(store, pairs)
        expected = sorted((k, v) for k, v in pairs.items() if k.startswith(prefix))
        assert list(store.scan_prefix(prefix)) == expected


def test_the_write_ahead_log_stays_bounded_while_the_offset_changes_with_every_write(store: PartitionStore) -> None:
    # Three memtables' worth of overwrites of few keys: the data is small, and so must the
    # log be, though the offset's column family never fills a memtable of its own.
    value = bytes(range(256)) * 16
    for offset in range(3 * WRITE_BUFFER_BYTES // (len(value) * 10)):
        write(store, {b"k%d" % (offset % 10 * 10 + n): value for n in range(10)}, offset)
    logs = sum(p.stat().st_size for p in store.folder.glob("*.log"))
    assert logs <= MAX_WAL_BYTES
    assert store.changelog_offset == offset
