"""The failover bench reads the steps of a takeover from the survivor's log lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bench.failover import takeover_steps

KILLED_AT = datetime(2026, 11, 30, 5, 0, 0, tzinfo=UTC).timestamp()


def line(seconds: float, message: str) -> str:
    at = datetime.fromtimestamp(KILLED_AT + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return json.dumps({"time": at, "message": message})


def test_the_steps_are_the_first_assignment_the_last_restore_and_ready_and_the_longest_fence(tmp_path: Path) -> None:
    log = tmp_path / "survivor.log"
    log.write_text("\n".join([
        line(-1.0, "assigned t.inbox partitions [4, 5, 6, 7]"),  # before the kill: not this takeover
        line(1.5, "assigned t.inbox partitions [0, 1, 2, 3]"),
        line(1.6, "assigned t.commands partitions [0, 1]"),
        line(1.7, "took over t.commands partitions [0, 1]: owners checked and fenced in 0.01 s, changelog "
                  "offsets listed in 0.00 s"),
        line(2.4, "took over t.inbox partitions [0, 1, 2, 3]: owners checked and fenced in 0.90 s, changelog "
                  "offsets listed in 0.02 s"),
        line(2.9, "restored t.history-1: 1068 records up to offset 2055 in 0.50 s"),
        line(2.9, "partitions [1] of t.inbox ready 1.40 s after their assignment"),
        line(3.5, "restored t.history-0: 974 records up to offset 1847 in 1.10 s"),
        line(3.5, "partitions [0, 2, 3] of t.inbox ready 2.00 s after their assignment"),
        "not json",
    ]))
    assert takeover_steps(log, KILLED_AT) == {
        "assigned_s": 1.5, "restored_s": 3.5, "restored_records": 2042, "ready_s": 3.5,
        "fence_s": 0.9, "listing_s": 0.02,
    }
