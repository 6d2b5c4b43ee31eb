"""An instance's history as a timeline: one row per activity, timer, event and child.

``timeline_rows`` is pure (history in, rows out) and serves the CLI's table, the HTTP
API's history view and through it the web page's Gantt chart. ``render_timeline`` draws
the rows as a rich table with a bar per row showing where it sits in the instance's life.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.core.history import (
    STALL_CHECK_TIMER_ID,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    EventRaised,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStalled,
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

# Outcome of a step still open when its execution ended (its result would be ignored).
ABANDONED = "abandoned"
# Characters of the bar column in the terminal: enough to see overlap, narrow enough for 100 columns.
BAR_WIDTH = 24
# Terminal columns the other columns need at least; the bar and the outcome share the rest.
TABLE_WIDTH_WITHOUT_BAR = 80


@dataclass
class TimelineRow:
    """One span of the instance's life: what ran, when, how it ended."""

    kind: str  # activity, timer, event, child, workflow
    name: str
    start: datetime
    end: datetime | None
    outcome: str  # running, waiting, completed, failed, fired, received, abandoned, or the workflow's status
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


@dataclass
class _Execution:
    """What is open in one execution; task and timer IDs restart with each execution."""

    workflow: TimelineRow
    open_rows: dict[int, TimelineRow] = field(default_factory=dict)
    # The call (kind, name, input) behind each task ID, and how often each call has failed:
    # a retry is the same call scheduled again after it failed.
    calls: dict[int, tuple[str, str, str | None]] = field(default_factory=dict)
    failures: dict[tuple[str, str, str | None], int] = field(default_factory=dict)
    retry_pauses: set[int] = field(default_factory=set)  # id() of timer rows already named as retry pauses


def timeline_rows(history: list[HistoryEvent]) -> list[TimelineRow]:
    """Pair each scheduled step with the event that ended it, in scheduling order.

    Several executions (a history read with every continue-as-new) give one ``workflow``
    row each, followed by that execution's steps.
    """
    rows: list[TimelineRow] = []
    current: _Execution | None = None
    row: TimelineRow | None
    for event in history:
        p, at = event.event, event.timestamp
        if isinstance(p, ExecutionStarted):
            if current is not None:
                _close_execution(current, at)
            outcome = "running" if p.scheduled_start is None else "pending"
            current = _Execution(TimelineRow("workflow", p.name, at, None, outcome))
            rows.append(current.workflow)
        elif current is None:
            continue  # events before any start (a partial read) have no execution to belong to
        elif isinstance(p, TaskScheduled | ChildWorkflowScheduled):
            rows.append(_scheduled(current, p, at, rows))
        elif isinstance(p, TimerCreated) and p.timer_id == STALL_CHECK_TIMER_ID:
            continue  # the runtime's re-check of a stalled instance, not a step of the workflow
        elif isinstance(p, ExecutionStalled):
            rows.append(TimelineRow("workflow", "stalled", at, at, "received", detail=f"{p.reason}: {p.message}"))
        elif isinstance(p, TimerCreated):
            current.open_rows[p.timer_id] = row = TimelineRow(
                "timer", f"until {p.fire_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z", at, None, "waiting",
                task_id=p.timer_id)
            rows.append(row)
        elif isinstance(p, TaskCompleted | ChildWorkflowCompleted | TimerFired):
            key = p.timer_id if isinstance(p, TimerFired) else p.task_id
            row = current.open_rows.pop(key, None)
            if row is not None:
                row.end, row.outcome = at, "fired" if isinstance(p, TimerFired) else "completed"
            elif isinstance(p, TimerFired) and current.workflow.outcome == "pending":
                current.workflow.outcome = "running"  # the deferred start is due
        elif isinstance(p, TaskFailed | ChildWorkflowFailed):
            row = current.open_rows.pop(p.task_id, None)
            if row is not None:
                row.end, row.outcome, row.detail = at, "failed", f"{p.failure.type}: {p.failure.message}"
            call = current.calls.get(p.task_id)
            if call is not None:
                current.failures[call] = current.failures.get(call, 0) + 1
        elif isinstance(p, EventRaised):
            rows.append(TimelineRow("event", p.name, at, at, "received"))
        elif isinstance(p, ExecutionSuspended | ExecutionResumed | ExecutionTerminated):
            rows.append(TimelineRow("workflow", type(p).__name__.removeprefix("Execution").lower(), at, at,
                                    "received", detail=p.reason))
        elif isinstance(p, ExecutionCompleted):
            current.workflow.end, current.workflow.outcome = at, p.status.name.lower()
            if p.failure is not None:
                current.workflow.detail = f"{p.failure.type}: {p.failure.message}"
            _close_execution(current, at)
    return rows


