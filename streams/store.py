"""Per-partition state: one RocksDB database per (group, topic, partition).

Keys and values are raw bytes (rocksdict raw mode). The application owns the default
column family; the offset of the last changelog record folded into the store lives in a
column family of its own, ``streams.meta``, so no application key, prefix scan or range
delete can ever touch it. Data and offset change together in one ``WriteBatch``.

Writes are not fsynced: RocksDB hands every write to the operating system before
``write`` returns, so a killed process loses nothing; a machine crash may lose the last
writes, and the older offset left behind makes the next restore replay them.

Every RocksDB iterator and column-family handle keeps the database open, so the store
tracks the scans it hands out and releases them, and its handle, in ``close``: after
``close`` the same process can open the folder again (a revoked partition that comes
back) without tripping over RocksDB's LOCK file.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import struct
import weakref
from collections.abc import Iterator
from pathlib import Path

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    RdictIter,
    ReadOptions,
    WriteBatch,
    WriteBufferManager,
)

log = logging.getLogger("streams.store")

META_COLUMN_FAMILY = "streams.meta"
CHANGELOG_OFFSET_KEY = b"changelog_offset"
_OFFSET = struct.Struct(">q")
# Several partitions share one process: small memtables bound memory per store
# (RocksDB's default is 64 MiB each); state records are small and flushed often enough.
# A store's write-ahead log holds what its memtable holds, so this also bounds the unflushed
# bytes on disk: eight stores of 8 MiB kept ~4 KB per instance of a 10,000-instance run in
# the folder; at 2 MiB, more and smaller table files, compacted in the background.
WRITE_BUFFER_BYTES = 2 * 1024 * 1024
# Flushes and compactions of one small store need little parallelism on shared cores.
BACKGROUND_JOBS = 2
# Every store of a process shares one block cache, which holds the tables' index and filter
# blocks too: RocksDB otherwise gives each store a cache of its own and keeps every table's
# index in memory besides, so memory grew with the data held. ``KWF_STORE_CACHE_MB`` sets it.
BLOCK_CACHE_BYTES = int(os.environ.get("KWF_STORE_CACHE_MB", "64")) * 1024 * 1024
# The memtables of every store of the process together; past this RocksDB flushes early.
WRITE_BUFFERS_BYTES = 64 * 1024 * 1024
# A write-ahead log file is deleted only once every column family has flushed what it holds,
# and the offset's column family alone never fills its memtable: without a cap the log kept
# every write since the store opened (~4 KB per finished instance). Flushing both column
# families together (atomic flush) frees it at each flush; this cap is the backstop.
MAX_WAL_BYTES = 2 * WRITE_BUFFER_BYTES
# RocksDB's own text log: one small file and one old one, not the default thousand.
INFO_LOG_BYTES = 1024 * 1024
INFO_LOG_FILES = 2


class StoreError(RuntimeError):
    """The store was used after close, or its files could not be opened; the message says which."""


@functools.cache
def _shared_memory() -> tuple[Cache, WriteBufferManager]:
    """The process's block cache and memtable budget (made once: they must outlive the stores)."""
    return Cache(BLOCK_CACHE_BYTES), WriteBufferManager(WRITE_BUFFERS_BYTES, False)


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    cache, write_buffers = _shared_memory()
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)
    # The newest tables' index and filter stay in the cache: every read consults them.
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_manager(write_buffers)
    options.set_max_background_jobs(BACKGROUND_JOBS)
    options.set_atomic_flush(True)
    options.set_max_total_wal_size(MAX_WAL_BYTES)
    options.set_max_log_file_size(INFO_LOG_BYTES)
    options.set_keep_log_file_num(INFO_LOG_FILES)
    # LZ4 where data is rewritten often, zstd in the bottom level where most of it rests:
    # RocksDB's advice for small values that compress well (JSON, Avro).
    options.set_compression_type(DBCompressionType.lz4())
    options.set_bottommost_compression_type(DBCompressionType.zstd())
    return options


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix`` (None: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class StoreBatch:
    """Changes to one store, applied atomically by ``PartitionStore.write``.

    ``get`` reads through the batch: it sees the batch's own puts and deletes first, then
    the store, so a fold over several records in one batch can build on its earlier steps.
    """

    __slots__ = ("_store", "_batch", "_pending", "_deleted_ranges")

    def __init__(self, store: PartitionStore) -> None:
        self._store = store
        self._batch = WriteBatch(raw_mode=True)
        self._pending: dict[bytes, bytes | None] = {}
        self._deleted_ranges: list[tuple[bytes, bytes]] = []

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``."""
        self._batch.put(key, value)
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        """Remove ``key`` (no error when it is absent)."""
        self._batch.delete(key)
        self._pending[key] = None

    def delete_range(self, start: bytes, end: bytes) -> None:
        """Remove every key in ``[start, end)``."""
        self._batch.delete_range(start, end)
        for key in [k for k in self._pending if start <= k < end]:
            del self._pending[key]
        self._deleted_ranges.append((start, end))

    def get(self, key: bytes) -> bytes | None:
        """The value ``key`` will have once this batch is written."""
        if key in self._pending:
            return self._pending[key]
        for start, end in self._deleted_ranges:
            if start <= key < end:
                return None
        return self._store.get(key)

    def __len__(self) -> int:
        return self._batch.len()

    def _take(self) -> WriteBatch:
        return self._batch


class _Scan:
    """An ordered scan over one store; ends at its bound or limit, fails once the store closes."""

    __slots__ = ("_folder", "_cursor", "_read_options", "_left", "_released", "__weakref__")

    def __init__(self, folder: Path, cursor: RdictIter, read_options: ReadOptions, limit: int | None) -> None:
        self._folder = folder
        self._cursor: RdictIter | None = cursor
        # The cursor borrows the upper bound from these options: they must outlive it.
        self._read_options: ReadOptions | None = read_options
        self._left = -1 if limit is None else limit
        self._released = False

    def __iter__(self) -> _Scan:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        cursor = self._cursor
        if cursor is None:
            if self._released:
                raise StoreError(f"the store in {self._folder} was closed while this scan was open")
            raise StopIteration
        if self._left == 0 or not cursor.valid():
            # The cursor holds the database open: drop it as soon as the scan ends.
            self._cursor = None
            self._read_options = None
            raise StopIteration
        item = (cursor.key(), cursor.value())
        self._left -= 1
        cursor.next()
        return item

    def release(self) -> None:
        """Drop the cursor (the store is closing); later reads raise StoreError."""
        if self._cursor is not None:
            self._cursor = None
            self._read_options = None
            self._released = True


class PartitionStore:
    """The RocksDB store of one partition. Open it with ``PartitionStore.open``."""

    def __init__(self, folder: Path, db: Rdict) -> None:
        self.folder = folder
        self._db: Rdict | None = db
        self._meta = db.get_column_family_handle(META_COLUMN_FAMILY)
        self._meta_cf: Rdict | None = db.get_column_family(META_COLUMN_FAMILY)
        self._scans: weakref.WeakSet[_Scan] = weakref.WeakSet()
        raw = self._meta_cf.get(CHANGELOG_OFFSET_KEY)
        self._changelog_offset: int | None = None if raw is None else _OFFSET.unpack(raw)[0]

    @classmethod
    def open(cls, folder: Path) -> PartitionStore:
        """Open (or create) the store in ``folder`` (``state_dir / group / f"{topic}-{partition}"``).

        Raises:
            StoreError: RocksDB could not open the folder, e.g. another process holds it.
        """
        folder.mkdir(parents=True, exist_ok=True)
        try:
            db = Rdict(str(folder), _options(), column_families={META_COLUMN_FAMILY: Options(raw_mode=True)})
        except Exception as err:  # rocksdict raises plain Exception subclasses for I/O and LOCK errors
            raise StoreError(
                f"cannot open the state store in {folder}: {err}. If another processor uses the same "
                "state folder, give each its own state_dir."
            ) from err
        store = cls(folder, db)
        log.debug("opened store %s at changelog offset %s", folder, store.changelog_offset)
        return store

    @property
    def changelog_offset(self) -> int | None:
        """Offset of the last changelog record applied to this store (None: nothing applied)."""
        return self._changelog_offset

    @property
    def closed(self) -> bool:
        return self._db is None

    def _open_db(self) -> Rdict:
        if self._db is None:
            raise StoreError(f"the store in {self.folder} is closed (its partition was revoked)")
        return self._db

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or None."""
        return self._open_db().get(key)

    def scan_prefix(self, prefix: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with ``prefix``, in key order, at most ``limit`` of them."""
        return self._scan(prefix, prefix_end(prefix), limit)

    def scan_range(self, start: bytes, end: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries with ``start <= key < end``, in key order, at most ``limit`` of them."""
        return self._scan(start, end, limit)

    def _scan(self, start: bytes, end: bytes | None, limit: int | None) -> Iterator[tuple[bytes, bytes]]:
        read_options = ReadOptions()
        if end is not None:
            # The bound stops RocksDB itself at ``end`` instead of reading one block past it.
            read_options.set_iterate_upper_bound(end)
        cursor = self._open_db().iter(read_options)
        cursor.seek(start)
        scan = _Scan(self.folder, cursor, read_options, limit)
        self._scans.add(scan)
        return scan

    def batch(self) -> StoreBatch:
        """A new, empty batch of changes to this store."""
        return StoreBatch(self)

    def get_meta(self, key: bytes) -> bytes | None:
        """A bookkeeping value written with ``write(..., meta=)``, or None."""
        self._open_db()
        assert self._meta_cf is not None
        return self._meta_cf.get(key)

    def write(self, batch: StoreBatch, changelog_offset: int | None = None,
              meta: dict[bytes, bytes] | None = None) -> None:
        """Apply ``batch`` and, when given, the new applied changelog offset and bookkeeping
        values (kept apart from application keys) in one atomic write."""
        db = self._open_db()
        raw = batch._take()
        if changelog_offset is not None:
            raw.put(CHANGELOG_OFFSET_KEY, _OFFSET.pack(changelog_offset), self._meta)
        for key, value in (meta or {}).items():
            raw.put(key, value, self._meta)
        if raw.is_empty():
            return
        db.write(raw)
        if changelog_offset is not None:
            self._changelog_offset = changelog_offset

    def flush(self) -> None:
        """Write the memtables to table files, so the next open reads them instead of
        replaying the write-ahead log (seconds for a large store)."""
        db = self._open_db()
        db.flush(True)
        assert self._meta_cf is not None
        self._meta_cf.flush(True)

    def close(self) -> None:
        """Release every open scan and handle, then close RocksDB. Safe to call twice."""
        if self._db is None:
            return
        for scan in list(self._scans):
            scan.release()
        self._scans = weakref.WeakSet()
        db, self._db = self._db, None
        self._meta_cf = None
        del self._meta
        db.close()
        del db
        log.debug("closed store %s", self.folder)

    def wipe(self) -> None:
        """Delete every entry and the applied offset, leaving an open, empty store."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        fresh = PartitionStore.open(self.folder)
        self._db, self._meta, self._meta_cf = fresh._db, fresh._meta, fresh._meta_cf
        self._changelog_offset = None
        fresh._db = None  # ownership moved to self
        fresh._meta_cf = None
        del fresh._meta

    def __enter__(self) -> PartitionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else f"changelog offset {self._changelog_offset}"
        return f"PartitionStore({self.folder}, {state})"
