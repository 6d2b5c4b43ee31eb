"""The status view's index: instances by status, name and created time, read a page at a time.

Every status record puts four keys (values empty) in the view's RocksDB, in the batch that
writes the record; the record's previous keys are deleted in the same batch, so the index
never shows an instance under a status it left:

    x/a/{created}{id}                       every instance
    x/s/{STATUS}\\0{created}{id}             by status
    x/n/{name}\\0{created}{id}               by workflow name
    x/sn/{STATUS}\\0{name}\\0{created}{id}    by both

``{created}`` is the creation time in ms, 8 bytes big-endian, so each index is in creation
order and a time range is one key range. A page is one bounded scan of the index that
matches the filter; its continuation token is the position of its last key (creation time
and ID), so a page never repeats or skips an instance whose place in that index holds,
whatever is added or changed elsewhere meanwhile. Plain functions: no store, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from datetime import datetime

from engine.core.history import WorkflowStatus
from engine.state.codec import StatusRecord

INDEX = b"x/"
_ALL, _STATUS, _NAME, _BOTH = b"x/a/", b"x/s/", b"x/n/", b"x/sn/"
_CREATED = struct.Struct(">Q")
# The most instances one page may ask for: a page is read and decoded in one call.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


class BadContinuationToken(ValueError):
    """A continuation token this API did not hand out; start again without one."""


@dataclass(frozen=True)
class ListFilter:
    """Which instances a list asks for; ``created_after_ms`` is inclusive, ``created_before_ms`` not."""

    status: WorkflowStatus | None = None
    name: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None

    def matches(self, record: StatusRecord) -> bool:
        created = created_ms(record.created_at)
        return ((self.status is None or record.runtime_status is self.status)
                and (self.name is None or record.name == self.name)
                and (self.created_after_ms is None or created >= self.created_after_ms)
                and (self.created_before_ms is None or created < self.created_before_ms))


def created_ms(moment: datetime) -> int:
    return max(0, int(moment.timestamp() * 1000))


def _position(record: StatusRecord) -> bytes:
    return _CREATED.pack(created_ms(record.created_at)) + record.instance_id.encode()


def _prefix(status: WorkflowStatus | None, name: str | None) -> bytes:
    if status is not None and name is not None:
        return _BOTH + status.name.encode() + b"\0" + name.encode() + b"\0"
    if status is not None:
        return _STATUS + status.name.encode() + b"\0"
    if name is not None:
        return _NAME + name.encode() + b"\0"
    return _ALL


def index_keys(record: StatusRecord) -> list[bytes]:
    """The index keys of one status record."""
    position = _position(record)
    return [_prefix(s, n) + position for s in (None, record.runtime_status) for n in (None, record.name)]


def page_range(query: ListFilter, token: str | None) -> tuple[bytes, bytes, bytes]:
    """(index prefix, first key, end key) of the scan for one page.

    Raises:
        BadContinuationToken: ``token`` was not made by ``token_after``.
    """
    prefix = _prefix(query.status, query.name)
    start = prefix + _CREATED.pack(query.created_after_ms or 0)
    end = prefix + (_CREATED.pack(query.created_before_ms) if query.created_before_ms is not None else b"\xff" * 9)
    if token is not None:
        # The smallest key after the token's position: the ID ends every key.
        start = max(start, prefix + parse_token(token) + b"\0")
    return prefix, start, end


def instance_of(index_key: bytes, prefix: bytes) -> str:
    return index_key[len(prefix) + _CREATED.size:].decode()


def token_after(index_key: bytes, prefix: bytes) -> str:
    """The continuation token that resumes a scan after ``index_key``."""
    return base64.urlsafe_b64encode(index_key[len(prefix):]).decode().rstrip("=")


def parse_token(token: str) -> bytes:
    try:
        position = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as err:
        raise BadContinuationToken(f"continuation token {token!r} is not one this API handed out") from err
    if len(position) <= _CREATED.size:
        raise BadContinuationToken(f"continuation token {token!r} is not one this API handed out")
    return position
