"""Bulk purge and terminate: the filter, the statuses each action covers, the record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.core.bulk import PURGE, TERMINATE, BulkCommand, bulk_statuses, to_ms
from engine.core.history import WorkflowStatus
from engine.state.codec import decode_bulk, decode_event, encode_bulk, is_bulk

S = WorkflowStatus


def test_each_action_covers_the_statuses_it_can_apply_to_by_default() -> None:
    assert set(bulk_statuses(PURGE, None)) == {S.COMPLETED, S.FAILED, S.TERMINATED}
    assert set(bulk_statuses(TERMINATE, None)) == {S.RUNNING, S.PENDING, S.SUSPENDED}
    assert bulk_statuses(PURGE, ["completed", S.FAILED, "COMPLETED"]) == (S.COMPLETED, S.FAILED)


@pytest.mark.parametrize(("action", "statuses", "message"), [
    (PURGE, ["RUNNING"], "cannot be purged"),
    (TERMINATE, ["COMPLETED"], "cannot be terminated"),
    (PURGE, ["DONE"], "unknown status"),
    (PURGE, [], "no status"),
    ("DELETE", None, "unknown bulk action"),
])
def test_a_filter_that_cannot_apply_says_why(action: str, statuses: list[str] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bulk_statuses(action, statuses)


def test_the_filter_matches_status_name_and_creation_time() -> None:
    command = BulkCommand("c", PURGE, (S.COMPLETED,), "chain3", created_after_ms=1000, created_before_ms=2000)
    assert command.matches(S.COMPLETED, "chain3", 1000)
    assert command.matches(S.COMPLETED, "chain3", 1999)
    assert not command.matches(S.COMPLETED, "chain3", 2000)  # before is exclusive
    assert not command.matches(S.COMPLETED, "chain3", 999)
    assert not command.matches(S.FAILED, "chain3", 1500)
    assert not command.matches(S.COMPLETED, "other", 1500)
    everything = BulkCommand("c", PURGE, (S.COMPLETED, S.FAILED))
    assert everything.matches(S.FAILED, "any", 0)


def test_times_without_a_zone_are_refused() -> None:
    assert to_ms(datetime(2026, 11, 1, tzinfo=UTC)) == 1793491200000
    with pytest.raises(ValueError, match="time zone"):
        to_ms(datetime(2026, 11, 1))


def test_a_bulk_command_is_its_own_record_on_the_inbox() -> None:
    command = BulkCommand("c1", TERMINATE, (S.RUNNING, S.SUSPENDED), "wf", 1, 2, '"stop"', "order-9")
    raw = encode_bulk(command)
    assert is_bulk(raw)
    assert decode_bulk(raw) == command
    with pytest.raises(ValueError):
        decode_event(raw)
    assert not is_bulk(None)
