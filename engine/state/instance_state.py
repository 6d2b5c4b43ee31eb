"""What the orchestrator keeps per instance, and how one history event changes it.

Everything here is derived from ``kwf.history``: folding an instance's history events
through ``fold`` in order rebuilds its state, which is how a partition is restored.
Pure: no store, no clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from engine.core.history import (
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowScheduled,
    CustomStatusSet,
    ExecutionCompleted,
    ExecutionResumed,
    ExecutionStalled,
    ExecutionStarted,
    ExecutionSuspended,
    FailureDetails,
    HistoryEvent,
    ParentInstance,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerCreated,
    TimerFired,
    WorkflowStatus,
    failure_details_from_record,
    failure_details_to_record,
)
from engine.state.codec import StatusRecord

ENDED = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED})
# The timer ID of a start deferred with ``start_at``: workflow timers count up from 0.
START_TIMER_ID = -1
# Where a deferred start stands while its execution has not begun: waiting for its time,
# or due (its time came while the instance was suspended: it begins on resume).
START_WAITING, START_DUE = "waiting", "due"


@dataclass(frozen=True, slots=True)
class InstanceState:
    """The derived record of one instance (its history lives beside it, one key per event)."""

    instance_id: str
    execution_id: str
    name: str
    status: WorkflowStatus
    created_ms: int
    updated_ms: int
    next_sequence: int
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: FailureDetails | None = None
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None
    parent_task_id: int | None = None
    parent_name: str | None = None
    # START_WAITING or START_DUE while a deferred start has not begun; None once it has.
    deferred_start: str | None = None
    # The parent's application when it is not this instance's ("" is the default one).
    parent_app_id: str | None = None

    @property
    def awaiting_start(self) -> bool:
        """Whether the execution has yet to begin (a deferred start, possibly suspended)."""
        return self.deferred_start is not None or self.status is WorkflowStatus.PENDING

    @property
    def parent(self) -> ParentInstance | None:
        if self.parent_instance_id is None:
            return None
        return ParentInstance(self.parent_instance_id, self.parent_execution_id or "", self.parent_task_id or 0,
                              self.parent_name or "", self.parent_app_id)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def to_bytes(self) -> bytes:
        # Field by field rather than ``asdict``, which deep-copies every value: this runs
        # for every history event the orchestrator stores.
        data = {name: getattr(self, name) for name in _STATE_FIELDS}
        data["status"] = self.status.value
        data["failure"] = None if self.failure is None else failure_details_to_record(self.failure)
        return _compact_json(data).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> InstanceState:
        data: dict[str, Any] = json.loads(raw)
        data["status"] = WorkflowStatus(data["status"])
        if data["failure"] is not None:
            data["failure"] = failure_details_from_record(data["failure"])
        return cls(**data)

    def status_record(self) -> StatusRecord:
        return StatusRecord(
            instance_id=self.instance_id,
            execution_id=self.execution_id,
            name=self.name,
            runtime_status=self.status,
            created_at=from_ms(self.created_ms),
            last_updated_at=from_ms(self.updated_ms),
            input=self.input,
            output=self.output,
            custom_status=self.custom_status,
            failure=self.failure,
            parent_instance_id=self.parent_instance_id,
            history_length=self.next_sequence,
        )


_STATE_FIELDS = tuple(f.name for f in fields(InstanceState))
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class OpenItem:
    """A task, child or timer that was scheduled and has not finished yet."""

    kind: str  # "task", "child" or "timer"
    child_instance_id: str | None = None
    fire_at_ms: int | None = None
    child_app_id: str | None = None  # a child's application when it is another's

    def to_bytes(self) -> bytes:
        fields = [self.kind, self.child_instance_id, self.fire_at_ms]
        # Written only for a child in another application: other items keep their layout.
        return json.dumps(fields if self.child_app_id is None else [*fields, self.child_app_id]).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> OpenItem:
        kind, child, fire_at, *app = json.loads(raw)
        return cls(kind, child, fire_at, app[0] if app else None)


@dataclass(frozen=True, slots=True)
class Change:
    """How one event changes the state: the new state (None: purged) and the open items."""

    state: InstanceState | None
    opened: tuple[tuple[int, OpenItem], ...] = ()
    closed: tuple[int, ...] = ()
    new_execution: bool = False  # forget the previous execution's history and open items
    close_all: bool = False  # the execution ended: nothing stays open


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def fold(state: InstanceState | None, event: HistoryEvent) -> Change:
    """The state after ``event``; ``state`` is the state before it (None if new)."""
    payload = event.event
    ts = to_ms(event.timestamp)
    if isinstance(payload, ExecutionStarted):
        deferred = payload.scheduled_start is not None and to_ms(payload.scheduled_start) > ts
        started = InstanceState(
            instance_id=event.instance_id,
            execution_id=event.execution_id,
            name=payload.name,
            status=WorkflowStatus.PENDING if deferred else WorkflowStatus.RUNNING,
            created_ms=ts,
            updated_ms=ts,
            next_sequence=event.sequence + 1,
            input=payload.input,
            parent_instance_id=None if payload.parent is None else payload.parent.instance_id,
            parent_execution_id=None if payload.parent is None else payload.parent.execution_id,
            parent_task_id=None if payload.parent is None else payload.parent.task_id,
            parent_name=None if payload.parent is None else payload.parent.name,
            parent_app_id=None if payload.parent is None else payload.parent.app_id,
            deferred_start=START_WAITING if deferred else None,
        )
        opened: tuple[tuple[int, OpenItem], ...] = ()
        if deferred:
            assert payload.scheduled_start is not None
            opened = ((START_TIMER_ID, OpenItem("timer", fire_at_ms=to_ms(payload.scheduled_start))),)
        return Change(started, opened=opened, new_execution=True)
    if state is None:
        return Change(None)
    state = replace(state, updated_ms=ts, next_sequence=max(state.next_sequence, event.sequence + 1))
    if isinstance(payload, TaskScheduled):
        return Change(state, opened=((payload.task_id, OpenItem("task")),))
    if isinstance(payload, ChildWorkflowScheduled):
        return Change(state, opened=((payload.task_id, OpenItem("child", child_instance_id=payload.instance_id,
                                                               child_app_id=payload.app_id)),))
    if isinstance(payload, TimerCreated):
        return Change(state, opened=((payload.timer_id, OpenItem("timer", fire_at_ms=to_ms(payload.fire_at))),))
    if isinstance(payload, TaskCompleted | TaskFailed | ChildWorkflowCompleted | ChildWorkflowFailed):
        return Change(state, closed=(payload.task_id,))
    if isinstance(payload, TimerFired):
        if payload.timer_id == START_TIMER_ID:
            # The start is due: it begins now, or on resume if the instance is suspended.
            if state.status is WorkflowStatus.SUSPENDED:
                state = replace(state, deferred_start=START_DUE)
            else:
                state = replace(state, status=WorkflowStatus.RUNNING, deferred_start=None)
        return Change(state, closed=(payload.timer_id,))
    if isinstance(payload, CustomStatusSet):
        return Change(replace(state, custom_status=payload.status))
    if isinstance(payload, ExecutionSuspended):
        return Change(replace(state, status=WorkflowStatus.SUSPENDED))
    if isinstance(payload, ExecutionResumed):
        if state.status is WorkflowStatus.STALLED:  # the code is back: the stall reason goes
            return Change(replace(state, status=WorkflowStatus.RUNNING, failure=None))
        if state.deferred_start == START_WAITING:
            return Change(replace(state, status=WorkflowStatus.PENDING))
        return Change(replace(state, status=WorkflowStatus.RUNNING, deferred_start=None))
    if isinstance(payload, ExecutionStalled):
        # Open tasks and timers stay open: their results are accepted and kept for later.
        return Change(replace(state, status=WorkflowStatus.STALLED,
                              failure=FailureDetails(payload.reason, payload.message)))
    if isinstance(payload, ExecutionCompleted):
        ended = replace(state, status=payload.status, output=payload.output, failure=payload.failure,
                        deferred_start=None)
        return Change(ended, close_all=True)
    # EventRaised, ExecutionTerminated, ContinuedAsNew, VersionMarker: history only; their effect on the
    # status arrives with the ExecutionCompleted or status events the executor decides.
    return Change(state)
