"""The retention policy: durations, which status keeps how long, and the ended index it reads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.core.history import WorkflowStatus
from engine.state.retention import RetentionPolicy, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800), ("1h30m", 5400), ("250ms", 0.25),
    ("0s", 0), ("42", 42), (" 2D ", 172800), (timedelta(minutes=2), 120), (3, 3),
])
def test_durations_are_read_like_dapr_writes_them(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "s", "7 days", "1w", "-5s", "5s3", "h1"])
def test_a_bad_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_specific_statuses_win_over_any_terminal() -> None:
    policy = RetentionPolicy.of(any_terminal="1h", failed="7d")
    assert policy.for_status(WorkflowStatus.COMPLETED) == 3600
    assert policy.for_status(WorkflowStatus.TERMINATED) == 3600
    assert policy.for_status(WorkflowStatus.FAILED) == 7 * 86400
    assert policy.for_status(WorkflowStatus.RUNNING) is None


def test_unset_keeps_everything() -> None:
    policy = RetentionPolicy()
    assert not policy.enabled
    assert policy.cutoffs(1_000_000) == {}
    only_completed = RetentionPolicy.of(completed="90s")
    assert only_completed.cutoffs(1_000_000) == {WorkflowStatus.COMPLETED: 1_000_000 - 90_000}


def test_the_environment_and_the_runtime_arguments_merge() -> None:
    env = {"KWF_RETENTION_ANY_TERMINAL": "1d", "KWF_RETENTION_COMPLETED": "15m"}
    policy = RetentionPolicy.from_env(env).merged(RetentionPolicy.of(completed="90s"))
    assert (policy.any_terminal, policy.completed, policy.failed) == (86400, 90, None)
