"""Bulk purge and terminate: which instances a filter matches (pure).

A ``BulkCommand`` goes to every partition of the inbox; each orchestrator walks its own
instances in chunks and applies the action to the ones ``matches`` accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from engine.core.history import WorkflowStatus

ENDED = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED})
NOT_ENDED = frozenset({WorkflowStatus.RUNNING, WorkflowStatus.PENDING, WorkflowStatus.SUSPENDED})
PURGE, TERMINATE = "PURGE", "TERMINATE"


@dataclass(frozen=True, slots=True)
class BulkCommand:
    """Purge or terminate the instances that match (``kwf.BulkCommand``)."""

    command_id: str
    action: str
    statuses: tuple[WorkflowStatus, ...]
    name: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None
    output: str | None = None
    resume_after: str | None = None

    def matches(self, status: WorkflowStatus, name: str, created_ms: int) -> bool:
        """Whether an instance with this status, workflow name and creation time (ms) is in scope."""
        return (status in self.statuses
                and (self.name is None or name == self.name)
                and (self.created_after_ms is None or created_ms >= self.created_after_ms)
                and (self.created_before_ms is None or created_ms < self.created_before_ms))


def bulk_statuses(action: str, statuses: Iterable[WorkflowStatus | str] | None) -> tuple[WorkflowStatus, ...]:
    """The statuses a command covers: what was asked, else every status the action applies to.

    Raises:
        ValueError: an unknown action or status, or a status the action cannot apply to
            (only ended instances can be purged; only unended ones terminated).
    """
    allowed = {PURGE: ENDED, TERMINATE: NOT_ENDED}.get(action)
    if allowed is None:
        raise ValueError(f"unknown bulk action {action!r}: {PURGE} or {TERMINATE}")
    if statuses is None:
        return tuple(s for s in WorkflowStatus if s in allowed)
    chosen = []
    for status in statuses:
        if isinstance(status, str):
            try:
                status = WorkflowStatus[status.upper()]
            except KeyError as err:
                raise ValueError(f"unknown status {status!r}; one of {', '.join(s.name for s in WorkflowStatus)}"
                                 ) from err
        if status not in allowed:
            verb = "purged" if action == PURGE else "terminated"
            raise ValueError(f"{status.name} instances cannot be {verb}; choose among "
                             f"{', '.join(s.name for s in WorkflowStatus if s in allowed)}")
        if status not in chosen:
            chosen.append(status)
    if not chosen:
        raise ValueError("no status given: leave the statuses out to mean all of them")
    return tuple(chosen)


def to_ms(moment: datetime | None) -> int | None:
    """Unix milliseconds of an aware datetime (None passes through).

    Raises:
        ValueError: the datetime has no time zone.
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: say which, e.g. 2026-11-01T00:00:00Z")
    return int(moment.timestamp() * 1000)
