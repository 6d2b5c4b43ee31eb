"""Retry policies for activities and child workflows.

Between attempts the workflow waits on a durable timer (TaskFailed -> TimerCreated ->
TimerFired -> a new TaskScheduled), so a retry schedule survives restarts like any other
step. Every time involved is a history timestamp, never the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.core.history import FailureDetails


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed activity or child workflow.

    The delay before attempt ``n + 1`` is ``first_retry_interval * backoff_coefficient ** (n - 1)``,
    capped at ``max_retry_interval``.

    Args:
        first_retry_interval: Delay before the second attempt; must be positive.
        max_number_of_attempts: Total attempts including the first; at least 1.
        backoff_coefficient: Growth factor of the delay; at least 1.
        max_retry_interval: Upper bound of any one delay; at least ``first_retry_interval``.
        retry_timeout: No attempt starts later than this after the first one was scheduled.
        non_retryable_error_types: Error types (classes or type names) that fail at once.

    Raises:
        ValueError: A value is out of range.
    """

    first_retry_interval: timedelta
    max_number_of_attempts: int
    backoff_coefficient: float = 1.0
    max_retry_interval: timedelta | None = None
    retry_timeout: timedelta | None = None
    non_retryable_error_types: Iterable[type[BaseException] | str] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.first_retry_interval, timedelta) or self.first_retry_interval <= timedelta(0):
            raise ValueError(f"first_retry_interval must be a positive timedelta, got {self.first_retry_interval!r}")
        if not isinstance(self.max_number_of_attempts, int) or self.max_number_of_attempts < 1:
            raise ValueError(f"max_number_of_attempts must be an int >= 1, got {self.max_number_of_attempts!r}")
        if self.backoff_coefficient is None or self.backoff_coefficient < 1:
            raise ValueError(f"backoff_coefficient must be at least 1, got {self.backoff_coefficient!r}")
        if self.max_retry_interval is not None and self.max_retry_interval < self.first_retry_interval:
            raise ValueError(
                f"max_retry_interval ({self.max_retry_interval}) must be at least "
                f"first_retry_interval ({self.first_retry_interval})"
            )
        if self.retry_timeout is not None and self.retry_timeout <= timedelta(0):
            raise ValueError(f"retry_timeout must be a positive timedelta, got {self.retry_timeout!r}")
        names = frozenset(t if isinstance(t, str) else t.__name__ for t in self.non_retryable_error_types)
        object.__setattr__(self, "non_retryable_error_types", names)

    def delay_after(self, attempts: int) -> timedelta:
        """The delay before the next attempt once ``attempts`` attempts have failed."""
        seconds = self.first_retry_interval.total_seconds() * self.backoff_coefficient ** (attempts - 1)
        if self.max_retry_interval is not None:
            seconds = min(seconds, self.max_retry_interval.total_seconds())
        return timedelta(seconds=seconds)

    def next_retry_delay(
        self, failure: FailureDetails, attempts: int, first_scheduled_at: datetime, now: datetime
    ) -> timedelta | None:
        """The delay before the next attempt, or None when the task should fail now.

        Args:
            failure: Why the latest attempt failed.
            attempts: How many attempts have run, the failed one included.
            first_scheduled_at: When the first attempt was scheduled (history time).
            now: When the latest failure was recorded (history time).
        """
        if failure.type in self.non_retryable_error_types or attempts >= self.max_number_of_attempts:
            return None
        delay = self.delay_after(attempts)
        if self.retry_timeout is not None and now + delay > first_scheduled_at + self.retry_timeout:
            return None
        return delay