def _scheduled(current: _Execution, p: TaskScheduled | ChildWorkflowScheduled, at: datetime,
               rows: list[TimelineRow]) -> TimelineRow:
    kind = "child" if isinstance(p, ChildWorkflowScheduled) else "activity"
    call = (kind, p.name, p.input)
    current.calls[p.task_id] = call
    attempt = current.failures.get(call, 0) + 1
    row = TimelineRow(kind, p.name, at, None, "running", attempt, task_id=p.task_id,
                      child_instance_id=p.instance_id if isinstance(p, ChildWorkflowScheduled) else None)
    current.open_rows[p.task_id] = row
    if attempt > 1:
        # A retry starts in the step its pause timer fires: name that timer for what it was.
        pause = next((r for r in rows if r.kind == "timer" and r.end == at and r.outcome == "fired"
                      and id(r) not in current.retry_pauses), None)
        if pause is not None:
            current.retry_pauses.add(id(pause))
            pause.name, pause.detail = f"retry pause: {p.name}", f"before attempt {attempt}"
    return row


def _close_execution(execution: _Execution, at: datetime) -> None:
    """Steps still open when their execution ended will never report back to it."""
    for row in execution.open_rows.values():
        row.end, row.outcome = at, ABANDONED
        row.detail = row.detail or "the execution ended before this did"
    execution.open_rows.clear()
    if execution.workflow.end is None:
        execution.workflow.end = at


def span_bar(row: TimelineRow, origin: datetime, finish: datetime, width: int = BAR_WIDTH) -> str:
    """Where ``row`` sits in ``[origin, finish]`` as ``width`` characters.

    A span is a run of full blocks (at least one), a span still open a run of shaded
    blocks up to ``finish``, an instant (an event) a single diamond.
    """
    total = (finish - origin).total_seconds()

    def column(moment: datetime, rounding: Any) -> int:
        if total <= 0:
            return 0
        return min(width, max(0, int(rounding((moment - origin).total_seconds() / total * width))))

    first = min(column(row.start, math.floor), width - 1)
    if row.end is not None and row.end == row.start and row.kind in ("event", "workflow"):
        return " " * first + "◆" + " " * (width - first - 1)
    last = max(first + 1, column(finish if row.end is None else row.end, math.ceil))
    mark = "▒" if row.end is None else "█"
    return " " * first + mark * (last - first) + " " * (width - last)


def format_seconds(seconds: float) -> str:
    """A duration the way a person reads it: ``85 ms``, ``2.35 s``, ``3m 05s``, ``2h 03m``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


_OUTCOME_STYLES = {
    "failed": "bold red", ABANDONED: "yellow", "terminated": "yellow", "running": "cyan", "waiting": "cyan",
    "pending": "cyan", "completed": "green", "fired": "green", "received": "green", "continued_as_new": "green",
}
_KIND_STYLES = {"activity": "blue", "timer": "magenta", "event": "yellow", "child": "cyan", "workflow": "bold"}


def bar_width_for(console_width: int) -> int:
    """The bar column's width on a terminal ``console_width`` columns wide: wider terminals, finer bars.

    Half of what the other columns leave, so outcomes and their messages keep the other half.
    """
    return max(12, min(40, (console_width - TABLE_WIDTH_WITHOUT_BAR) // 2))


def render_timeline(history: list[HistoryEvent], bar_width: int = BAR_WIDTH) -> Any:
    """A rich Table of the timeline: one row per step, a bar showing when it ran; failures in red."""
    from rich.table import Table
    from rich.text import Text

    rows = timeline_rows(history)
    origin = history[0].timestamp
    finish = max([history[-1].timestamp, *(r.end for r in rows if r.end is not None)])
    workflow = next((r for r in rows if r.kind == "workflow"), None)
    title = history[0].instance_id + (f" · {workflow.name} · {workflow.outcome}" if workflow else "")
    executions = {e.execution_id for e in history}
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption=f"execution {history[-1].execution_id[:8]}" + (
                      f" (one of {len(executions)})" if len(executions) > 1 else "")
                  + f" · {format_seconds((finish - origin).total_seconds())} in all"
                  + " · █ ran  ▒ still open  ◆ instant")
    table.add_column("kind")
    table.add_column("name", overflow="fold")
    table.add_column("start", justify="right")
    table.add_column("end", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("try", justify="right")
    table.add_column("timeline", no_wrap=True, min_width=bar_width)
    table.add_column("outcome", overflow="fold")
    for row in rows:
        failed = row.outcome == "failed"
        outcome = Text(row.outcome.replace("_", " "), style=_OUTCOME_STYLES.get(row.outcome, ""))
        if row.detail:
            outcome.append(f": {row.detail}", style="red" if failed else "dim")
        instant = row.end is not None and row.end == row.start
        table.add_row(
            Text(row.kind, style=_KIND_STYLES.get(row.kind, "")),
            Text(row.name, style="red" if failed else ""),
            f"+{format_seconds((row.start - origin).total_seconds())}",
            "" if row.end is None or instant else f"+{format_seconds((row.end - origin).total_seconds())}",
            "" if row.seconds is None or instant else format_seconds(row.seconds),
            str(row.attempt) if row.kind in ("activity", "child") else "",
            Text(span_bar(row, origin, finish, bar_width), style="red" if failed else _KIND_STYLES.get(row.kind, "")),
            outcome,
        )
    return table
