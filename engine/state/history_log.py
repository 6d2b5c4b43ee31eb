"""Keys of ``{prefix}.history``, a compacted log with one key per event.

Each accepted event is keyed ``{instance}/{sequence}`` and written to the partition of its
instance ID (murmur2, like the inbox and status), so compaction keeps every event of an
instance's current execution and nothing it superseded:

* a new execution (continue-as-new, or a start of an ended ID) first writes tombstones for
  the keys of the execution it replaces;
* a purge writes its ``PurgeRequested`` event and then tombstones for every key of the
  execution, its own included.

After compaction the topic holds the current execution of each instance that was not
purged, which is what a restore needs, and a purged instance's events are gone from it.
Instance IDs never contain ``/`` (``engine.core.history.validate_instance_id``).
"""

from __future__ import annotations

SEPARATOR = b"/"


def event_key(instance_id: str, sequence: int) -> bytes:
    """The history record key of one event."""
    return b"%s/%d" % (instance_id.encode(), sequence)


def instance_of(key: bytes | None) -> bytes | None:
    """The instance ID in a history record key (a key without a sequence is the ID itself)."""
    if key is None:
        return None
    return key.rsplit(SEPARATOR, 1)[0]


def execution_keys(instance_id: str, length: int) -> list[bytes]:
    """The keys of an execution with ``length`` events: what its tombstones are written on."""
    return [event_key(instance_id, sequence) for sequence in range(length)]
