"""An instance's history as a timeline: one row per activity, timer, event and child.

``timeline_rows`` is pure (history in, rows out) and serves both the CLI's table and
the HTTP API's history view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionTerminated,
    HistoryEvent,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerCreated,
    TimerFired,
)


@dataclass
class TimelineRow:
    """One span of the instance's life: what ran, when, how it ended."""

    kind: str  # activity, timer, event, child, workflow
    name: str
    start: datetime
    end: datetime | None
    outcome: str  # running, completed, failed, fired, received, ...
    attempt: int = 1
    detail: str | None = None
    task_id: int | None = None
    child_instance_id: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else (self.end - self.start).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(), "seconds": self.seconds,
            "outcome": self.outcome, "attempt": self.attempt, "detail": self.detail, "taskId": self.task_id,
            "childInstanceId": self.child_instance_id,
        }


def timeline_rows(history: list[HistoryEvent]) -> list[TimelineRow]:
    """Pair each scheduled step with the event that ended it, in scheduling order."""
    rows: list[TimelineRow] = []
    row: TimelineRow | None
    open_rows: dict[int, TimelineRow] = {}
    # A retry is the same activity with the same input scheduled after it failed.
    failures: dict[tuple[str, str | None], int] = {}
    calls: dict[int, tuple[str, str | None]] = {}
    for event in history:
        p = event.event
        at = event.timestamp
        if isinstance(p, ExecutionStarted):
            rows.append(TimelineRow("workflow", p.name, at, None, "running"))
        elif isinstance(p, TaskScheduled):
            calls[p.task_id] = (p.name, p.input)
            attempt = failures.get((p.name, p.input), 0) + 1
            open_rows[p.task_id] = row = TimelineRow("activity", p.name, at, None, "running", attempt,
                                                     task_id=p.task_id)
            rows.append(row)
        elif isinstance(p, ChildWorkflowScheduled):
            open_rows[p.task_id] = row = TimelineRow("child", p.name, at, None, "running", task_id=p.task_id,
                                                     child_instance_id=p.instance_id)
            rows.append(row)
        elif isinstance(p, TimerCreated):
            open_rows[p.timer_id] = row = TimelineRow("timer", f"until {p.fire_at.isoformat(timespec='seconds')}",
                                                      at, None, "waiting", task_id=p.timer_id)
            rows.append(row)
        elif isinstance(p, TaskCompleted | ChildWorkflowCompleted | TimerFired):
            key = p.timer_id if isinstance(p, TimerFired) else p.task_id
            row = open_rows.pop(key) if key in open_rows else None
            if row is not None:
                row.end, row.outcome = at, "fired" if isinstance(p, TimerFired) else "completed"
        elif isinstance(p, TaskFailed | ChildWorkflowFailed):
            row = open_rows.pop(p.task_id) if p.task_id in open_rows else None
            if row is not None:
                row.end, row.outcome, row.detail = at, "failed", f"{p.failure.type}: {p.failure.message}"
            if p.task_id in calls:
                failures[calls[p.task_id]] = failures.get(calls[p.task_id], 0) + 1
        elif isinstance(p, EventRaised):
            rows.append(TimelineRow("event", p.name, at, at, "received"))
        elif isinstance(p, ExecutionSuspended | ExecutionResumed | ExecutionTerminated):
            rows.append(TimelineRow("workflow", type(p).__name__.removeprefix("Execution").lower(), at, at,
                                    "received", detail=p.reason))
        elif isinstance(p, ExecutionCompleted) and rows and rows[0].kind == "workflow":
            rows[0].end, rows[0].outcome = at, p.status.name.lower()
            if p.failure is not None:
                rows[0].detail = f"{p.failure.type}: {p.failure.message}"
    return rows


def render_timeline(history: list[HistoryEvent]) -> Any:
    """A rich Table of the timeline; failures in red."""
    from rich.table import Table

    rows = timeline_rows(history)
    origin = history[0].timestamp
    table = Table(title=f"{history[0].instance_id} (execution {history[0].execution_id[:8]})")
    for column in ("kind", "name", "start", "end", "duration", "attempt", "outcome"):
        table.add_column(column)
    for row in rows:
        style = "red" if row.outcome == "failed" else None
        outcome = row.outcome + (f" — {row.detail}" if row.detail else "")
        table.add_row(
            row.kind, row.name, f"+{(row.start - origin).total_seconds():.3f}s",
            "" if row.end is None else f"+{(row.end - origin).total_seconds():.3f}s",
            "" if row.seconds is None else f"{row.seconds * 1000:.0f} ms", str(row.attempt), outcome, style=style,
        )
    return table
