"""When a copy of a compacted topic resumes from its stored offsets, and when it starts over."""

from __future__ import annotations

from pathlib import Path

from streams.folder_lock import claim_folder
from streams.mirror import decode_offsets, encode_offsets, plan_resume

DAY_MS = 86_400_000
NOW = 10 * DAY_MS


def plan(stored: dict[int, int], watermarks: dict[int, tuple[int, int]], *, synced_at: int | None = NOW - 1000,
         ids: tuple[str | None, str | None] = ("A", "A"), retention: int = DAY_MS) -> tuple[bool, dict[int, int], str]:
    result = plan_resume(stored, ids[0], ids[1], watermarks, synced_at, NOW, retention)
    return result.rebuild, result.starts, result.reason


def test_a_copy_resumes_from_its_offsets_and_reads_new_partitions_from_the_beginning() -> None:
    rebuild, starts, _ = plan({0: 10, 1: 4}, {0: (0, 12), 1: (0, 4), 2: (0, 7)})
    assert not rebuild and starts == {0: 10, 1: 4}  # partition 2 is not there: from the beginning


def test_a_new_copy_starts_from_the_beginning_without_rebuilding() -> None:
    assert plan({}, {0: (0, 5)}) == (False, {}, "a new copy")


def test_a_recreated_topic_is_read_again_from_the_beginning() -> None:
    assert plan({0: 10}, {0: (0, 12)}, ids=("A", "B"))[0]  # another topic ID
    assert plan({0: 10}, {0: (0, 3)})[0]  # offsets past the end
    assert plan({0: 10}, {0: (11, 30)})[0]  # the log starts past the stored offset
    assert plan({0: 10, 3: 1}, {0: (0, 12)})[0]  # a partition gone
    assert not plan({0: 10}, {0: (0, 12)}, ids=(None, "B"))[0]  # an ID unknown then: the offsets decide


def test_a_copy_away_longer_than_the_tombstone_retention_starts_over_only_if_it_missed_records() -> None:
    stale = NOW - DAY_MS
    assert plan({0: 10}, {0: (0, 12)}, synced_at=stale)[0]
    assert plan({0: 10}, {0: (0, 12)}, synced_at=None)[0]
    # Nothing written since it left: no tombstone can have been missed.
    assert not plan({0: 10}, {0: (0, 10)}, synced_at=stale)[0]
    # A tenth of the retention is kept as a margin for clock skew.
    assert plan({0: 10}, {0: (0, 12)}, synced_at=NOW - DAY_MS * 95 // 100)[0]
    assert not plan({0: 10}, {0: (0, 12)}, synced_at=NOW - DAY_MS * 85 // 100)[0]


def test_offsets_round_trip() -> None:
    assert decode_offsets(encode_offsets({3: 7, 0: 12})) == {0: 12, 3: 7}
    assert decode_offsets(None) == {}


def test_a_locked_slot_sends_the_next_process_to_the_next_slot_then_to_a_temporary_folder(tmp_path: Path) -> None:
    first = claim_folder(tmp_path, 2, "t-")
    second = claim_folder(tmp_path, 2, "t-")
    third = claim_folder(tmp_path, 2, "t-")
    try:
        assert (first.path, second.path) == (tmp_path / "slot-0", tmp_path / "slot-1")
        assert third.temporary and not third.path.is_relative_to(tmp_path)
        first.release()
        again = claim_folder(tmp_path, 2, "t-")
        assert again.path == tmp_path / "slot-0"  # released: free again
        again.release()
    finally:
        for claim in (second, third):
            claim.release()
    assert not third.path.exists()
