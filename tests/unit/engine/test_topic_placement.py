"""Growing the partition count of existing topics is refused: the placement check."""

from __future__ import annotations

from engine.core.partitioner import partition_for
from engine.state.topics import misplaced_partitions


def keys_placed_by(partitions: int, count: int = 200) -> dict[int, bytes]:
    """The first key of each partition, placed with ``partitions`` partitions."""
    first: dict[int, bytes] = {}
    for i in range(count):
        key = f"order-{i}".encode()
        first.setdefault(partition_for(key, partitions), key)
    return first


def test_keys_placed_at_todays_count_are_in_place() -> None:
    assert misplaced_partitions(keys_placed_by(8), 8) == []


def test_keys_placed_before_the_topics_grew_are_found() -> None:
    assert misplaced_partitions(keys_placed_by(8), 16) != []
    assert misplaced_partitions(keys_placed_by(2), 3) != []


def test_an_empty_history_has_nothing_misplaced() -> None:
    assert misplaced_partitions({}, 8) == []
